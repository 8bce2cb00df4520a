/*
 * The words of a search as PostgreSQL's `listkeeper` text-search configuration sees them (a copy
 * of `english`: Snowball's English stemmer, Porter2, and its stop words), computed in JavaScript
 * for the two things that must not cost a trip to the database: choosing how a search reads the
 * archive (search-scan.ts) and marking the matched words in excerpts. Neither decides what is
 * found: that is the tsquery, in the database. Where the two stemmers disagree on a word, the
 * cost is a slower plan or an unmarked word, never a wrong result.
 */

import { stem } from 'porter2';

/** PostgreSQL's english.stop (share/tsearch_data), which the english configuration drops. */
const STOP_WORDS = new Set('i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it its itself they them their theirs themselves what which who whom this that these those am is are was were be been being have has had having do does did doing a an the and but if or because as until while of at by for with about against between into through during before after above below to from up down in out on off over under again further then once here there when where why how all any both each few more most other some such no nor not only own same so than too very s t can will just don should now'.split(' '));

// Scripts written without spaces; the same ranges as search_text() in sql/0050_search.sql.
const NO_SPACES_CLASS = '[\\u0E00-\\u0EFF\\u1000-\\u109F\\u1780-\\u17FF\\u3040-\\u30FF\\u3400-\\u4DBF\\u4E00-\\u9FFF\\uAC00-\\uD7AF\\uF900-\\uFAFF\\u{20000}-\\u{2FA1F}]';
/** A run of such characters (global: for replace and match) */
export const NO_SPACES_RUN = new RegExp(`${NO_SPACES_CLASS}{2,}`, 'gu');
/** One such character, anywhere */
export const NO_SPACES_CHAR = new RegExp(NO_SPACES_CLASS, 'u');
const STARTS_NO_SPACES = new RegExp(`^${NO_SPACES_CLASS}`, 'u');

/**
 * Punctuation and symbols beyond ASCII, which search_text() (sql/0075) writes as spaces before any
 * text is parsed, documents and queries alike: under a C or POSIX LC_CTYPE PostgreSQL's parser
 * takes them for letters, and "“vacuum”" was one word. The same ranges as there, as code points;
 * the search-vectors job (db/search-vectors.ts) looks for them in PostgreSQL's syntax.
 */
const SYMBOL_RANGES: readonly [number, number][] = [
  [0x80, 0xac], [0xae, 0xbf], [0xd7, 0xd7], [0xf7, 0xf7], [0x2000, 0x200b], [0x200e, 0x206f], [0x20a0, 0x20cf],
  [0x2100, 0x214f], [0x2190, 0x2bff], [0x3000, 0x303f], [0xfe30, 0xfe6f], [0xff01, 0xff0f], [0xff1a, 0xff20],
  [0xff3b, 0xff40], [0xff5b, 0xff65], [0x1f000, 0x1faff],
];
const hex = (c: number) => c.toString(16);
const SYMBOLS = new RegExp(`[${SYMBOL_RANGES.map(([a, b]) => `\\u{${hex(a)}}-\\u{${hex(b)}}`).join('')}]`, 'gu');

/** Those characters and the soft hyphen, as a bracket expression of PostgreSQL's regular expressions. */
export const PG_SYMBOLS_CLASS = `[\\u00ad${SYMBOL_RANGES.map(([a, b]) => `\\U${hex(a).padStart(8, '0')}-\\U${hex(b).padStart(8, '0')}`).join('')}]`;

/** A query's text with those as spaces, and soft hyphens dropped, as search_text() writes a document's. */
export function spacedSymbols(text: string): string {
  return (text.includes('\u00AD') ? text.replaceAll('\u00AD', '') : text).replace(SYMBOLS, ' ');
}

/** The lexemes of one word of text: its stem, none for a stop word, the bigrams of a CJK run. */
export function wordLexemes(word: string): string[] {
  const w = word.toLowerCase();
  if (STARTS_NO_SPACES.test(w)) {
    const chars = [...w];
    if (chars.length < 2) return [w];
    return chars.slice(1).map((c, i) => chars[i] + c);
  }
  if (STOP_WORDS.has(w)) return [];
  // Snowball stems ASCII words; PostgreSQL's english_stem takes other letters as they are.
  return /^[a-z']+$/.test(w) ? [stem(w)] : [w];
}

/** A word-like run of text (letters, digits, an apostrophe's ending), global: for exec loops. */
export const WORD_PATTERN = /[\p{L}\p{N}]+(?:'[\p{L}]+)?/gu;

export interface TextWord {
  word: string;
  start: number;
  end: number;
}

/** Word-like runs of text, each with where it starts and ends. */
export function textWords(text: string): TextWord[] {
  return [...text.matchAll(WORD_PATTERN)].map((m) => ({ word: m[0], start: m.index, end: m.index + m[0].length }));
}

/**
 * A websearch query (what websearch_to_tsquery takes) as alternatives (split on "or"), each the
 * lexemes every match must have; words after a '-' are left out (they narrow, never widen).
 * A search asks this of its query four or five times (its plan, its window, its estimate, the
 * words to mark): the answers for recent queries are kept, and are not to be changed.
 */
export function queryAlternatives(q: string): readonly (readonly string[])[] {
  let known = alternativesOf.get(q);
  if (known === undefined) {
    known = alternativesIn(q);
    if (alternativesOf.size >= 512) alternativesOf.clear();
    alternativesOf.set(q, known);
  }
  return known;
}

const alternativesOf = new Map<string, string[][]>();

function alternativesIn(q: string): string[][] {
  const alternatives: string[][] = [[]];
  // Quoted phrases count as their words; "or" outside quotes starts another alternative.
  for (const token of q.replace(/"/g, ' ').split(/\s+/).filter(Boolean)) {
    if (token.toLowerCase() === 'or') {
      alternatives.push([]);
      continue;
    }
    if (token.startsWith('-')) continue;
    for (const { word } of textWords(token)) alternatives[alternatives.length - 1].push(...wordLexemes(word));
  }
  return alternatives.filter((a) => a.length > 0);
}

/** Every lexeme a query asks for, to mark in excerpts. */
export function queryLexemes(q: string): Set<string> {
  return new Set(queryAlternatives(q).flat());
}
