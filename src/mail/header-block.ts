/*
 * Byte-level work on a message's header section, for copies that must leave everything we do not
 * deliberately change exactly as the author (and their DKIM signature) had it.
 */

export interface SplitMessage {
  /** the header section, each field with its line ending, without the blank line */
  head: Buffer;
  /** the blank line and everything after it (empty when the message has no body) */
  rest: Buffer;
  /** the line ending the message uses: "\r\n", or "\n" for a message stored with bare newlines */
  eol: string;
}

export interface HeaderEnd {
  /** where the blank line that ends the header section starts: the line ending of the last field */
  at: number;
  /** the line ending around it: the separator is two of these */
  eol: '\r\n' | '\n';
}

/**
 * Where the header section ends: at the first "\r\n\r\n" or "\n\n", whichever comes first (a
 * message stored with bare newlines has the second); null when there is no blank line.
 */
export function headerEnd(raw: Buffer): HeaderEnd | null {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { at: crlf, eol: '\r\n' };
  if (lf >= 0) return { at: lf, eol: '\n' };
  return null;
}

/** A header value without its folding: each line break before white space becomes one space; trimmed. */
export function unfold(value: string): string {
  return value.replace(/\r?\n[ \t]+/g, ' ').trim();
}

export function splitMessage(raw: Buffer): SplitMessage {
  const end = headerEnd(raw);
  if (end) return { head: raw.subarray(0, end.at + end.eol.length), rest: raw.subarray(end.at + end.eol.length), eol: end.eol };
  // Only headers: make sure the last one ends with a newline.
  const eol = raw.includes('\r\n') ? '\r\n' : '\n';
  const endsWithNewline = raw.length > 0 && raw[raw.length - 1] === 0x0a;
  return { head: endsWithNewline ? raw : Buffer.concat([raw, Buffer.from(eol)]), rest: Buffer.from(eol), eol };
}

export interface HeaderField {
  /** lower-case field name */
  name: string;
  /** the field's bytes, folded continuation lines and line ending included */
  bytes: Buffer;
}

/** The header section as fields, folded lines kept together. */
export function headerFields(head: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  let start = 0;
  let pos = 0;
  while (pos < head.length) {
    const nl = head.indexOf(0x0a, pos);
    const end = nl < 0 ? head.length : nl + 1;
    const next = head[end];
    if (end < head.length && (next === 0x20 || next === 0x09)) {
      pos = end; // a continuation line follows
      continue;
    }
    const bytes = head.subarray(start, end);
    const colon = bytes.indexOf(0x3a);
    fields.push({ name: (colon > 0 ? bytes.subarray(0, colon).toString('latin1') : '').trim().toLowerCase(), bytes });
    start = end;
    pos = end;
  }
  return fields;
}

/** The unfolded value of a field as text (latin1 keeps 8-bit bytes one to one). */
export function fieldValue(field: HeaderField): string {
  const text = field.bytes.toString('latin1');
  return unfold(text.slice(text.indexOf(':') + 1));
}

/** The first value of a header, or null. */
export function headerValue(fields: HeaderField[], name: string): string | null {
  const f = fields.find((x) => x.name === name);
  return f ? fieldValue(f) : null;
}

/** The header section without the named fields (lower-case names). Unchanged bytes when none match. */
export function withoutFields(head: Buffer, names: ReadonlySet<string>): Buffer {
  const fields = headerFields(head);
  if (!fields.some((f) => names.has(f.name))) return head;
  return Buffer.concat(fields.filter((f) => !names.has(f.name)).map((f) => f.bytes));
}

/** The message with only the first `keep` of the named field (lower-case name); the same buffer when it has no more. */
export function withFirstFields(raw: Buffer, name: string, keep: number): Buffer {
  const { head, rest } = splitMessage(raw);
  let seen = 0;
  const kept = headerFields(head).filter((f) => f.name !== name || ++seen <= keep);
  return seen <= keep ? raw : Buffer.concat([...kept.map((f) => f.bytes), rest]);
}

/** Lines "Name: value" joined with the message's line ending, each terminated. */
export function headerLines(lines: string[], eol: string): Buffer {
  return Buffer.from(lines.map((l) => `${l}${eol}`).join(''), 'utf8');
}

/**
 * Whether text can go into a header as it is: printable ASCII with no "=?" in it. Text holding
 * "=?" is encoded too (RFC 2047 section 5): written plain, readers decode it as an encoded word
 * (a decoded subject or name "=?utf-8?b?SSBxdWl0?=" would arrive as "I quit").
 */
