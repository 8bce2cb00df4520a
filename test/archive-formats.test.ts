import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Corpus } from '../bench/corpus.ts';
import { fastParse } from '../src/mail/fast-parse.ts';
import { parseMime, type ParsedMessage } from '../src/mail/parse.ts';
import { atomFeed } from '../src/mail/atom.ts';
import { attachmentHeaders } from '../src/mail/attachment-type.ts';
import { attachmentUrl } from '../src/mail/urls.ts';
import { decodeHeaderWords } from '../src/mail/header-words.ts';
import { fromLine, mboxrdEntry, quote, readMbox, unquote } from '../src/mail/mbox.ts';
import { obfuscateText } from '../src/mail/obfuscate.ts';
import { renderText } from '../src/mail/render-body.ts';

async function read(chunks: (string | Buffer)[], opts = {}) {
  const out = [];
  for await (const m of readMbox(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c)), opts)) out.push(m);
  return out;
}

describe('mbox files', () => {
  it('splits on From_ lines after an empty line, whatever the chunk boundaries', async () => {
    const file = 'From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody one\n\nFrom b@x Mon Jan  1 00:01:00 2024\nSubject: two\n\nbody two\n\n';
    for (let cut = 1; cut < file.length; cut += 7) {
      const got = await read([file.slice(0, cut), file.slice(cut)]);
      expect(got.map((m) => m.raw.toString()), `cut at ${cut}`).toEqual(['Subject: one\n\nbody one\n', 'Subject: two\n\nbody two\n']);
    }
    const [first, second] = await read([file]);
    expect([first.offset, first.end, second.offset, second.end]).toEqual([0, file.indexOf('From b@x'), file.indexOf('From b@x'), file.length]);
  });

  it('reads messages of several MiB in small chunks exactly as in one piece', async () => {
    const body = (n: number, eol: string) => Array.from({ length: n }, (_, i) => (i % 1000 === 0 ? `From here on ${i}` : `line ${i} ${'x'.repeat(40)}`)).join(eol);
    for (const eol of ['\n', '\r\n']) {
      const file = Buffer.from([
        `From a@x Mon Jan  1 00:00:00 2024${eol}Subject: big${eol}${eol}${body(60_000, eol)}${eol}${eol}`,
        `From b@x Mon Jan  1 00:01:00 2024${eol}Subject: small${eol}${eol}hi${eol}${eol}`,
        `From c@x Mon Jan  1 00:02:00 2024${eol}Subject: last big${eol}${eol}${body(50_000, eol)}${eol}`,
      ].join(''), 'latin1');
      const whole = await read([file]);
      expect(whole.map((m) => m.fromLine)).toEqual(['From a@x Mon Jan  1 00:00:00 2024', 'From b@x Mon Jan  1 00:01:00 2024', 'From c@x Mon Jan  1 00:02:00 2024']);
      expect(whole[0].raw.length).toBeGreaterThan(2 << 20);
      for (const size of [65_536, 1_000_003]) {
        const chunks = Array.from({ length: Math.ceil(file.length / size) }, (_, k) => file.subarray(k * size, (k + 1) * size));
        const got = await read(chunks);
        expect(got.map((m) => [m.offset, m.end, m.fromLine, m.skipped]), `chunks of ${size}`).toEqual(whole.map((m) => [m.offset, m.end, m.fromLine, undefined]));
        expect(got.every((m, k) => m.raw.equals(whole[k].raw)), `chunks of ${size}`).toBe(true);
      }
    }
  });

  it('passes over a message larger than the limit, reporting why, and reads on', async () => {
    const big = `From b@x Mon Jan  1 00:01:00 2024\nSubject: big\n\n${'y'.repeat(100)}\n`.padEnd(5 << 20, 'z\n');
    const file = `From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nhi\n\n${big}\n\nFrom c@x Mon Jan  1 00:02:00 2024\nSubject: three\n\nbye\n`;
    const chunks = Array.from({ length: Math.ceil(file.length / 65_536) }, (_, k) => file.slice(k * 65_536, (k + 1) * 65_536));
    const got = await read(chunks, { maxMessageBytes: 2 << 20 });
    expect(got.map((m) => [m.fromLine, m.raw.toString(), m.skipped])).toEqual([
      ['From a@x Mon Jan  1 00:00:00 2024', 'Subject: one\n\nhi\n', undefined],
      ['From b@x Mon Jan  1 00:01:00 2024', '', 'larger than 2 MB (5 MB), the most a message may be'],
      ['From c@x Mon Jan  1 00:02:00 2024', 'Subject: three\n\nbye\n', undefined],
    ]);
    expect(got[2].offset).toBe(file.indexOf('From c@x'));
  });

  it('reads past a "From " line that never ends without holding it in memory', async () => {
    // A body line "From …" of 160 MiB with no line end (base64 written without breaks): the reader
    // needs only its start to tell it is no From_ line, and the message is passed over past the limit.
    const chunk = Buffer.alloc(1 << 20, 0x41);
    let most = 0;
    async function* file() {
      yield Buffer.from('From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nhi\n\nFrom ', 'latin1');
      for (let k = 0; k < 160; k++) {
        most = Math.max(most, process.memoryUsage().arrayBuffers);
        yield chunk;
      }
      yield Buffer.from('\n\nFrom c@x Mon Jan  1 00:02:00 2024\nSubject: three\n\nbye\n', 'latin1');
    }
    const before = process.memoryUsage().arrayBuffers;
    const got = [];
    for await (const m of readMbox(file(), { maxMessageBytes: 2 << 20 })) got.push(m);
    expect(got.map((m) => [m.fromLine, m.raw.toString(), m.skipped])).toEqual([
      ['From a@x Mon Jan  1 00:00:00 2024', '', 'larger than 2 MB (160 MB), the most a message may be'],
      ['From c@x Mon Jan  1 00:02:00 2024', 'Subject: three\n\nbye\n', undefined],
    ]);
    expect(most - before).toBeLessThan(48 << 20);
  }, 120_000);

  it('keeps body lines that start with From but are not From_ lines', async () => {
    const file = 'From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nFrom here on, we test.\n\nFrom the start it was clear.\n';
    const got = await read([file]);
    expect(got).toHaveLength(1);
    expect(got[0].raw.toString()).toContain('From the start it was clear.');
  });

  it('reads CRLF files and leading blank lines', async () => {
    const got = await read(['\r\n\r\nFrom a@x Mon Jan  1 00:00:00 2024\r\nSubject: one\r\n\r\nbody\r\n\r\nFrom b@x Mon Jan  1 00:01:00 2024\r\nSubject: two\r\n\r\nbody\r\n']);
    expect(got.map((m) => m.raw.toString())).toEqual(['Subject: one\r\n\r\nbody\r\n', 'Subject: two\r\n\r\nbody\r\n']);
  });

  it('unquotes mboxrd >From lines by one level and quotes them back on export', async () => {
    const raw = Buffer.from('Subject: q\n\nFrom me\n>From you\n>>From them\nnot From here\n');
    expect(quote(raw).toString()).toBe('Subject: q\n\n>From me\n>>From you\n>>>From them\nnot From here\n');
    expect(unquote(quote(raw)).equals(raw)).toBe(true);
    const [back] = await read([mboxrdEntry(raw, 'a@x', new Date(0))]);
    expect(back.raw.equals(raw)).toBe(true);
  });

  it('writes a From_ line in asctime form, with a placeholder sender when there is no address', () => {
    expect(fromLine('alice@example.org', new Date('2026-11-02T10:00:00Z'))).toBe('From alice@example.org Mon Nov  2 10:00:00 2026');
    expect(fromLine('', new Date('2026-11-12T10:00:00Z'))).toBe('From MAILER-DAEMON Thu Nov 12 10:00:00 2026');
  });

  it('adds the missing line end of a message that lacks one, and keeps bytes that are not UTF-8', async () => {
    const raw = Buffer.concat([Buffer.from('Subject: x\n\n'), Buffer.from([0xe9, 0xff, 0x00]), Buffer.from('no newline')]);
    const [back] = await read([mboxrdEntry(raw, 'a@x', new Date(0))]);
    expect(back.raw.equals(Buffer.concat([raw, Buffer.from('\n')]))).toBe(true);
  });

  it('refuses a file that does not start with a From_ line', async () => {
    await expect(read(['Subject: not an mbox\n\nhello\n'])).rejects.toThrow(/not an mbox/);
    expect(await read(['\n\n'])).toEqual([]);
  });
});

