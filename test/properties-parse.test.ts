import fc from 'fast-check';
import { expect, it } from 'vitest';
import { Parser } from 'htmlparser2';
import { fastParse } from '../src/mail/fast-parse.ts';
import { htmlParseWork, htmlTooCostly } from '../src/mail/html-cost.ts';
import { parse, parseMime, type ParsedMessage } from '../src/mail/parse.ts';

/**
 * The fast parser (src/mail/fast-parse.ts) takes the plain-text messages most list mail is, and
 * must give exactly what the MIME parser (mailparser, parseMime) gives for them; anything else it
 * leaves to parseMime by returning null. Generated simple messages, with the variations real mail
 * has: header case and spacing, folding, duplicates, odd Message-IDs and References, dates in
 * several forms, UTF-8 and stray 8-bit bytes, NUL, CRLF or LF or both, no body.
 */
const SEED = Number(process.env.PROPERTY_SEED ?? 1202);
const NOW = new Date('2026-11-22T00:00:00Z');

const pick = <T>(...items: T[]) => fc.constantFrom(...items);
// Mostly what the fast path takes, sometimes what it must leave to the MIME parser.
const often = <T>(common: fc.Arbitrary<T>, rare: fc.Arbitrary<T>) => fc.oneof({ arbitrary: common, weight: 6 }, { arbitrary: rare, weight: 1 });
const ascii = (max: number) => fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: max });
const local = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9._+-]{0,10}$/);
const domain = fc.stringMatching(/^[a-zA-Z0-9-]{1,8}\.(org|com|example)$/);
const address = fc.tuple(local, domain).map(([l, d]) => `${l}@${d}`);
const displayName = fc.oneof(pick(''), fc.stringMatching(/^[A-Za-z][A-Za-z .'-]{0,15}$/), ascii(20).map((n) => `"${n.replace(/["\\]/g, '')}"`));
const fromValue = fc.oneof(
  address,
  address,
  address.map((a) => `<${a}>`),
  fc.tuple(displayName, address, pick(' ', '', '  ')).map(([n, a, sp]) => `${n}${sp}<${a}>`),
  fc.tuple(address, ascii(10)).map(([a, c]) => `${a} (${c.replace(/[()\\]/g, '')})`),
);
const dateValue = fc.tuple(fc.date({ min: new Date('1995-01-01'), max: new Date('2026-11-20'), noInvalidDate: true }), often(pick('utc', 'offset', 'short', 'iso'), pick('junk'))).map(([d, form]) => {
  if (form === 'utc') return d.toUTCString();
  if (form === 'offset') return d.toUTCString().replace('GMT', '+0200');
  if (form === 'short') return `${d.getUTCDate()} ${d.toUTCString().slice(8, 11)} ${d.getUTCFullYear()} 10:00 GMT`;
  if (form === 'iso') return d.toISOString();
  return 'not a date';
});
const idValue = fc.oneof(
  fc.tuple(local, domain).map(([l, d]) => `<${l}@${d}>`),
  fc.tuple(local, domain).map(([l, d]) => `${l}@${d}`),
  fc.tuple(local, domain, local).map(([l, d, x]) => `<${l}@${d}> <${x}@${d}>`),
  ascii(30),
  pick('<>', '', '<a@b> (comment)', '  <spaced@x.org>  '),
);
const contentType = often(pick(null, 'text/plain', 'text/plain; charset=utf-8', 'text/plain; charset="UTF-8"', 'TEXT/PLAIN; CHARSET=US-ASCII', 'text/plain;charset=us-ascii;'),
  pick('text/plain; charset=iso-8859-1', 'text/plain; format=flowed', 'text/html'));
const encoding = often(pick(null, '7bit', '8bit', '8BIT'), pick('quoted-printable', 'base64'));
const bodyLine = fc.oneof(
  ascii(70),
  pick('', '.', '..', 'From here', '> quoted', 'caf\u00e9 na\u00efve', '\u65e5\u672c\u8a9e', 'tab\there', 'trailing   ', 'nul\u0000byte', 'lone \u00ff\u00fe latin1 bytes', '\r'),
);

/** A message as bytes. Strings are UTF-8, except the "latin1 bytes" line, which goes raw. */
const message = fc.record({
  fromName: pick('From', 'from', 'FROM'),
  from: fromValue,
  subject: often(fc.oneof(ascii(60), pick('', '  padded  ', 'Re: [list] topic')), pick('=?utf-8?q?caf=C3=A9?=', 'caf\u00e9')),
  foldSubject: fc.boolean(),
  date: often(dateValue, fc.constant(null)),
  messageId: fc.option(idValue, { nil: null }),
  inReplyTo: fc.option(idValue, { nil: null }),
  references: fc.option(fc.array(idValue, { maxLength: 4 }), { nil: null }),
  contentType,
  encoding,
  extra: fc.array(fc.tuple(often(pick('X-Mailer', 'Received', 'To', 'Cc', 'X-Dup'), pick('Subject', 'Date', 'Content-Disposition')), ascii(40)), { maxLength: 3 }),
  body: fc.option(fc.array(bodyLine, { maxLength: 12 }), { nil: null }),
  eol: pick('\r\n', '\n'),
}).map((m) => {
  const h: string[] = [`${m.fromName}: ${m.from}`, m.foldSubject && m.subject.includes(' ') ? `Subject: ${m.subject.replace(' ', `${m.eol} `)}` : `Subject: ${m.subject}`];
  if (m.date !== null) h.push(`Date: ${m.date}`);
  if (m.messageId !== null) h.push(`Message-ID: ${m.messageId}`);
  if (m.inReplyTo !== null) h.push(`In-Reply-To: ${m.inReplyTo}`);
  if (m.references !== null) h.push(`References: ${m.references.join(`${m.eol} `)}`);
  if (m.contentType !== null) h.push(`Content-Type: ${m.contentType}`);
  if (m.encoding !== null) h.push(`Content-Transfer-Encoding: ${m.encoding}`);
  for (const [k, v] of m.extra) h.push(`${k}: ${v}`);
  const head = Buffer.from(h.join(m.eol), 'utf8');
  if (m.body === null) return head;
  const body = m.body.map((l) => (l.includes('latin1 bytes') ? Buffer.from(l, 'latin1') : Buffer.from(l, 'utf8')));
  return Buffer.concat([head, Buffer.from(m.eol + m.eol), ...body.flatMap((b) => [b, Buffer.from(m.eol)])]);
});

const comparable = (m: ParsedMessage) => ({ ...m, date: m.date.getTime(), headers: [...m.headers], attachments: m.attachments.length });

it('the fast parser gives exactly what the MIME parser gives for every message it takes', async () => {
  let taken = 0;
  await fc.assert(fc.asyncProperty(message, async (raw) => {
    const quick = fastParse(raw, NOW);
    if (!quick) return;
    taken++;
    expect(comparable(quick)).toEqual(comparable(await parseMime(raw, NOW)));
  }), { seed: SEED, numRuns: 1500 });
  // The generator is meant for the fast path: most of its messages must take it.
  expect(taken).toBeGreaterThan(300);
});

it('parsing never throws anything but a refusal, whatever the bytes', async () => {
  const bytes = fc.oneof(message, fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)), message.chain((m) => fc.integer({ min: 0, max: m.length }).map((n) => m.subarray(0, n))));
  await fc.assert(fc.asyncProperty(bytes, async (raw) => {
    try {
      const m = await parse(raw, NOW);
      expect(typeof m.messageId).toBe('string');
      expect(Number.isNaN(m.date.getTime())).toBe(false);
    } catch (err) {
      expect((err as { code?: string }).code).toBe('unparseable');
    }
  }), { seed: SEED, numRuns: 500 });
});

it('reads five posts whose From names hold runs of 60,000 spaces within the time limit, as the MIME parser reads them', async () => {
  // The name's regular expression backtracked over every split of the spaces: 10 s a post (the
  // fast parser takes headers up to 64 KB), so about 50 s here, past the test's time limit.
  const raws = [1, 2, 3, 4].map((i) => Buffer.from(`From: a${' '.repeat(60_000 - i)}b <x@example.org>\r\nSubject: spaces\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <long-name@example.org>\r\n\r\nhi\r\n`));
  for (const r of raws) expect(fastParse(r, NOW)?.fromEmail).toBe('x@example.org');
  const raw = Buffer.from(`From: a${' '.repeat(60_000)}b <x@example.org>\r\nSubject: spaces\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <long-name@example.org>\r\n\r\nhi\r\n`);
  const quick = fastParse(raw, NOW);
  expect(quick?.fromEmail).toBe('x@example.org');
  expect(comparable(quick!)).toEqual(comparable(await parseMime(raw, NOW)));
});

it('dates a message without a Date header by its Received field, comment and all, at once however long the field', async () => {
  const post = (received: string) => Buffer.from(`Received: from a.example by b.example; ${received}\r\nFrom: a@example.org\r\nSubject: no date\r\nMessage-ID: <no-date@example.org>\r\n\r\nhi\r\n`);
  expect((await parse(post('Fri, 20 Nov 2026 10:00:00 +0000 (UTC)'), NOW)).date.toISOString()).toBe('2026-11-20T10:00:00.000Z');
  // Taking off the trailing comment by a regular expression was quadratic: 15 s for 150,000, so
  // about a minute here, past the test's time limit.
  const m = await parse(post('('.repeat(300_000)), NOW);
  expect(m.date).toEqual(NOW);
});

/** htmlparser2's own work on `html`: the open elements it holds at each start and end tag. */
function parserWork(html: string): number {
  let work = 0;
  class Counting extends Parser {
    override onopentagname(start: number, end: number) {
      work += (this as unknown as { stack: string[] }).stack.length;
      super.onopentagname(start, end);
    }
    override onclosetag(start: number, end: number) {
      work += (this as unknown as { stack: string[] }).stack.length;
      super.onclosetag(start, end);
    }
  }
  const parser = new Counting({});
  parser.write(html);
  parser.end();
  return work;
}

it('counts at least the work htmlparser2 does for any HTML, so a part it lets through is cheap to parse', () => {
  // Tag soup with what moves the parser's stack: nesting, implied and stray end tags, void and
  // self-closing elements, and the places where "<" is not a tag (comments, attributes, raw text).
  const piece = fc.constantFrom(
    '<div>', '</div>', '<DIV class="a">', '<p>', '</p>', '<li>', '</li>', '<ul>', '</ul>', '<table>', '<tr>', '<td>', '</td>', '</tr>', '</table>',
    '<br>', '</br>', '<img src=x>', '<div/>', '<b>', '</b>', '</x>', '<option>', '<select>', '<svg>', '<path/>', '</svg>', 'text', ' & ', '<',
    '<!-- </div></div> -->', '<a title="</div></div>">', '</a>', '<script>', '</div></script>', '<style></div></style>', '<title></b></title>',
    '<textarea></div>', '</textarea>', '<xmp></div></xmp>', '<!doctype html>', '<?x </div> ?>', '<![CDATA[</div>]]>',
  );
  fc.assert(fc.property(fc.array(piece, { maxLength: 300 }), (pieces) => {
    const html = pieces.join('');
    expect(htmlParseWork(html)).toBeGreaterThanOrEqual(parserWork(html));
  }), { seed: SEED, numRuns: 3000 });
  // Deep nesting is what it is there to find; a long page of ordinary markup is far from it.
  expect(htmlTooCostly(`${'<div>'.repeat(20_000)}x`)).toBe(true);
  expect(htmlTooCostly(`<table>${'<tr><td><p><b>cell</b> <a href="https://e.example/">link</a></td></tr>'.repeat(50_000)}</table>`)).toBe(false);
});