function plainHeaderText(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text) && !text.includes('=?');
}

/** A header value encoded as RFC 2047 words when it cannot go as it is (plainHeaderText). */
export function encodeWord(text: string, force = false): string {
  if (!force && plainHeaderText(text)) return text;
  const out: string[] = [];
  // Keep each encoded word under 75 characters: 45 bytes of UTF-8 per word at most.
  let chunk = '';
  for (const ch of text) {
    if (Buffer.byteLength(chunk + ch) > 45) {
      out.push(`=?UTF-8?B?${Buffer.from(chunk).toString('base64')}?=`);
      chunk = '';
    }
    chunk += ch;
  }
  if (chunk) out.push(`=?UTF-8?B?${Buffer.from(chunk).toString('base64')}?=`);
  return out.join(' ');
}

/**
 * A Subject field for mail we write, without its final line ending: folded at white space, and in
 * encoded words when the text has a run too long to fold, so that no line passes 998 octets (a
 * subject may be 1,000 characters, and "Re: " makes it more).
 */
export function subjectField(subject: string): string {
  const value = subject.replace(/[\r\n]+/g, ' ');
  const fold = (v: string) => foldField(Buffer.from(`Subject: ${v}\r\n`, 'latin1'), '\r\n')?.toString('latin1').slice(0, -2) ?? null;
  return fold(encodeWord(value)) ?? fold(encodeWord(value, true))!;
}

/** A display name as a quoted string or encoded words, ready for "Name <addr>". */
export function displayName(name: string): string {
  const clean = name.replace(/[\r\n]+/g, ' ').trim();
  if (!clean) return '';
  // Encoded words also for a run too long to fold (a header line may not exceed 998 octets).
  if (!plainHeaderText(clean) || /[^ ]{61}/.test(clean)) return encodeWord(clean, true);
  if (/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$/.test(clean)) return clean;
  return `"${clean.replace(/(["\\])/g, '\\$1')}"`;
}

/**
 * A field of mail we write ("Name: value", without its line ending), folded only where a line
 * would pass 998 octets, so that short fields stay one line as readers and tests expect. A display
 * name from displayName() always folds: its encoded words and quoted words are runs of at most 75
 * characters between spaces. A list's name of 200 CJK characters is some 1,000 octets of encoded
 * words, and "From: … <LIST-request@…>" went out as one line past the limit, on every notice and
 * digest of the list (and a member's name so on every copy of their replies from the web).
 */
export function writtenField(line: string): string {
  const folded = foldField(Buffer.from(`${line}\r\n`, 'utf8'), '\r\n', MAX_LINE);
  return folded ? folded.subarray(0, folded.length - 2).toString('utf8') : line;
}

/** RFC 5322 §2.1.1: a line must not exceed 998 octets (without its CRLF), and should not exceed 78. */
export const MAX_LINE = 998;
const SOFT_LINE = 78;

/**
 * One header field (name, value, final line ending; folds already in it are kept) folded at white
 * space so that its lines keep to `soft` octets (78) where they can and to 998 always. Folding only puts a
 * line break before white space that is there, so the unfolded value is the same. Null when a
 * run with no white space in it is too long for any fold: the caller must build the field otherwise.
 */
export function foldField(field: Buffer, eol: string, soft = SOFT_LINE): Buffer | null {
  let text = field.toString('latin1');
  if (text.endsWith(eol)) text = text.slice(0, -eol.length);
  const out: string[] = [];
  for (const physical of text.split(eol)) {
    let line = physical;
    while (line.length > soft) {
      const cut = breakAt(line, soft);
      if (cut < 0) break;
      out.push(line.slice(0, cut));
      line = line.slice(cut);
    }
    if (line.length > MAX_LINE) return null;
    out.push(line);
  }
  return Buffer.from(out.join(eol) + eol, 'latin1');
}

/**
 * Where to break a line too long: before the last white space within 78 octets, else the first
 * one after it (within 998); never so that a line is white space only. -1 when there is none.
 */
function breakAt(line: string, soft: number): number {
  const first = line.search(/[^ \t]/);
  let last = line.length - 1;
  while (last >= 0 && (line[last] === ' ' || line[last] === '\t')) last--;
  const ok = (i: number) => (line[i] === ' ' || line[i] === '\t') && i > first && i < last;
  for (let i = soft; i > 0; i--) if (ok(i)) return i;
  for (let i = soft + 1; i <= Math.min(line.length - 1, MAX_LINE); i++) if (ok(i)) return i;
  return -1;
}