describe('message bodies for readers', () => {
  it('escapes text, links URLs, and folds long quotes in a details element', () => {
    const html = renderText('See https://example.org/a?b=1&c=2.\n> one\n> two\n> three\n> four\n> five\nmy <b>answer</b>\n> short\n', { obfuscate: false });
    expect(html).toContain('<a href="https://example.org/a?b=1&amp;c=2" rel="nofollow noopener noreferrer">https://example.org/a?b=1&amp;c=2</a>.');
    expect(html).toContain('<details class="quote"><summary>5 quoted lines</summary><span class="q">&gt; one\n&gt; two');
    expect(html).toContain('my &lt;b&gt;answer&lt;/b&gt;');
    expect(html).toContain('<span class="q">&gt; short</span>');
  });

  it('obfuscates addresses for anonymous readers', () => {
    expect(obfuscateText('mail alice.smith+tag@mail.example.org or <bob@example.com>.')).toBe('mail alice.smith+tag@… or <bob@…>.');
    expect(renderText('write to alice@example.org', { obfuscate: true })).toBe('write to alice@…\n');
    expect(renderText('write to alice@example.org', { obfuscate: false })).toBe('write to alice@example.org\n');
  });

  it('never puts a javascript: URL in the page, even as text', () => {
    expect(renderText('click javascript:alert(1)', { obfuscate: false })).not.toContain('javascript:');
  });

  it('decodes encoded words in header values', () => {
    expect(decodeHeaderWords('=?utf-8?q?J=C3=BCrgen?= <j@example.de>, =?iso-8859-1?B?U+Zyb24=?=')).toBe('Jürgen <j@example.de>, Særon');
    expect(decodeHeaderWords('=?utf-8?q?a?= =?utf-8?q?b?=')).toBe('ab');
  });
});

