/*
 * The text of a message's text attachments, as the search indexes it (messages.attachment_text,
 * sql/0070): a patch, a log or a configuration file sent as an attachment is found by its words,
 * as public-inbox finds it. The body (the message's own text parts) is stored apart and is what
 * the pages show; this is for searching only.
 */

import { decodeIso2022jpRuns } from './iso-2022-jp.ts';
import type { ParsedAttachment } from './parsed-message.ts';

/**
 * What a message's row stores in messages.attachment_text: null for a message without attachments,
 * '' for one whose attachments were read and hold no text, else their text. Null with attachments
 * means "not read yet" (sql/0073): a message archived before sql/0070, or by the release before
 * this one during a rolling upgrade, which the attachment-text job reads.
 */
export function storedAttachmentText(attachments: readonly ParsedAttachment[]): string | null {
  return attachments.length === 0 ? null : (attachmentSearchText(attachments) ?? '');
}

/** As much as the search vector takes of the body (sql/0050's left(body, 200000)). */
export const MAX_ATTACHMENT_TEXT = 200_000;

/** Types whose bytes are text, whatever their name: text/* but HTML (its markup is not words). */
const TEXT_TYPE = /^text\/(?!html\b)/i;
/** Types mail clients give a patch or a log (or any file they cannot name) … */
const FILE_TYPE = /^application\/(octet-stream|x-patch|x-diff|x-sql|x-shellscript|x-sh)$/i;
/** … which count when the file's name says text. */
const TEXT_NAME = /\.(patch|diff|txt|log|sql|conf|ini|csv|md|rst|c|h|cc|cpp|py|pl|rb|sh|js|ts|java|go|rs|yaml|yml|json|xml)$/i;

/**
 * The text attachments' text, in order, each in the charset it declares (a Shift_JIS log, a
 * KOI8-R configuration file, UTF-16 in the byte order its bytes show), as UTF-16 when it plainly
 * is, or else as UTF-8 when it is UTF-8 (a stray invalid byte aside) and as Latin-1 otherwise (a
 * legacy charset's letters then still make words), ISO-2022-JP's escaped runs in it decoded;
 * null when there is none. An attachment whose first 8,192 characters look binary (looksBinary: a
 * NUL, or too many characters no text has) is left out whatever its type says. At most
 * MAX_ATTACHMENT_TEXT characters in all.
 */
export function attachmentSearchText(attachments: readonly ParsedAttachment[]): string | null {
  const parts: string[] = [];
  let length = 0;
  for (const a of attachments) {
    if (length >= MAX_ATTACHMENT_TEXT) break;
    const type = a.contentType.split(';')[0].trim();
    if (!TEXT_TYPE.test(type) && !(FILE_TYPE.test(type) && a.filename && TEXT_NAME.test(a.filename))) continue;
    const text = textOf(a.content, a.charset, MAX_ATTACHMENT_TEXT - length);
    if (text === null || !/\S/.test(text)) continue;
    parts.push(text);
    length += text.length + 2;
  }
  return parts.length ? parts.join('\n\n') : null;
}

/** An attachment's first `max` characters, null when it looks binary. */
function textOf(content: Buffer, charset: string | null | undefined, max: number): string | null {
  // Only what can be kept is decoded: a 20 MB log costs no more than its first `max`
  // characters (4 bytes at most each).
  const bytes = content.subarray(0, max * 4);
  const { text, utf16 } = decode(bytes, charset);
  // After decoding: UTF-16's text has NUL bytes, not NUL characters.
  if (looksBinary(text.slice(0, 8192), utf16)) return null;
  return text.slice(0, max).replace(/\u0000/g, '');
}

/**
 * Whether the start of a decoded attachment is binary: a NUL, as git and grep decide, or more than
 * one character in 32 that no text has. A compressed or encrypted file, a core dump, an image
 * without a NUL in its first 8 KB were indexed as junk words when named .patch or .log (read as
 * Latin-1, random bytes give about one such character in ten). What text has is every printable
 * character, U+0080–U+009F included (windows-1252's quotes and dashes read as Latin-1), and the
 * controls file(1) counts as text: BEL, BS, TAB, LF, VT, FF, CR and ESC (terminal logs, form feeds
 * in C sources, ISO-2022-JP's escapes). What it has not: the other C0 controls, DEL, and U+FFFD,
 * what a byte that is not in the charset decodes to. A log with a stray byte or a short run of
 * garbage stays text. Read as UTF-16, random bytes are mostly letters of some script, and give
 * U+FFFD (a lone surrogate) for one pair in 32: there the private use area (U+E000–U+F8FF, one
 * pair in ten) counts too, which text in a legacy charset can have (a GBK table, carrier emoji).
 */
function looksBinary(head: string, utf16 = false): boolean {
  let odd = 0;
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if (c === 0) return true;
    if ((c < 0x20 && !TEXT_CONTROL.has(c)) || c === 0x7f || c === 0xfffd || (utf16 && c >= 0xe000 && c <= 0xf8ff)) odd++;
  }
  return odd * 32 > head.length;
}

/** BEL, BS, TAB, LF, VT, FF, CR, ESC. */
const TEXT_CONTROL = new Set([0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1b]);

