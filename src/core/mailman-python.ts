/*
 * The Python assignments Mailman 2's `config_list -o` writes: `name = repr(value)` (strings as
 * '…' or "…", several lines as """…""", numbers, True/False/None, lists), with # comments
 * between them. Only literals are read; nothing is evaluated.
 */

export type PyValue = string | number | boolean | null | PyValue[];

export class PythonSyntaxError extends Error {}

const MAX_DEPTH = 100;

/** Python 2's one-letter escapes (\N{name} in u'' strings is kept as written). */
const SIMPLE_ESCAPES = new Map([['n', '\n'], ['t', '\t'], ['r', '\r'], ['a', '\x07'], ['b', '\b'], ['f', '\f'], ['v', '\v']]);

/** The assignments of a config_list file, in order; a line that is none is a PythonSyntaxError with its number. */
export function parseAssignments(text: string): { name: string; value: PyValue; line: number }[] {
  const out: { name: string; value: PyValue; line: number }[] = [];
  let i = 0;
  // Line numbers counted on from the last one asked for (assignments come in order): slicing the
  // text from its start each time made 40,000 lines take a minute.
  let counted = 0;
  let countedLine = 1;
  const lineAt = (pos: number) => {
    if (pos < counted) {
      counted = 0;
      countedLine = 1;
    }
    for (let k = text.indexOf('\n', counted); k >= 0 && k < pos; k = text.indexOf('\n', k + 1)) countedLine++;
    counted = pos;
    return countedLine;
  };
  const fail = (what: string): never => {
    throw new PythonSyntaxError(`line ${lineAt(i)}: ${what}`);
  };
  const spaces = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  };
  const blank = () => {
    for (;;) {
      while (i < text.length && /\s/.test(text[i])) i++;
      if (text[i] !== '#') return;
      while (i < text.length && text[i] !== '\n') i++;
    }
  };

  const str = (): string => {
    // Python 2: only u'' strings know \u and \U, and their \xNN is a code point; in a byte string
    // \xNN is a byte (config_list writes UTF-8 text as 'Caf\xc3\xa9') and "\u" is text.
    const unicode = text[i] === 'u' || text[i] === 'U';
    if (unicode) i++;
    const triple = text.startsWith('"""', i) || text.startsWith("'''", i);
    const quote = triple ? text.slice(i, i + 3) : text[i];
    i += quote.length;
    let s = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length === 0) return;
      s += decodeBytes(Buffer.from(bytes));
      bytes = [];
    };
    for (;;) {
      if (i >= text.length) fail('a string that does not end');
      if (text.startsWith(quote, i)) {
        i += quote.length;
        flush();
        return s;
      }
      const c = text[i++];
      if (c === '\n' && !triple) fail('a string that does not end on its line');
      const e = c === '\\' ? text[i++] : '';
      const hex = (n: number) => {
        const h = text.slice(i, i + n);
        if (!/^[0-9a-fA-F]+$/.test(h) || h.length !== n) fail('a bad escape in a string');
        i += n;
        return parseInt(h, 16);
      };
      // An octal escape, \0 to \377: one to three digits, a byte or a code point as \xNN is.
      const octal = () => {
        let o = e;
        while (o.length < 3 && /[0-7]/.test(text[i] ?? '')) o += text[i++];
        return parseInt(o, 8);
      };
      const isOctal = /^[0-7]$/.test(e);
      if ((e === 'x' || isOctal) && !unicode) {
        bytes.push(e === 'x' ? hex(2) : octal() & 0xff);
        continue;
      }
      flush();
      if (c !== '\\') s += c;
      else if (SIMPLE_ESCAPES.has(e)) s += SIMPLE_ESCAPES.get(e);
      else if (e === 'x') s += String.fromCodePoint(hex(2));
      else if (isOctal) s += String.fromCodePoint(octal());
      else if (e === 'u' && unicode) s += String.fromCodePoint(hex(4));
      else if (e === 'U' && unicode) {
        const cp = hex(8);
        if (cp > 0x10ffff) fail('a bad escape in a string');
        s += String.fromCodePoint(cp);
      }
      else if (e === '\n') s += '';
      else if (e === '\\' || e === "'" || e === '"') s += e;
      else s += `\\${e}`;
    }
  };

  const value = (depth = 0): PyValue => {
    // config_list nests lists one deep: a deeper file is no config_list output (and would exhaust the stack).
    if (depth > MAX_DEPTH) fail(`lists nested more than ${MAX_DEPTH} deep`);
    spaces();
    const c = text[i];
    if (c === '"' || c === "'" || ((c === 'u' || c === 'U') && (text[i + 1] === '"' || text[i + 1] === "'"))) return str();
    if (c === '[' || c === '(') {
      const close = c === '[' ? ']' : ')';
      i++;
      const items: PyValue[] = [];
      for (;;) {
        blank();
        if (text[i] === close) {
          i++;
          return items;
        }
        items.push(value(depth + 1));
        blank();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`"," or "${close}" in a list`);
      }
    }
    const word = /^(True|False|None|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)L?/.exec(text.slice(i, i + 40));
    if (!word) fail('a value that is not a string, a number, True, False, None or a list');
    i += word![0].length;
    return word![1] === 'True' ? true : word![1] === 'False' ? false : word![1] === 'None' ? null : Number(word![1]);
  };

  for (;;) {
    blank();
    if (i >= text.length) return out;
    const start = i;
    const name = /^[A-Za-z_]\w*/.exec(text.slice(i, i + 100));
    if (!name) fail('not an assignment (NAME = VALUE)');
    i += name![0].length;
    spaces();
    if (text[i] !== '=') fail(`"=" after ${name![0]}`);
    i++;
    const v = value();
    spaces();
    if (i < text.length && text[i] !== '\n' && text[i] !== '#' && text[i] !== '\r') fail(`more after the value of ${name![0]}`);
    out.push({ name: name![0], value: v, line: lineAt(start) });
  }
}

/** The bytes of a byte string's \x escapes: UTF-8 when they are, else Latin-1 (a character each). */
function decodeBytes(b: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return b.toString('latin1');
  }
}