describe('downloads and feeds', () => {
  it('serves only harmless types inline and keeps file names safe', () => {
    expect(attachmentHeaders('text/html', 'x.html', 'a')).toEqual({ contentType: 'application/octet-stream', disposition: 'attachment; filename="x.html"' });
    expect(attachmentHeaders('image/svg+xml', '../../etc/passwd', 'a')).toEqual({ contentType: 'application/octet-stream', disposition: 'attachment; filename="passwd"' });
    expect(attachmentHeaders('image/jpeg', null, 'attachment-2')).toEqual({ contentType: 'image/jpeg', disposition: 'inline; filename="attachment-2"' });
    expect(attachmentHeaders('text/plain; charset=iso-8859-1', 'a\r\nb.txt', 'x').contentType).toBe('text/plain; charset=iso-8859-1');
    expect(attachmentHeaders('text/plain', 'a\r\nb.txt', 'x').disposition).toBe('inline; filename="ab.txt"');
  });

  it('names a file with a lone UTF-16 surrogate or bidirectional overrides without failing or misleading', () => {
    // =?utf-16be?B?2ABhAA==?= decodes to a lone surrogate and "a": encodeURIComponent() threw, and the page answered 500.
    expect(attachmentHeaders('application/pdf', '\ud800a.pdf', 'x').disposition).toBe(`attachment; filename="_a.pdf"; filename*=UTF-8''%EF%BF%BDa.pdf`);
    expect(attachmentUrl('m@example.org', 1, '\udc00.pdf')).toBe('/message-id/attachment/m@example.org/1/%EF%BF%BD.pdf');
    // "evil\u202Egpj.exe" reads as "evilexe.jpg": the override goes.
    expect(attachmentHeaders('application/octet-stream', 'evil\u202egpj.exe', 'x').disposition).toBe('attachment; filename="evilgpj.exe"');
  });

  it('writes Atom without characters XML forbids', () => {
    const xml = atomFeed({
      id: 'http://x/', title: 'T & <T>', selfUrl: 'http://x/feed.atom', htmlUrl: 'http://x/', updated: new Date(0),
      entries: [{ id: 'http://x/m', url: 'http://x/m', title: 'bell\u0007 "quoted"', author: 'A', updated: new Date(0), summary: 'nul\u0000 and \ud800 lone' }],
    });
    expect(xml).toContain('<title type="text">T &amp; &lt;T&gt;</title>');
    expect(xml).toContain('bell &quot;quoted&quot;');
    expect(xml).toContain('nul and  lone');
    expect(xml).not.toMatch(/[\u0000-\u0008\ud800]/);
  });
});

