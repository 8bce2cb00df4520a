/*
 * The list footer on posts of every shape (src/mail/footer.ts), and the text parts listkeeper
 * writes itself (compose.ts textBody): content kept whole, lines within RFC 5322's 998 octets,
 * no lone CR for a relay to rewrite under the list's signature.
 */
import { describe, expect, it } from 'vitest';
import { composeText, textBody } from '../src/mail/compose.ts';
import { addFooter } from '../src/mail/footer.ts';
import { splitMessage } from '../src/mail/header-block.ts';
import { parse } from '../src/mail/parse.ts';

function withFooter(raw: string, footer: string): Buffer {
  const { head, rest, eol } = splitMessage(Buffer.from(raw));
  const out = addFooter(head, rest, footer, eol);
  return Buffer.concat([out.head, out.rest]);
}
const longestLine = (raw: Buffer) => Math.max(...raw.toString('latin1').split('\r\n').map((l) => l.length));
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('the footer', () => {
  it('keeps the whole of an HTML post whose base64 lines were encoded one by one (padding mid-body)', async () => {
    const raw = ['From: a@example.org', 'Subject: moved', 'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
      b64('<html><body><p>Meeting moved'), b64(' to Tuesday at noon.</p></body></html>'), ''].join('\r\n');
    const parsed = await parse(withFooter(raw, 'The dev list'));
    expect(parsed.html).toContain('<p>Meeting moved to Tuesday at noon.</p>');
    expect(parsed.html).toMatch(/The dev list[\s\S]*<\/body>/);
  });


  it('finds the last </BODY> whatever its case, in base64 of any line length, and refuses base64 that is not', async () => {
    const html = '<HTML><Body><p>One</p><p>Two &lt;/body&gt; in text</p></BODY>\r\n</HTML>';
    const wrapped = (b64(html).match(/.{1,60}/g) ?? []).join('\r\n');
    const raw = ['From: a@example.org', 'Subject: x', 'Content-Type: text/html', 'Content-Transfer-Encoding: base64', '', wrapped, ''].join('\r\n');
    const parsed = await parse(withFooter(raw, 'The dev list'));
    expect(parsed.html).toMatch(/<p>Two &lt;\/body&gt; in text<\/p>\s*<hr>\s*<div class="list-footer">\s*The dev list\s*<\/div>\s*<\/BODY>\r?\n<\/HTML>$/);
    // Three `=` in a run is no base64: the post is left whole and the footer comes as a part of its own.
    const broken = ['From: a@example.org', 'Subject: x', 'Content-Type: text/html', 'Content-Transfer-Encoding: base64', '', 'PGI+aGk8L2I+===', ''].join('\r\n');
    const out = withFooter(broken, 'The dev list').toString('latin1');
    expect(out).toContain('PGI+aGk8L2I+===');
    expect(out).toMatch(/Content-Type: multipart\/mixed/);
  });
  it('cuts a long CJK footer line in a 7bit HTML part between character references, never inside one', async () => {
    const footer = 'これはメーリングリストのフッターです'.repeat(12);
    const raw = ['From: a@example.org', 'Subject: x', 'Content-Type: text/html; charset=us-ascii', '', '<html><body><p>Hi</p></body></html>', ''].join('\r\n');
    const out = withFooter(raw, footer);
    expect(longestLine(out)).toBeLessThanOrEqual(998);
    const parsed = await parse(out);
    // No line ends inside a reference (a browser shows "&#12" and "428;" as text), and the
    // references, read line by line, are the footer as written.
    const lines = String(parsed.html).split(/\r?\n/);
    expect(lines.filter((l) => /&#?\d*$/.test(l))).toEqual([]);
    const shown = lines.map((l) => l.replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)))).join('');
    expect(shown).toContain(footer);
  });

  it('sends a footer line longer than 998 octets as base64, not as an over-long 7bit line', async () => {
    const footer = `Disclaimer: ${'words and more words '.repeat(60)}`;
    const raw = ['From: a@example.org', 'Subject: x', 'Content-Type: text/plain', '', 'Hello.', ''].join('\r\n');
    const out = withFooter(raw, footer);
    expect(longestLine(out)).toBeLessThanOrEqual(998);
    const parsed = await parse(out);
    expect(parsed.attachments.map((a) => a.content.toString()).join('') + parsed.text).toContain(footer.trim());
  });

  it('adds the footer before the first close delimiter, whatever the epilogue holds', async () => {
    const raw = ['From: a@example.org', 'Subject: x', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="XX"', '',
      '--XX', 'Content-Type: text/plain', '', 'hi', '--XX--not the end', '--XX--', 'an epilogue with --XX-- in it', '--XX--', ''].join('\r\n');
    const out = withFooter(raw, 'The footer.');
    const text = out.toString();
    expect(text.indexOf('The footer.')).toBeLessThan(text.indexOf('--XX--\r\n'));
    expect(text.indexOf('The footer.')).toBeGreaterThan(text.indexOf('--XX--not the end'));
    const parsed = await parse(out);
    expect(`${parsed.text}${parsed.attachments.map((a) => a.content.toString()).join('')}`).toContain('The footer.');
  });

  it('keeps the whole footer in a post whose boundary makes a footer line a delimiter', async () => {
    // Boundary "-": the footer's "-----" is its close delimiter, and what follows would be epilogue.
    const footer = 'dev mailing list\n-----\nTo unsubscribe, write to dev-request@lists.example.org';
    const raw = ['From: a@example.org', 'Subject: x', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="-"', '',
      '---', 'Content-Type: text/plain', '', 'hi', '-----', ''].join('\r\n');
    const parsed = await parse(withFooter(raw, footer));
    expect(`${parsed.text}\n${parsed.attachments.map((a) => a.content.toString()).join('\n')}`.replace(/\r\n/g, '\n')).toContain(footer);
    // A footer without such a line stays readable as it is.
    expect(withFooter(raw, 'dev mailing list').toString()).toContain('\r\ndev mailing list\r\n');
  });
});

describe('text parts of our own', () => {
  it('ends lines at a lone CR too, so nothing is left for a relay to rewrite', () => {
    const raw = composeText({ from: 'a@example.org', to: 'b@example.org', subject: 'x', text: 'held: hi\r.\r\nnext\rline\n', domain: 'example.org' });
    const body = raw.toString().split('\r\n\r\n').slice(1).join('\r\n\r\n');
    expect(body).toBe('held: hi\r\n.\r\nnext\r\nline\r\n');
    expect(raw.toString()).not.toMatch(/\r(?!\n)/);
  });

  it('is 7bit for ASCII, 8bit for UTF-8 where allowed, and base64 past 998 octets', () => {
    expect(textBody('plain').encoding).toBe('7bit');
    expect(textBody('Grüße').encoding).toBe('base64');
    expect(textBody('Grüße', { eightBit: true })).toMatchObject({ encoding: '8bit', charset: 'utf-8' });
    const long = textBody(`${'ü'.repeat(500)}\nshort`, { eightBit: true });
    expect(long.encoding).toBe('base64');
    expect(Buffer.from(long.body, 'base64').toString()).toBe(`${'ü'.repeat(500)}\r\nshort`);
  });
});
