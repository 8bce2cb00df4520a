/*
 * The excerpt under a search hit: up to two fragments of a few dozen words around the matched
 * words, each match between \u0001 and \u0002 (present.ts makes those <mark>), as ts_headline's
 * MaxFragments=2, MaxWords=30 gave. Done here because ts_headline parsed its text for 0.1 ms a
 * hit, more than the rest of a rare word's search; the words are those of search-words.ts.
 *
 * It runs for every hit of every search page, so it reads the text by character codes into
 * buffers kept between calls, and builds each fragment in one pass: a rare word's excerpt cost
 * 12.4 µs with an object per word and regular expressions to join the white space, 7.4 µs so.
 * Words are stemmed and read only where they may match (candidates()), and fragments copied a
 * line at a time: 4.2 µs.
 */

import { NO_SPACES_CHAR, wordLexemes } from './search-words.ts';

/** The excerpt's window: this many characters, starting this many before the first typed word. */
export const EXCERPT_CHARS = 600;
export const EXCERPT_LEAD = 200;

/**
 * The window of a whole body that search.ts's SQL would have cut for an ASCII `hint`:
 * substr(body, greatest(1, strpos(lower(body collate "C"), hint) - EXCERPT_LEAD), EXCERPT_CHARS),
 * counting characters (code points) as PostgreSQL does, and lowering only A-Z as the "C"
 * collation does. The body is one search.ts sent whole (a few KB), so the 20,000-character bound
 * on the search never comes into it.
 */
export function excerptWindow(body: string, hint: string): string {
  const at = hint === '' ? 0 : asciiCaseless(hint).exec(body)?.index ?? -1;
  if (!SURROGATE.test(body)) {
    const from = Math.max(0, at - EXCERPT_LEAD);
    return body.slice(from, from + EXCERPT_CHARS);
  }
  // Characters outside the BMP are two code units here and one character there.
  const chars = [...body];
  const from = at < 0 ? 0 : Math.max(0, [...body.slice(0, at)].length - EXCERPT_LEAD);
  return chars.slice(from, from + EXCERPT_CHARS).join('');
}

const SURROGATE = /[\uD800-\uDFFF]/;

/**
 * A pattern finding an ASCII word whatever the case of its ASCII letters, and only of those:
 * without the u flag, case-insensitive matching never folds a character beyond ASCII into one
 * within it (ECMA-262 Canonicalize), so the Kelvin sign is not a k, as in the "C" collation.
 */
