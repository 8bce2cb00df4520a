/*
 * The excerpt under a search hit: up to two fragments of a few dozen words around the matched
 * words, each match between \u0001 and \u0002 (present.ts makes those <mark>), as ts_headline's
 * MaxFragments=2, MaxWords=30 gave. Done here because ts_headline parsed its text for 0.1 ms a
 * hit, more than the rest of a rare word's search; the words are those of search-words.ts.
 */

import { NO_SPACES_CHAR, wordLexemes } from './search-words.ts';

const FRAGMENTS = 2;
const FRAGMENT_WORDS = 30;
/** words shown before the first match of a fragment */
const LEAD_WORDS = 8;

export function markExcerpt(text: string, lexemes: ReadonlySet<string>): string {
  const words = new TextWords(text);
  if (!words.has(0)) return text.trim();
  const candidates = candidateStarts(text, lexemes);
  const matches: [number, number][][] = [];
  const matchesOf = (i: number) => {
    for (let k = matches.length; k <= i; k++) {
      matches.push(candidates.at(words, k) ? matchedParts(words.word(k), lexemes) : NONE);
    }
    return matches[i];
  };
  // Words are read only as far as the fragments reach: an excerpt is 600 characters, and the
  // first two matches usually come early.
  const fragments: [number, number][] = [];
  for (let i = 0; words.has(i) && fragments.length < FRAGMENTS; i++) {
    // Past the last place a match could start, no word needs reading (a rare word's one match).
    if (words.start(i) > candidates.last) break;
    if (matchesOf(i).length === 0 || (fragments.length > 0 && i < fragments[fragments.length - 1][1])) continue;
    const start = Math.max(fragments.length > 0 ? fragments[fragments.length - 1][1] : 0, i - LEAD_WORDS);
    fragments.push([start, words.end(start + FRAGMENT_WORDS)]);
  }
  if (fragments.length === 0) fragments.push([0, words.end(FRAGMENT_WORDS)]);
  return fragments
    .map(([from, to]) => {
      let out = '';
      let at = words.start(from);
      for (let i = from; i < to; i++) {
        const w = words.start(i);
        for (const [s, e] of matchesOf(i)) {
          out += text.slice(at, w + s) + '\u0001' + text.slice(w + s, w + e) + '\u0002';
          at = w + e;
        }
      }
      // The last fragment keeps what follows its last word (a full stop) when it reaches the end.
      return oneLine(out + text.slice(at, words.has(to) ? words.stop(to - 1) : text.length));
    })
    .join(' … ');
}

const NONE: [number, number][] = [];

/** White space made single spaces, trimmed; most fragments need no change, and are not copied. */
function oneLine(s: string): string {
  return (/\s\s|[^\S ]/.test(s) ? s.replace(/\s+/g, ' ') : s).trim();
}

/**
 * Which words may hold a match, found without reading every word: a word is stemmed only when it
 * starts as an asked-for stem does (Porter2 keeps a word's first letters but for y/i at the end of
 * a short stem), and those places are found in the text at once. Text with CJK runs (matched by
 * pairs anywhere in a word), or whose lower case changes its length (offsets would not line up),
 * has every word checked as it comes.
 */
function candidateStarts(text: string, lexemes: ReadonlySet<string>): { at(words: TextWords, i: number): boolean; last: number } {
  const starts = [...new Set([...lexemes].map((l) => l.slice(0, 2)))];
  const lower = text.toLowerCase();
  if (NO_SPACES_CHAR.test(text) || lower.length !== text.length) {
    return {
      at: (words, i) => {
        const word = words.word(i).toLowerCase();
        return starts.some((p) => word.startsWith(p)) || (word.length > 1 && NO_SPACES_CHAR.test(word));
      },
      last: Infinity,
    };
  }
  const places = new Set<number>();
  let last = -1;
  for (const p of starts) {
    for (let at = lower.indexOf(p); at !== -1; at = lower.indexOf(p, at + 1)) {
      places.add(at);
      if (at > last) last = at;
    }
  }
  return { at: (words, i) => places.has(words.start(i)), last };
}

/**
 * The word-like runs of a text, as WORD_PATTERN finds them, read only as far as they are asked
 * for. Read by character codes rather than by the pattern: its matches cost 200 bytes each, and
 * a search page's excerpts read a few hundred words.
 */
class TextWords {
  private readonly starts: number[] = [];
  private readonly stops: number[] = [];
  private at = 0;

  constructor(private readonly text: string) {}

  /** whether the text has an `i`th word */
  has(i: number): boolean {
    while (this.starts.length <= i && this.next()) { /* read on */ }
    return i < this.starts.length;
  }

  start(i: number): number {
    if (!this.has(i)) throw new RangeError(`no word ${i}`);
    return this.starts[i];
  }

  /** where the `i`th word ends (exclusive) */
  stop(i: number): number {
    if (!this.has(i)) throw new RangeError(`no word ${i}`);
    return this.stops[i];
  }

  word(i: number): string {
    return this.text.slice(this.start(i), this.stops[i]);
  }

  /** `i`, or the number of words when the text has fewer */
  end(i: number): number {
    return this.has(i - 1) ? i : this.starts.length;
  }

  /** Reads one more word: letters and digits, then an apostrophe and letters if they follow. */
  private next(): boolean {
    const t = this.text;
    let i = this.at;
    while (i < t.length && !isLetterOrDigit(t.codePointAt(i)!)) i += unitsOf(t.codePointAt(i)!);
    if (i >= t.length) {
      this.at = i;
      return false;
    }
    const start = i;
    while (i < t.length && isLetterOrDigit(t.codePointAt(i)!)) i += unitsOf(t.codePointAt(i)!);
    if (t.charCodeAt(i) === APOSTROPHE && i + 1 < t.length && isLetter(t.codePointAt(i + 1)!)) {
      i += 1;
      while (i < t.length && isLetter(t.codePointAt(i)!)) i += unitsOf(t.codePointAt(i)!);
    }
    this.starts.push(start);
    this.stops.push(i);
    this.at = i;
    return true;
  }
}

const APOSTROPHE = 0x27;
const LETTER = /^\p{L}$/u;
const LETTER_OR_DIGIT = /^[\p{L}\p{N}]$/u;

function unitsOf(cp: number): number {
  return cp > 0xffff ? 2 : 1;
}

/** \p{L} or \p{N}, as WORD_PATTERN's first part: ASCII by its codes, the rest by the pattern. */
function isLetterOrDigit(cp: number): boolean {
  if (cp < 0x80) return (cp >= 0x30 && cp <= 0x39) || isAsciiLetter(cp);
  return LETTER_OR_DIGIT.test(String.fromCodePoint(cp));
}

function isLetter(cp: number): boolean {
  if (cp < 0x80) return isAsciiLetter(cp);
  return LETTER.test(String.fromCodePoint(cp));
}

function isAsciiLetter(cp: number): boolean {
  return (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
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
