/*
 * What parsing gives, whichever parser read the message (fast-parse.ts or parse.ts's MIME parse):
 * our own type, and the rules both apply to the date and to the sizes of what is stored.
 */

/**
 * Our own view of a message. mailparser is in maintenance mode: it stays behind parse() (parse.ts)
 * so that replacing it touches nothing else.
 */
export interface ParsedMessage {
  messageId: string;
  /** true when the message had no usable Message-ID and `messageId` was derived from its bytes */
  generatedId: boolean;
  subject: string;
  fromName: string;
  fromEmail: string;
  date: Date;
  inReplyTo: string | null;
  references: string[];
  text: string;
  html: string | null;
  attachments: ParsedAttachment[];
  /** header lines by lower-case name, values unfolded, in order of appearance */
  headers: Map<string, string[]>;
}

export interface ParsedAttachment {
  filename: string | null;
  contentType: string;
  /** the charset its Content-Type names, if any: what a text attachment's bytes are in */
  charset?: string | null;
  size: number;
  content: Buffer;
  contentId: string | null;
  inline: boolean;
}

const FUTURE_SLACK_MS = 24 * 3600 * 1000;
const EARLIEST = Date.UTC(1980, 0, 1);

/**
 * The Date header when it is plausible; otherwise the time of the first Received hop that has a
 * parsable date; otherwise `undated` (when we received it, unless the caller knows better: an
 * import, the mbox's From_ line). Dates beyond a day after receivedAt are not trusted.
 */
export function messageDate(headerDate: Date | undefined, received: string[], receivedAt: Date, undated = receivedAt): Date {
  const plausible = (d: Date | undefined) =>
    d !== undefined && !Number.isNaN(d.getTime()) && d.getTime() >= EARLIEST && d.getTime() <= receivedAt.getTime() + FUTURE_SLACK_MS;
  if (plausible(headerDate)) return headerDate!;
  for (const line of received) {
    const semi = line.lastIndexOf(';');
    if (semi < 0) continue;
    const d = new Date(withoutComment(line.slice(semi + 1).trim()));
    if (plausible(d)) return d;
  }
  return undated;
}

/**
 * A date without the "(comment)" that ends it ("… +0000 (UTC)"), what /\s*\([^)]*\)\s*$/ removes,
 * found by position: the regular expression took time quadratic in the field, and a Received
 * field of 150,000 "(" held the ingest listener for 15 s.
 */
function withoutComment(s: string): string {
  if (!s.endsWith(')')) return s;
  const open = s.indexOf('(', s.lastIndexOf(')', s.length - 2) + 1);
  return open < 0 ? s : s.slice(0, open).trimEnd();
}

/**
 * Limits on what is stored of a message's headers, so that no message can fail to be stored
 * for its size (and so be retried forever): the subject takes part in the search index, whose
 * entries have a size limit; the author's address is an index key. The raw bytes keep it all.
 */
const MAX_SUBJECT = 1000;
const MAX_NAME = 500;
const MAX_ADDRESS = 254;

/**
 * A subject or name is one line wherever it is shown: an encoded word can carry line breaks
 * (=?utf-8?b?…?= of "\n"), and in the text of a notice they made lines of their own, a fake
 * entry in the moderators' list of held posts with the "by mail" address of another post under it.
 * Control characters and line separators become spaces. Notices apply it again to what they quote
 * (held posts stored before, reasons quoting header fields).
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
/**
 * Bidirectional embeddings, overrides and isolates go too: in a one-line field they reorder what
 * is shown after it ("Re: hi\u202E" made the author a list or digest shows next to the subject
 * read backwards, a name of the poster's choosing), as they go from attachment names
 * (attachment-type.ts). Text in Arabic or Hebrew needs none of them to show right. As a regular
 * expression's source that PostgreSQL reads too: the one-line-fields job cleans stored fields with it.
 */
export const BIDI_CONTROLS = '[\u202a-\u202e\u2066-\u2069]';
const BIDI = new RegExp(BIDI_CONTROLS, 'g');

export function oneLine(s: string): string {
  CONTROLS.lastIndex = 0;
  const flat = CONTROLS.test(s) ? s.replace(CONTROLS, ' ') : s;
  BIDI.lastIndex = 0;
  return BIDI.test(flat) ? flat.replace(BIDI, '') : flat;
}

export function bounded(m: ParsedMessage): ParsedMessage {
  const subject = oneLine(m.subject.length > MAX_SUBJECT ? `${m.subject.slice(0, MAX_SUBJECT)}…` : m.subject);
  const fromName = oneLine(m.fromName.length > MAX_NAME ? `${m.fromName.slice(0, MAX_NAME)}…` : m.fromName);
  // An "address" longer than any address can be, or with control characters, is no address.
  const fromEmail = m.fromEmail.length > MAX_ADDRESS || /[\u0000-\u001f\u007f]/.test(m.fromEmail) ? '' : m.fromEmail;
  return subject === m.subject && fromName === m.fromName && fromEmail === m.fromEmail ? m : { ...m, subject, fromName, fromEmail };
}
