import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { RejectedMessage } from '../errors.ts';
import { fastParse } from './fast-parse.ts';
import { unfold } from './header-block.ts';
import { generatedMessageId, normalizeMessageId, threadingReferences } from './message-id.ts';

/**
 * Our own view of a message. mailparser is in maintenance mode: it stays behind this one function
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
  size: number;
  content: Buffer;
  contentId: string | null;
  inline: boolean;
}

const FUTURE_SLACK_MS = 24 * 3600 * 1000;
const EARLIEST = Date.UTC(1980, 0, 1);

// The first line of a message must be a header field ("Name: value").
const FIRST_HEADER = /^[\x21-\x39\x3b-\x7e]+[ \t]*:/;

export async function parse(raw: Buffer, receivedAt = new Date()): Promise<ParsedMessage> {
  if (!FIRST_HEADER.test(raw.subarray(0, 1000).toString('latin1'))) {
    throw new RejectedMessage('message could not be parsed: it does not start with a header section', 'unparseable');
  }
  // Most list mail is one plain-text part: read it directly, 15x cheaper than the MIME parser.
  return fastParse(raw, receivedAt) ?? parseMime(raw, receivedAt);
}

/** The full MIME parse (mailparser). parse() uses it for everything fastParse() leaves. */
export async function parseMime(raw: Buffer, receivedAt = new Date()): Promise<ParsedMessage> {
  let mail: ParsedMail;
  try {
    mail = await simpleParser(raw, { skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
  } catch (err) {
    throw new RejectedMessage(`message could not be parsed: ${(err as Error).message}`, 'unparseable');
  }
  const headers = new Map<string, string[]>();
  for (const { key, line } of mail.headerLines ?? []) {
    const value = unfold(line.slice(line.indexOf(':') + 1));
    const list = headers.get(key);
    if (list) list.push(value);
    else headers.set(key, [value]);
  }
  if (headers.size === 0) {
    throw new RejectedMessage('message could not be parsed: it has no header section', 'unparseable');
  }

  const ownId = normalizeMessageId(headers.get('message-id')?.[0]);
  const from = firstAddress(mail.from);
  return bounded({
    messageId: ownId ?? generatedMessageId(raw),
    generatedId: ownId === null,
    subject: clean(mail.subject ?? ''),
    fromName: clean(from?.name ?? ''),
    fromEmail: clean(from?.address ?? '').toLowerCase(),
    date: messageDate(mail.date, headers.get('received') ?? [], receivedAt),
    inReplyTo: normalizeMessageId(headers.get('in-reply-to')?.[0]),
    references: threadingReferences(headers.get('references')),
    text: clean(mail.text ?? ''),
    html: typeof mail.html === 'string' ? clean(mail.html) : null,
    attachments: mail.attachments.map((a) => ({
      filename: a.filename ? clean(a.filename) : null,
      contentType: a.contentType || 'application/octet-stream',
      size: a.size ?? a.content.length,
      content: a.content,
      contentId: a.contentId ?? null,
      inline: a.contentDisposition === 'inline' && a.related === true,
    })),
    headers,
  });
}

function firstAddress(obj: AddressObject | AddressObject[] | undefined) {
  const first = Array.isArray(obj) ? obj[0] : obj;
  const value = first?.value?.[0];
  if (!value) return undefined;
  // A group ("undisclosed-recipients:;") nests its members.
  return value.group?.[0] ?? value;
}

/**
 * The Date header when it is plausible; otherwise the time of the first Received hop that has a
 * parsable date; otherwise when we received it. Future dates beyond a day are not trusted.
 */
export function messageDate(headerDate: Date | undefined, received: string[], receivedAt: Date): Date {
  const plausible = (d: Date | undefined) =>
    d !== undefined && !Number.isNaN(d.getTime()) && d.getTime() >= EARLIEST && d.getTime() <= receivedAt.getTime() + FUTURE_SLACK_MS;
  if (plausible(headerDate)) return headerDate!;
  for (const line of received) {
    const semi = line.lastIndexOf(';');
    if (semi < 0) continue;
    const d = new Date(line.slice(semi + 1).trim().replace(/\s*\([^)]*\)\s*$/, ''));
    if (plausible(d)) return d;
  }
  return receivedAt;
}

/**
 * Limits on what is stored of a message's headers, so that no message can fail to be stored
 * for its size (and so be retried forever): the subject takes part in the search index, whose
 * entries have a size limit; the author's address is an index key. The raw bytes keep it all.
 */
const MAX_SUBJECT = 1000;
const MAX_NAME = 500;
const MAX_ADDRESS = 254;

export function bounded(m: ParsedMessage): ParsedMessage {
  const subject = m.subject.length > MAX_SUBJECT ? `${m.subject.slice(0, MAX_SUBJECT)}…` : m.subject;
  const fromName = m.fromName.length > MAX_NAME ? `${m.fromName.slice(0, MAX_NAME)}…` : m.fromName;
  // An "address" longer than any address can be, or with control characters, is no address.
  const fromEmail = m.fromEmail.length > MAX_ADDRESS || /[\u0000-\u001f\u007f]/.test(m.fromEmail) ? '' : m.fromEmail;
  return subject === m.subject && fromName === m.fromName && fromEmail === m.fromEmail ? m : { ...m, subject, fromName, fromEmail };
}

/** PostgreSQL text cannot hold NUL; lone surrogates would be mangled anyway. */
function clean(s: string): string {
  return s.includes('\u0000') ? s.replace(/\u0000/g, '') : s;
}
