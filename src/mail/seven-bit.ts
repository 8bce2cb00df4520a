/*
 * A copy made 7-bit for a server that does not offer 8BITMIME (RFC 6152 §3: the client converts,
 * or does not send). Each part whose body has 8-bit bytes is re-encoded: text as quoted-printable
 * (line breaks stay line breaks, so it reads the same), anything else as base64; a message/rfc822
 * part is converted inside and marked 7bit, a multipart loses its label (7bit). Everything else keeps its bytes. Header fields with
 * 8-bit bytes (RFC 6532) cannot be made 7-bit this way, nor parts nested deeper than MAX_DEPTH:
 * null then.
 *
 * The author's DKIM signature does not survive this (its body hash changes); the list's signature
 * is made after it (delivery/copies.ts), so it does.
 */

import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import { headerFields, headerValue, splitMessage, withoutFields, type HeaderField } from './header-block.ts';
import { base64Lines } from './base64-lines.ts';

const CTE = new Set(['content-transfer-encoding']);

/**
 * MIME entities nested one inside the other that are converted. The walk recurses once per level
 * and copies what is inside at each: a post of 5,000 message/rfc822 parts one inside the other
 * (the ingest takes it) overflowed the stack, and the RangeError was taken for a broken session,
 * so the copy was deferred and tried again for days. Real mail nests a few levels.
 */
export const MAX_DEPTH = 100;

export function hasEightBit(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) return true;
  return false;
}

/** The message with every 8-bit body re-encoded, or null when a header field has 8-bit bytes. */
export function toSevenBit(raw: Buffer): Buffer | null {
  if (!hasEightBit(raw)) return raw;
  return entity(raw, 'text/plain', 0);
}

/** One MIME entity (a message or a part): its header section, then its body converted. */
function entity(bytes: Buffer, defaultType: string, depth: number): Buffer | null {
  if (depth > MAX_DEPTH) return null;
  const { head, rest, eol } = splitMessage(bytes);
  if (hasEightBit(head)) return null;
  if (!hasEightBit(rest)) return bytes;
  const fields = headerFields(head);
  const contentType = (headerValue(fields, 'content-type') ?? defaultType).toLowerCase();
  const type = contentType.split(';')[0].trim();
  // `rest` is the blank line, then the body.
  const body = rest.subarray(eol.length);

  if (type.startsWith('multipart/')) {
    const boundary = /boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))/i.exec(headerValue(fields, 'content-type') ?? '');
    if (!boundary) return leaf(head, fields, body, eol, 'application/octet-stream');
    const parts = multipart(body, boundary[1] ?? boundary[2], eol, type === 'multipart/digest' ? 'message/rfc822' : 'text/plain', depth);
    // Its parts are 7-bit now: an 8bit label (a digest's, some authors') would say otherwise.
    return parts ? Buffer.concat([withoutFields(head, CTE), Buffer.from(eol), parts]) : null;
  }
  if (type === 'message/rfc822') {
    const inner = entity(body, 'text/plain', depth + 1);
    if (!inner) return null;
    return Buffer.concat([withoutFields(head, CTE), Buffer.from(`Content-Transfer-Encoding: 7bit${eol}${eol}`), inner]);
  }
  return leaf(head, fields, body, eol, type);
}

/** A single part's body re-encoded: quoted-printable for text, base64 for anything else. */
function leaf(head: Buffer, fields: HeaderField[], body: Buffer, eol: string, type: string): Buffer {
  const cte = (headerValue(fields, 'content-transfer-encoding') ?? '7bit').toLowerCase();
  // Already encoded (base64, quoted-printable) yet with 8-bit bytes: damaged; base64 carries it intact.
  const text = type.startsWith('text/') && (cte === '7bit' || cte === '8bit');
  const encoded = text
    ? qpWrap(qpEncode(body), 76).replace(/\r?\n/g, eol)
    : base64Lines(body, eol) + eol;
  return Buffer.concat([withoutFields(head, CTE), Buffer.from(`Content-Transfer-Encoding: ${text ? 'quoted-printable' : 'base64'}${eol}${eol}`), Buffer.from(encoded, 'latin1')]);
}

/**
 * A multipart body with each part converted; the delimiter lines, preamble and epilogue kept.
 * Null when a part cannot be converted or 8-bit bytes sit outside the parts.
 */
function multipart(body: Buffer, boundary: string, eol: string, defaultType: string, depth: number): Buffer | null {
  const delimiter = Buffer.from(`--${boundary}`, 'latin1');
  // Delimiters start a line: at the body's start, or after a line ending.
  const starts: number[] = [];
  for (let at = body.indexOf(delimiter); at >= 0; at = body.indexOf(delimiter, at + 1)) {
    if (at === 0 || body[at - 1] === 0x0a) starts.push(at);
  }
  if (starts.length === 0) return null;
  const out: Buffer[] = [body.subarray(0, starts[0])];
  for (let i = 0; i < starts.length; i++) {
    const lineEnd = body.indexOf(0x0a, starts[i]);
    const afterLine = lineEnd < 0 ? body.length : lineEnd + 1;
    out.push(body.subarray(starts[i], afterLine));
    const closing = body.subarray(starts[i] + delimiter.length, starts[i] + delimiter.length + 2).toString('latin1') === '--';
    const end = i + 1 < starts.length ? starts[i + 1] : body.length;
    if (closing) {
      out.push(body.subarray(afterLine, end));
      continue;
    }
    // The line ending before the next delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    let partEnd = end;
    if (i + 1 < starts.length) partEnd -= body[end - 2] === 0x0d ? 2 : 1;
    const converted = entity(body.subarray(afterLine, Math.max(afterLine, partEnd)), defaultType, depth + 1);
    if (!converted) return null;
    out.push(converted, body.subarray(Math.max(afterLine, partEnd), end));
  }
  const joined = Buffer.concat(out);
  return hasEightBit(joined) ? null : joined;
}