function asciiCaseless(hint: string): RegExp {
  let re = caseless.get(hint);
  if (re === undefined) {
    re = new RegExp(hint.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'), 'i');
    if (caseless.size >= 256) caseless.clear();
    caseless.set(hint, re);
  }
  return re;
}

const caseless = new Map<string, RegExp>();

const FRAGMENTS = 2;
const FRAGMENT_WORDS = 30;
/** words shown before the first match of a fragment */
const LEAD_WORDS = 8;

export function markExcerpt(text: string, lexemes: ReadonlySet<string>): string {
  beginWords(text);
  if (!hasWord(0)) return text.trim();
  const isCandidate = candidates(text, lexemes);
  const matches: Span[][] = [];
  const matchesOf = (i: number) => {
    for (let k = matches.length; k <= i; k++) matches.push(isCandidate(k) ? matchedParts(text.slice(starts[k], stops[k]), lexemes) : NONE);
    return matches[i];
  };
  const fragments: [number, number][] = [];
  let fragmentEnd = 0;
  for (let i = 0; fragments.length < FRAGMENTS && hasWord(i); i++) {
    // Past the last place a match could start, no word needs reading (a rare word's one match).
    if (starts[i] > lastCandidate) break;
    if ((fragments.length > 0 && i < fragmentEnd) || matchesOf(i).length === 0) continue;
    const start = Math.max(fragmentEnd, i - LEAD_WORDS);
    fragmentEnd = wordsUpTo(start + FRAGMENT_WORDS);
    fragments.push([start, fragmentEnd]);
  }
  if (fragments.length === 0) fragments.push([0, wordsUpTo(FRAGMENT_WORDS)]);
  let out = '';
  for (let f = 0; f < fragments.length; f++) {
    const [from, to] = fragments[f];
    const line = new OneLine(text);
    let at = starts[from];
    for (let i = from; i < to; i++) {
      for (const [s, e] of matchesOf(i)) {
        line.add(at, starts[i] + s);
        line.mark(starts[i] + s, starts[i] + e);
        at = starts[i] + e;
      }
    }
    // The last fragment keeps what follows its last word (a full stop) when it reaches the end.
    line.add(at, hasWord(to) ? stops[to - 1] : text.length);
    out += (f > 0 ? ' … ' : '') + line.done();
  }
  return out;
}

/** `i`, or the number of words when the text has fewer */
function wordsUpTo(i: number): number {
  return hasWord(i - 1) ? i : wordCount;
}

type Span = [number, number];
const NONE: Span[] = [];

// The text being marked and its words as WORD_PATTERN finds them (the `i`th from starts[i] to
// stops[i], read up to readAt), kept between calls: one excerpt is marked at a time, nothing awaits.
let wordsText = '';
let starts = new Int32Array(512);
let stops = new Int32Array(512);
let wordCount = 0;
let readAt = 0;
/** where the last place a match could start is; Infinity when every word is a candidate */
let lastCandidate = 0;

/** Starts reading the words of `t`; they are read as far as hasWord() asks. */
function beginWords(t: string) {
  const most = (t.length >> 1) + 1;
  if (starts.length < most) {
    starts = new Int32Array(most);
    stops = new Int32Array(most);
  }
  wordsText = t;
  wordCount = 0;
  readAt = 0;
}

/** Whether the text has an `i`th word, reading on as far as that. */
function hasWord(i: number): boolean {
  while (wordCount <= i && readAt < wordsText.length) readWord();
  return i < wordCount;
}

/** Reads one more word, if there is one: letters and digits, then an apostrophe and letters if they follow. */
function readWord() {
  const t = wordsText;
  const len = t.length;
  let i = readAt;
  while (i < len) {
    const c = t.charCodeAt(i);
    if (c < 0x80 ? ALNUM[c] === 1 : isLetterOrDigitAt(t, i)) break;
    i += c < 0xd800 ? 1 : unitsAt(t, i);
  }
  if (i >= len) {
    readAt = len;
    return;
  }
  const start = i;
  while (i < len) {
    const d = t.charCodeAt(i);
    if (d < 0x80) {
      if (ALNUM[d] !== 1) break;
      i++;
    } else if (isLetterOrDigitAt(t, i)) i += unitsAt(t, i);
    else break;
  }
  if (t.charCodeAt(i) === APOSTROPHE && i + 1 < len && isLetterAt(t, i + 1)) {
    i++;
    while (i < len && isLetterAt(t, i)) i += unitsAt(t, i);
  }
  starts[wordCount] = start;
  stops[wordCount] = i;
  wordCount++;
  readAt = i;
}

const APOSTROPHE = 0x27;
const LETTER = /^\p{L}$/u;
const LETTER_OR_DIGIT = /^[\p{L}\p{N}]$/u;

/** 2 for a character outside the BMP (a surrogate pair), else 1 */
function unitsAt(t: string, i: number): number {
  return t.codePointAt(i)! > 0xffff ? 2 : 1;
}

/** ASCII letters and digits, by code */
const ALNUM = new Uint8Array(128);
for (let c = 0; c < 128; c++) ALNUM[c] = /[A-Za-z0-9]/.test(String.fromCharCode(c)) ? 1 : 0;

function isLetterOrDigitAt(t: string, i: number): boolean {
  const cp = t.codePointAt(i)!;
  if (cp < 0x80) return ALNUM[cp] === 1;
  return LETTER_OR_DIGIT.test(String.fromCodePoint(cp));
}

function isLetterAt(t: string, i: number): boolean {
  const cp = t.codePointAt(i)!;
  if (cp < 0x80) return (cp >= 0x61 && cp <= 0x7a) || (cp >= 0x41 && cp <= 0x5a);
  return LETTER.test(String.fromCodePoint(cp));
}

/** Porter2's words whose stem does not start as they do (dying: die), by stem: how they start */
const IRREGULAR = new Map([['die', 'dy'], ['lie', 'ly'], ['tie', 'ty']]);

// Which text positions may start a match, stamped with the call's number (no clearing between calls).
let placeStamp = new Int32Array(1024);
let stamp = 0;

/**
 * Which words may hold a match, found without stemming every word: a word is stemmed only when it
 * starts as an asked-for stem does but for the stem's last two letters, and those places are found
 * in the text at once. With the first two letters only, as before, a rare word's excerpt stemmed
 * every word that began with them and read its text up to the last of them. Text with CJK runs
 * (matched by pairs anywhere in a word), or whose lower case changes its length (offsets would not
 * line up), has every word checked as it comes. Sets lastCandidate.
 */
function candidates(text: string, lexemes: ReadonlySet<string>): (i: number) => boolean {
  const prefixes: string[] = [];
  for (const l of lexemes) {
    // A stem's first letters but its last two are the word's (checked on 102,000 English words:
    // Porter2 changes or adds at most the last one). The exceptions are three irregular words.
    const p = l.slice(0, Math.max(2, l.length - 2));
    if (!prefixes.includes(p)) prefixes.push(p);
    const irregular = IRREGULAR.get(l);
    if (irregular && !prefixes.includes(irregular)) prefixes.push(irregular);
  }
  const lower = text.toLowerCase();
  if (lower.length !== text.length || NO_SPACES_CHAR.test(text)) {
    lastCandidate = Infinity;
    return (i) => {
      const word = text.slice(starts[i], stops[i]).toLowerCase();
      return prefixes.some((p) => word.startsWith(p)) || (word.length > 1 && NO_SPACES_CHAR.test(word));
    };
  }
  if (placeStamp.length < text.length) placeStamp = new Int32Array(text.length * 2);
  if (++stamp === 0x7fffffff) {
    placeStamp.fill(0);
    stamp = 1;
  }
  const mine = stamp;
  let last = -1;
  for (const p of prefixes) {
    for (let at = lower.indexOf(p); at !== -1; at = lower.indexOf(p, at + 1)) {
      placeStamp[at] = mine;
      if (at > last) last = at;
    }
  }
  lastCandidate = last;
  return (i) => placeStamp[starts[i]] === mine;
}

/**
 * A fragment built as one line: runs of white space (JavaScript's \s) made single spaces, and
 * trimmed, as text.replace(/\s+/g, ' ').trim() would, without the copies.
 */
class OneLine {
  private out = '';
  /** white space is pending (written as one space before what comes next, unless at the start) */
  private space = false;

  constructor(private readonly text: string) {}

  add(from: number, to: number) {
    const t = this.text;
    let run = from;
    let i = from;
    while (i < to) {
      const c = t.charCodeAt(i);
      if (!isSpace(c)) {
        i++;
        continue;
      }
      // One space between words is already what the line wants: the run goes on through it, so
      // that a fragment is copied a line at a time rather than a word at a time.
      if (c === 0x20 && i > run && i + 1 < to && !isSpace(t.charCodeAt(i + 1))) {
        i++;
        continue;
      }
      if (i > run) this.put(t.slice(run, i));
      this.space = true;
      while (i < to && isSpace(t.charCodeAt(i))) i++;
      run = i;
    }
    if (to > run) this.put(t.slice(run, to));
  }

  mark(from: number, to: number) {
    this.put('\u0001');
    this.out += this.text.slice(from, to) + '\u0002';
  }

  done(): string {
    return this.out;
  }

  private put(s: string) {
    if (this.space && this.out !== '') this.out += ' ';
    this.space = false;
    this.out += s;
  }
}

/** JavaScript's \s: the characters String.prototype.trim and /\s/ take for white space. */
function isSpace(c: number): boolean {
  if (c < 0x80) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/** The spans of a word to mark: the whole word when its stem is asked for, or CJK pairs within it. */
function matchedParts(word: string, lexemes: ReadonlySet<string>): Span[] {
  const own = wordLexemes(word);
  if (own.length <= 1) return own.length === 1 && lexemes.has(own[0]) ? [[0, word.length]] : NONE;
  // A run of CJK characters: each asked-for pair, by its place (in UTF-16 units).
  const spans: Span[] = [];
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