describe('the fast parser for plain-text mail', () => {
  const comparable = (m: ParsedMessage) => ({ ...m, date: m.date.getTime(), headers: [...m.headers], attachments: m.attachments.length });
  const variants = [
    'From: Alice <a@b.org>\r\nSubject: Hello\r\n  folded\tsubject  \r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x1@y>\r\n\r\nbody\r\nline two\r\n',
    'From: "Example, Alice" <a@b.org>\nSubject: q\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nContent-Type: text/plain; charset="UTF-8"\n\nbody \xc3\xa9\n',
    'FROM: a.b+c@b.org\nSubject:x\nDate: 2 Nov 2026 10:00 GMT\n\n\n\nbody\n\n',
    'From: <a@b.org>\nSubject: x\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n\xff\xfe bytes\n',
    'From: J. Alice   Smith <a@b.org>\nSubject: x\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nIn-Reply-To: <p@q>\nReferences: <a@q>\n <b@q>\n\nx',
    'From: Bob<B@Example.ORG>\nSubject: x\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nContent-Type: text/plain; charset=us-ascii\n\nnul\0here\r\n',
    'From: Bob <b@example.org>\nSubject: x\nDate: Thu, 01 Jan 2099 10:00:00 +0000\nReceived: from x by y; Mon, 02 Nov 2026 09:00:00 +0000\n\nfuture date\n',
    'From: a@b.org (Alice)\nSubject: comment form\nDate: Mon, 02 Nov 2026 10:00:00 +0000\n\nx\n',
    'From: Bob <b@example.org>\nSubject: =?utf-8?q?caf=C3=A9?=\nDate: Mon, 02 Nov 2026 10:00:00 +0000\n\nx\n',
    'From: Bob <b@example.org>\nSubject: flowed\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nContent-Type: text/plain; format=flowed\n\nsoft \nbreak\n',
    'From: Bob <b@example.org>\nSubject: qp\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nContent-Transfer-Encoding: quoted-printable\n\na=3Db\n',
    ' From: indented\n\nnot a message\n',
  ];

  it('gives exactly what the MIME parser gives, or leaves the message to it', async () => {
    const now = new Date('2026-11-22T00:00:00Z');
    const raws = [...new Corpus({ messages: 600, seed: 5 }).messages()].map((m) => m.raw);
    for (const dir of ['fixtures/ingest', 'fixtures/archive']) {
      for (const f of fs.readdirSync(path.join(import.meta.dirname, dir))) if (f.endsWith('.eml')) raws.push(fs.readFileSync(path.join(import.meta.dirname, dir, f)));
    }
    raws.push(...variants.map((v) => Buffer.from(v, 'latin1')));
    let fast = 0;
    for (const raw of raws) {
      const quick = fastParse(raw, now);
      if (!quick) continue;
      fast++;
      expect(comparable(quick), raw.toString('latin1', 0, 200)).toEqual(comparable(await parseMime(raw, now)));
    }
    expect(fast).toBeGreaterThan(500);
    for (const i of [7, 8, 9, 10, 11]) expect(fastParse(Buffer.from(variants[i], 'latin1')), variants[i]).toBeNull();
  });
});