/**
 * The bytes in the charset declared, but for valid UTF-8 with non-ASCII characters, which is
 * UTF-8 whatever the part says: mislabelled parts are common (a UTF-8 log sent as KOI8-R or
 * windows-1251 came out as mojibake), and text in a legacy charset is almost never valid UTF-8.
 * ASCII alone goes by the label: ISO-2022-JP is 7-bit, UTF-16's ASCII is valid UTF-8 with NULs;
 * without one (or labelled UTF-8, ASCII, Latin-1), ISO-2022-JP is read by its escape sequences.
 * UTF-16 is read in the byte order its bytes show (utf16Order), whatever its label says: labelled
 * UTF-16, or not labelled (or labelled UTF-8, ASCII, Latin-1) but plainly UTF-16, which read as
 * UTF-8 is full of NULs and was skipped as binary. `utf16`: the text was read as UTF-16.
 */
function decode(bytes: Buffer, charset: string | null | undefined): { text: string; utf16: boolean } {
  const decoder = declared(charset);
  const labelled16 = decoder?.encoding === 'utf-16le' || decoder?.encoding === 'utf-16be';
  const order = labelled16 || !decoder ? utf16Order(bytes, !decoder) : null;
  if (order) return { text: new TextDecoder(order).decode(bytes, { stream: true }), utf16: true };
  const strict = strictUtf8(bytes);
  if (decoder && (strict === null || !/[^\x00-\x7f]/.test(strict))) return { text: decoder.decode(bytes, { stream: true }), utf16: labelled16 };
  // ISO-2022-JP, 7-bit, reads as ASCII here: its escaped runs are read again (labelled, it was decoded above).
  return { text: decodeIso2022jpRuns(strict ?? utf8(bytes) ?? windows1252(bytes)), utf16: false };
}

// windows-1252's characters for the bytes 0x80-0x9F, where ISO-8859-1 has C1 controls (WHATWG's
// table; the five bytes it leaves undefined stay as they are). Node 20's TextDecoder reads
// "windows-1252" as ISO-8859-1, so that Outlook's quotes and dashes came out as controls.
const CP1252 = '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f'
  + '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';

/** Bytes as windows-1252, which mail labelled ISO-8859-1 or US-ASCII is in practice (WHATWG reads those labels so). */
function windows1252(bytes: Buffer): string {
  const latin1 = bytes.toString('latin1');
  return /[\x80-\x9f]/.test(latin1) ? latin1.replace(/[\x80-\x9f]/g, (c) => CP1252[c.charCodeAt(0) - 0x80]) : latin1;
}

/**
 * UTF-16's byte order when the bytes show it: a byte-order mark, else where the zero bytes are.
 * Each ASCII or Latin-1 character (letters, digits, spaces, line ends) has a zero high byte,
 * which comes first in big-endian (even offsets) and second in little-endian (odd ones); other
 * characters have a zero byte rarely (one in 256 has a zero low byte, U+4E00). So a part labelled
 * UTF-16 goes by the zero bytes in its first 4,096 pairs when one side has two or more and four
 * times the other's, and by the label's order otherwise (WHATWG's and Windows': little-endian for
 * plain "UTF-16"): TextDecoder reads "UTF-16" as little-endian always, and a big-endian part
 * without a mark came out as mojibake ("ERROR" as "䔀刀刀伀刀"). `unlabelled`: the part does not say
 * UTF-16, so it must be plainly that: a mark, or a zero byte on one side in a quarter of those
 * pairs and eight times fewer on the other (the binary test after decoding still applies).
 */
function utf16Order(bytes: Buffer, unlabelled: boolean): 'utf-16le' | 'utf-16be' | null {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  const pairs = Math.min(bytes.length, 8192) >> 1;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < pairs * 2; i += 2) {
    if (bytes[i] === 0) even++;
    if (bytes[i + 1] === 0) odd++;
  }
  const [most, least] = even > odd ? [even, odd] : [odd, even];
  const plain = unlabelled ? most > 0 && most * 4 >= pairs && least * 8 <= most : most >= 2 && least * 4 < most;
  return plain ? (even > odd ? 'utf-16be' : 'utf-16le') : null;
}

/**
 * A decoder for the charset an attachment declares, when the runtime knows it and it is neither
 * UTF-8 nor Latin-1 (WHATWG's windows-1252, which ASCII and ISO-8859-1 are labels of): those keep
 * the UTF-8-else-Latin-1 reading, which also gets UTF-8 sent as "us-ascii" or "iso-8859-1" right.
 * Read as Latin-1, the others (Shift_JIS, GB2312, EUC-KR, KOI8-R) gave words of no language.
 */
function declared(charset: string | null | undefined): TextDecoder | null {
  if (!charset) return null;
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset);
  } catch {
    return null; // a charset the runtime does not know
  }
  return decoder.encoding === 'utf-8' || decoder.encoding === 'windows-1252' ? null : decoder;
}

/**
 * The bytes as UTF-8, null at the first invalid sequence. A character cut at the end, where the
 * bytes were cut, is left out (`stream` keeps it pending) rather than taken for bad UTF-8.
 */
function strictUtf8(bytes: Buffer): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
  } catch {
    return null;
  }
}

/**
 * The bytes as UTF-8, null when they are not UTF-8: when their invalid sequences are as many as
 * their valid non-ASCII characters (Latin-1 text, whose accented letters are each an invalid
 * sequence, and whose bytes almost never form a valid one). A UTF-8 log with a stray byte stays
 * UTF-8, that byte a U+FFFD: refused for it, the whole file was read as Latin-1, and none of its
 * non-ASCII words (Chinese, Russian, accented) could be found. A character cut at the end is
 * left out, as by strictUtf8.
 */
function utf8(bytes: Buffer): string | null {
  const text = new TextDecoder('utf-8').decode(bytes, { stream: true });
  let invalid = 0;
  let valid = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0xfffd) invalid++;
    else if (c > 0x7f) valid++;
  }
  return invalid === 0 || valid > invalid ? text : null;
}
