/*
 * A list footer added as its own MIME part, so the author's parts stay byte for byte as written:
 * a multipart/mixed message gets one more part before its closing boundary; anything else is
 * wrapped in a new multipart/mixed whose first part is the original content. An HTML-only post
 * (one text/html part) is the exception: a text part after it is shown by most clients as an
 * attachment, so the footer goes inside the HTML, before </body>.
 */

import crypto from 'node:crypto';
import { textBody } from './compose.ts';
import { headerFields, headerValue, withoutFields } from './header-block.ts';
import { base64LinesBuffer, decodeBase64 } from './base64-lines.ts';

/**
 * The footer as a text part. In a multipart/mixed post it goes inside the poster's multipart, whose
 * boundary is the poster's choice: a footer line starting "--" ("-----" under boundary "-") would be
 * read as a delimiter and the rest of the footer lost in the epilogue. Such a footer goes as
 * base64, whose lines never start with "-".
 */
export function footerPart(text: string, eol: string): string {
  const { charset, encoding, body } = textBody(text, { eol, base64: /^--/m.test(text) });
  return [
    `Content-Type: text/plain; charset=${charset}`,
    `Content-Transfer-Encoding: ${encoding}`,
    'Content-Disposition: inline',
    '',
    body,
  ].join(eol);
}

const CONTENT_FIELDS = new Set(['content-type', 'content-transfer-encoding', 'content-disposition', 'content-description', 'content-id']);

/** Returns the new header section and body (the body starting with its blank line). */
export function addFooter(head: Buffer, rest: Buffer, footer: string, eol: string): { head: Buffer; rest: Buffer } {
  const fields = headerFields(head);
  const contentType = headerValue(fields, 'content-type') ?? '';
  const part = footerPart(footer, eol);
  if (/^\s*text\/html\b/i.test(contentType) && !/charset\s*=\s*"?(utf-?16|utf-?32|ucs)/i.test(contentType)) {
    const inside = footerInHtml(rest, footer, (headerValue(fields, 'content-transfer-encoding') ?? '7bit').trim().toLowerCase(), eol);
    if (inside) return { head, rest: inside };
  }
  const mixed = /^\s*multipart\/mixed\b/i.exec(contentType);
  const boundary = /boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))/i.exec(contentType);
  if (mixed && boundary) {
    const b = boundary[1] ?? boundary[2];
    // The close delimiter starts a line, and the first is the one (RFC 2046 §5.1.1): what follows
    // it is the epilogue, where a poster's own "--BOUNDARY--" would otherwise hide the footer.
    const at = closeDelimiter(rest, b);
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

/** Where the first close delimiter line `--B--` starts (then only white space to the line end); -1 for none. */
function closeDelimiter(body: Buffer, boundary: string): number {
  const line = Buffer.from(`\n--${boundary}--`);
  for (let i = body.indexOf(line); i >= 0; i = body.indexOf(line, i + 1)) {
    const next = body[i + line.length];
    if (next === undefined || next === 0x0d || next === 0x0a || next === 0x20 || next === 0x09) return i + 1;
  }
  return -1;
}

/**
 * The footer as HTML: every character that is markup, `=` (so quoted-printable needs no escape) or
 * not ASCII is a character reference, so the lines are plain ASCII whatever the part's charset;
 * each line break is a <br>.
 */
export function footerHtmlLines(text: string): string[] {
  const escape = (line: string) => line.replace(/[&<>"'=]|[^\x20-\x7e]/gu, (c) => `&#${c.codePointAt(0)};`);
  const lines = text.replace(/\r\n?/g, '\n').replace(/\n+$/, '').split('\n').map(escape);
  return ['<hr>', '<div class="list-footer">', ...lines.map((l, i) => (i < lines.length - 1 ? `${l}<br>` : l)), '</div>'];
}

// A line of the footer cut to fit: `max` characters, at a space when there is one, and never
// inside a character reference (`&#12428;` cut in two is two pieces of text: CJK has no spaces).
function cut(line: string, max: number): string[] {
  const out: string[] = [];
  let rest = line;
  while (rest.length > max) {
    const space = rest.lastIndexOf(' ', max);
    let at = space > 0 ? space : max;
    const amp = rest.lastIndexOf('&', at - 1);
    if (amp > 0 && rest.indexOf(';', amp) >= at) at = amp;
    out.push(rest.slice(0, at));
    rest = rest.slice(at);
  }
  return [...out, rest];
}

/**
 * The body (`rest`, from its blank line) of a text/html part with the footer before its last
 * </body> (else </html>, else at the end), in the part's own transfer encoding; null for an
 * encoding we do not know, which then gets the footer as a part of its own.
 */
function footerInHtml(rest: Buffer, footer: string, cte: string, eol: string): Buffer | null {
  const start = rest.indexOf(0x0a) + 1;
  const blank = rest.subarray(0, start);
  const body = rest.subarray(start);
  const lines = footerHtmlLines(footer);
  if (cte === 'base64') {
    const html = decodeBase64(body);
    if (!html) return null;
    const withFooter = insertBeforeEnd(html, Buffer.from(`${eol}${lines.join(eol)}${eol}`));
    return Buffer.concat([blank, base64LinesBuffer(withFooter, eol), Buffer.from(eol)]);
  }
  let snippet: string[];
  if (cte === 'quoted-printable') {
    // No `=` and no 8-bit in the lines: quoted-printable only needs its soft line breaks, and a
    // space at the end of a line written as =20.
    snippet = lines.flatMap((l) => {
      const parts = cut(l, 70);
      return parts.map((p, i) => (i < parts.length - 1 ? `${p}=` : p.replace(/ $/, '=20')));
    });
  } else if (cte === '7bit' || cte === '8bit' || cte === 'binary' || cte === '') {
    snippet = lines.flatMap((l) => cut(l, 900));
  } else {
    return null;
  }
  return Buffer.concat([blank, insertBeforeEnd(body, Buffer.from(`${eol}${snippet.join(eol)}${eol}`))]);
}

function insertBeforeEnd(html: Buffer, snippet: Buffer): Buffer {
  let at = lastTag(html, 'body');
  if (at < 0) at = lastTag(html, 'html');
  if (at < 0) {
    const sep = html.length > 0 && html[html.length - 1] !== 0x0a ? snippet : snippet.subarray(snippet.indexOf(0x0a) + 1);
    return Buffer.concat([html, sep]);
  }
  return Buffer.concat([html.subarray(0, at), snippet, html.subarray(at)]);
}

/**
 * Where the last `</NAME` starts, whatever the case of its ASCII letters; -1 for none. Searched
 * from the end, where it stands: lowering a 25 MB post to look for it took a tenth of a second.
 */
function lastTag(html: Buffer, name: string): number {
  for (let at = html.lastIndexOf('</'); at >= 0; at = at > 0 ? html.lastIndexOf('</', at - 1) : -1) {
    let k = 0;
    while (k < name.length && (html[at + 2 + k] | 0x20) === name.charCodeAt(k)) k++;
    if (k === name.length) return at;
  }
  return -1;
}
