/*
 * The excerpt under a search hit: up to two fragments of a few dozen words around the matched
 * words, each match between \u0001 and \u0002 (present.ts makes those <mark>), as ts_headline's
 * MaxFragments=2, MaxWords=30 gave. Done here because ts_headline parsed its text for 0.1 ms a
 * hit, more than the rest of a rare word's search; the words are those of search-words.ts.
 */

import { NO_SPACES_CHAR, WORD_PATTERN, wordLexemes, type TextWord } from './search-words.ts';

const FRAGMENTS = 2;
const FRAGMENT_WORDS = 30;
/** words shown before the first match of a fragment */
const LEAD_WORDS = 8;

export function markExcerpt(text: string, lexemes: ReadonlySet<string>): string {
  const words = new TextWords(text);
  if (!words.has(0)) return text.trim();
  // A word is stemmed only when it starts as an asked-for stem does (Porter2 keeps a word's first
  // letters but for y/i at the end of a short stem): most words of a text are not.
  const starts = [...new Set([...lexemes].map((l) => l.slice(0, 2)))];
  const matches: [number, number][][] = [];
  const matchesOf = (i: number) => {
    for (let k = matches.length; k <= i; k++) {
      const word = words.at(k).word;
      const lower = word.toLowerCase();
      matches.push(starts.some((p) => lower.startsWith(p)) || (lower.length > 1 && NO_SPACES_CHAR.test(lower)) ? matchedParts(word, lexemes) : []);
    }
    return matches[i];
  };
  // Words are read only as far as the fragments reach: an excerpt is 600 characters, and the
  // first two matches usually come early.
  const fragments: [number, number][] = [];
  for (let i = 0; words.has(i) && fragments.length < FRAGMENTS; i++) {
    if (matchesOf(i).length === 0 || (fragments.length > 0 && i < fragments[fragments.length - 1][1])) continue;
    const start = Math.max(fragments.length > 0 ? fragments[fragments.length - 1][1] : 0, i - LEAD_WORDS);
    fragments.push([start, words.end(start + FRAGMENT_WORDS)]);
  }
  if (fragments.length === 0) fragments.push([0, words.end(FRAGMENT_WORDS)]);
  return fragments
    .map(([from, to]) => {
      let out = '';
      let at = words.at(from).start;
      for (let i = from; i < to; i++) {
        const w = words.at(i);
        for (const [s, e] of matchesOf(i)) {
          out += text.slice(at, w.start + s) + '\u0001' + text.slice(w.start + s, w.start + e) + '\u0002';
          at = w.start + e;
        }
      }
      // The last fragment keeps what follows its last word (a full stop) when it reaches the end.
      return (out + text.slice(at, words.has(to) ? words.at(to - 1).end : text.length)).replace(/\s+/g, ' ').trim();
    })
    .join(' … ');
}

/** The word-like runs of a text (textWords()), read from it only as far as they are asked for. */
class TextWords {
  private readonly found: TextWord[] = [];
  private readonly pattern = new RegExp(WORD_PATTERN);
  private done = false;

  constructor(private readonly text: string) {}

  /** whether the text has an `i`th word */
  has(i: number): boolean {
    while (!this.done && this.found.length <= i) {
      const m = this.pattern.exec(this.text);
      if (m) this.found.push({ word: m[0], start: m.index, end: m.index + m[0].length });
      else this.done = true;
    }
    return i < this.found.length;
  }

  at(i: number): TextWord {
    if (!this.has(i)) throw new RangeError(`no word ${i}`);
    return this.found[i];
  }

  /** `i`, or the number of words when the text has fewer */
  end(i: number): number {
    return this.has(i - 1) ? i : this.found.length;
  }
}

/** The spans of a word to mark: the whole word when its stem is asked for, or CJK pairs within it. */
function matchedParts(word: string, lexemes: ReadonlySet<string>): [number, number][] {
  const own = wordLexemes(word);
  if (own.length <= 1) return own.length === 1 && lexemes.has(own[0]) ? [[0, word.length]] : [];
  // A run of CJK characters: each asked-for pair, by its place (in UTF-16 units).
  const spans: [number, number][] = [];
  const chars = [...word];
  let offset = 0;
  for (let i = 0; i < chars.length - 1; i++) {
    const pair = chars[i] + chars[i + 1];
    if (lexemes.has(pair.toLowerCase())) {
      const s = offset;
      const e = offset + pair.length;
      if (spans.length > 0 && spans[spans.length - 1][1] >= s) spans[spans.length - 1][1] = e;
      else spans.push([s, e]);
    }
    offset += chars[i].length;
  }
  return spans;
}
