import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { RejectedMessage } from '../errors.ts';
import { fastParse } from './fast-parse.ts';
import { htmlTooCostly } from './html-cost.ts';
import { MAX_MIME_PARAMETERS, tooManyMimeParameters } from './mime-parameters.ts';
import { decodeIso2022jpRuns } from './iso-2022-jp.ts';
import { unfold } from './header-block.ts';
import { generatedMessageId, normalizeMessageId, threadingReferences } from './message-id.ts';
import { bounded, messageDate, type ParsedMessage } from './parsed-message.ts';

export type { ParsedAttachment, ParsedMessage } from './parsed-message.ts';

// The first line of a message must be a header field ("Name: value").
const FIRST_HEADER = /^[\x21-\x39\x3b-\x7e]+[ \t]*:/;

/**
 * `receivedAt`: when the message arrived (a Date header more than a day after it is not believed).
 * `undated`: the date of a message with no date to believe, Received hops included (an import
 * gives the mbox's From_ line date).
 */
export async function parse(raw: Buffer, receivedAt = new Date(), undated = receivedAt): Promise<ParsedMessage> {
  if (!FIRST_HEADER.test(raw.subarray(0, 1000).toString('latin1'))) {
    throw new RejectedMessage('message could not be parsed: it does not start with a header section', 'unparseable');
  }
  // Most list mail is one plain-text part: read it directly, 15x cheaper than the MIME parser.
  return fastParse(raw, receivedAt, undated) ?? parseMime(raw, receivedAt, undated);
}

/**
 * The message's Date, or undefined when it has none that parses: mailparser puts the time of the
 * parse in place of a Date it cannot read, which messageDate() then believed, so a message with
 * "Date: yesterday-ish" skipped its Received hops and was dated now (by an import, the day of
 * the import, whenever it was sent).
 */
function headerDate(mail: ParsedMail, headers: Map<string, string[]>): Date | undefined {
  const given = (headers.get('date') ?? []).map((v) => new Date(v).getTime()).filter((t) => !Number.isNaN(t));
  const picked = mail.date?.getTime();
  if (picked !== undefined && given.includes(picked)) return mail.date;
  return given.length > 0 ? new Date(given[0]) : undefined;
}

const OPTIONS = { skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true };

/** The full MIME parse (mailparser). parse() uses it for everything fastParse() leaves. */
export async function parseMime(raw: Buffer, receivedAt = new Date(), undated = receivedAt): Promise<ParsedMessage> {
  let mail: ParsedMail;
  try {
    mail = await mimeParse(raw);
  } catch (err) {
    if (err instanceof RejectedMessage) throw err;
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
    date: messageDate(headerDate(mail, headers), headers.get('received') ?? [], receivedAt, undated),
    inReplyTo: normalizeMessageId(headers.get('in-reply-to')?.[0]),
    references: threadingReferences(headers.get('references')),
    // mailparser decodes labelled ISO-2022-JP; sent without a charset or as US-ASCII, its runs read as ASCII.
    text: decodeIso2022jpRuns(clean(mail.text ?? '')),
    html: typeof mail.html === 'string' ? decodeIso2022jpRuns(clean(mail.html)) : null,
    attachments: mail.attachments.map((a) => ({
      filename: a.filename ? clean(a.filename) : null,
      contentType: a.contentType || 'application/octet-stream',
      charset: declaredCharset(a.headers),
      size: a.size ?? a.content.length,
      content: a.content,
      contentId: a.contentId ?? null,
      inline: a.contentDisposition === 'inline' && a.related === true,
    })),
    headers,
  });
}

/**
 * mailparser's parse, refused at once for parameters it would take seconds over (mime-parameters.ts),
 * with its HTML read only when that costs little (html-cost.ts). It turns an
 * HTML part into text unless the part is the HTML of a multipart/alternative, so the parts are
 * first read without that: a message without HTML, or with multipart/alternative on top, is done;
 * one with other HTML is parsed again with the conversion once the HTML is known to be cheap, and
 * refused otherwise (the conversion failed past 2,000 levels anyway, after the cost).
 */
async function mimeParse(raw: Buffer): Promise<ParsedMail> {
  if (tooManyMimeParameters(raw)) {
    throw new RejectedMessage(`message could not be parsed: a Content-Type or Content-Disposition field has more than ${MAX_MIME_PARAMETERS} parameters`, 'unparseable');
  }
  const parts = await simpleParser(raw, { ...OPTIONS, skipHtmlToText: true });
  if (typeof parts.html !== 'string' || /^multipart\/alternative$/i.test(contentType(parts))) return parts;
  if (htmlTooCostly(parts.html)) {
    throw new RejectedMessage('message could not be parsed: its HTML is nested too deeply to be read', 'unparseable');
  }
  return simpleParser(raw, OPTIONS);
}

/**
 * The text of an HTML part, made as parse() makes the text of HTML-only mail (mailparser's
 * conversion: paragraphs and breaks become lines, a blockquote's lines start with "> "), from its
 * first `maxChars` characters only; '' when that much HTML would cost too much to parse
 * (html-cost.ts). For HTML that parse() leaves as HTML: the only part of a multipart/alternative.
 */
export async function htmlAsText(html: string, maxChars: number): Promise<string> {
  const head = html.slice(0, maxChars);
  if (!head.trim() || htmlTooCostly(head)) return '';
  // The part alone, as a message of one text/html part: its text is the conversion's.
  const mail = await simpleParser(Buffer.from(`Content-Type: text/html; charset=utf-8\r\n\r\n${head}`, 'utf8'), OPTIONS);
  return clean(mail.text ?? '');
}

function contentType(mail: ParsedMail): string {
  const value = mail.headers.get('content-type') as { value?: string } | string | undefined;
  return (typeof value === 'string' ? value : value?.value ?? '').trim();
}

/** The charset parameter of a part's Content-Type, as mailparser read its headers. */
function declaredCharset(headers: Map<string, unknown> | undefined): string | null {
  const charset = (headers?.get('content-type') as { params?: { charset?: unknown } } | undefined)?.params?.charset;
  return typeof charset === 'string' && charset.trim() ? charset.trim() : null;
}

function firstAddress(obj: AddressObject | AddressObject[] | undefined) {
  const first = Array.isArray(obj) ? obj[0] : obj;
  const value = first?.value?.[0];
  if (!value) return undefined;
  // A group ("undisclosed-recipients:;") nests its members.
  return value.group?.[0] ?? value;
}

/** PostgreSQL text cannot hold NUL; lone surrogates would be mangled anyway. */
function clean(s: string): string {
  return s.includes('\u0000') ? s.replace(/\u0000/g, '') : s;
}
