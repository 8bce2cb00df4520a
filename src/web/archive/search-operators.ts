/*
 * The operators a reader may type in the search box, as public-inbox and Gmail take them:
 * from:, subject:, list:, before:, after:, each with a bare value or a quoted one
 * (from:"Jane Doe", subject:"two words"). What is left is the words, in websearch syntax.
 * An unknown `word:` is text; so is an operator inside a quoted phrase.
 */

export const OPERATORS = ['from', 'subject', 'list', 'before', 'after'] as const;
export type Operator = typeof OPERATORS[number];

export interface ParsedQuery {
  /** the words, operators taken out (may be empty) */
  words: string;
  /** each operator's values, in the order typed */
  ops: Record<Operator, string[]>;
  /** operators given without a value */
  empty: Operator[];
}

/** At most this many operators: a query is typed, not generated. */
export const MAX_OPERATORS = 20;

// An operator at the start of a word: name, colon, then (after spaces, as Gmail allows:
// `subject: dinner`) a quoted value (to the next quote or the end) or a bare one (to the next space).
const OPERATOR = /^(from|subject|list|before|after):\s*(?:"([^"]*)"?|(\S*))/i;

export function parseSearchQuery(q: string): ParsedQuery {
  const ops: Record<Operator, string[]> = { from: [], subject: [], list: [], before: [], after: [] };
  const empty: Operator[] = [];
  let words = '';
  let i = 0;
  while (i < q.length) {
    const c = q[i];
    const wordStart = i === 0 || /\s/.test(q[i - 1]);
    if (c === '"') {
      // A quoted phrase of the words: copied whole, operators inside it are text.
      const close = q.indexOf('"', i + 1);
      const end = close < 0 ? q.length : close + 1;
      words += q.slice(i, end);
      i = end;
      continue;
    }
    const m = wordStart ? OPERATOR.exec(q.slice(i)) : null;
    if (m) {
      const name = m[1].toLowerCase() as Operator;
      const value = (m[2] ?? m[3]).trim();
      if (value) ops[name].push(value);
      else empty.push(name);
      words += ' ';
      i += m[0].length;
      continue;
    }
    words += c;
    i++;
  }
  return { words: words.replace(/\s+/g, ' ').trim(), ops, empty };
}

/** Whether the text starts with one of the operators (so it is not a bare Message-ID). */
export function startsWithOperator(q: string): boolean {
  return OPERATOR.test(q.trim());
}
