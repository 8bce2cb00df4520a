/*
 * A list footer added as its own MIME part, so the author's parts stay byte for byte as written:
 * a multipart/mixed message gets one more part before its closing boundary; anything else is
 * wrapped in a new multipart/mixed whose first part is the original content.
 */

import crypto from 'node:crypto';
import { headerFields, headerValue, withoutFields } from './header-block.ts';

export function footerPart(text: string, eol: string): string {
  const body = text.replace(/\r?\n/g, eol);
  const ascii = /^[\x00-\x7f]*$/.test(body);
  const encoded = ascii ? body : (Buffer.from(body, 'utf8').toString('base64').match(/.{1,76}/g) ?? []).join(eol);
  return [
    `Content-Type: text/plain; charset=${ascii ? 'us-ascii' : 'utf-8'}`,
    `Content-Transfer-Encoding: ${ascii ? '7bit' : 'base64'}`,
    'Content-Disposition: inline',
    '',
    encoded,
  ].join(eol);
}

const CONTENT_FIELDS = new Set(['content-type', 'content-transfer-encoding', 'content-disposition', 'content-description', 'content-id']);

/** Returns the new header section and body (the body starting with its blank line). */
export function addFooter(head: Buffer, rest: Buffer, footer: string, eol: string): { head: Buffer; rest: Buffer } {
  const fields = headerFields(head);
  const contentType = headerValue(fields, 'content-type') ?? '';
  const part = footerPart(footer, eol);
  const mixed = /^\s*multipart\/mixed\b/i.exec(contentType);
  const boundary = /boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))/i.exec(contentType);
  if (mixed && boundary) {
    const b = boundary[1] ?? boundary[2];
    const closing = Buffer.from(`--${b}--`);
    const at = rest.lastIndexOf(closing);
    if (at >= 0) {
      const before = rest.subarray(0, at);
      const sep = before.length >= eol.length && before.subarray(before.length - eol.length).toString() === eol ? '' : eol;
      return { head, rest: Buffer.concat([before, Buffer.from(`${sep}--${b}${eol}${part}${eol}`), rest.subarray(at)]) };
    }
  }
  // Wrap: the original content headers move into the first part.
  const b = `=_listkeeper_${crypto.randomBytes(12).toString('hex')}`;
  const inner = fields.filter((f) => CONTENT_FIELDS.has(f.name)).map((f) => f.bytes);
  const outerHead = withoutFields(head, CONTENT_FIELDS);
  const hasMimeVersion = fields.some((f) => f.name === 'mime-version');
  const newHead = Buffer.concat([
    outerHead,
    Buffer.from(`${hasMimeVersion ? '' : `MIME-Version: 1.0${eol}`}Content-Type: multipart/mixed; boundary="${b}"${eol}`),
  ]);
  // `rest` starts with the blank line that ends the header section.
  const body = rest.subarray(rest.indexOf(0x0a) + 1);
  const newRest = Buffer.concat([
    Buffer.from(`${eol}This is a multi-part message in MIME format.${eol}--${b}${eol}`),
    ...inner,
    Buffer.from(eol),
    body,
    Buffer.from(`${body.length && body[body.length - 1] !== 0x0a ? eol : ''}--${b}${eol}${part}${eol}--${b}--${eol}`),
  ]);
  return { head: newHead, rest: newRest };
}
