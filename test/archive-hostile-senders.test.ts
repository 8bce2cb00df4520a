/*
 * What a sender to a public list controls (headers, HTML, addresses in odd spellings) against what
 * the archive promises its readers: downloads that split into the messages sent, and no address
 * readable by anonymous readers in any form the page holds.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListRow } from '../src/db/lists.ts';
import { readMbox } from '../src/mail/mbox.ts';
import { loggedIn } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;

const get = (path: string) => fetch(`${web.url}${path}`, { redirect: 'manual' });

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await newList(db.pool, 'dev@lists.example.org');
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

/** Each character of `s` as one whose low byte it is, in a block a MIME parser takes as letters. */
const lowBytes = (s: string) => s.replace(/[\s\S]/g, (c) => String.fromCharCode(0x0a00 + c.charCodeAt(0)));

describe('mbox downloads', () => {
  it('split into the messages archived, whatever characters the From address holds', async () => {
    const forged = lowBytes('x\n\nFrom MAILER-DAEMON Mon Nov  2 10:00:00 2026\nFrom: CEO <ceo@lists.example.org>\nSubject: Wire the money\n\nPay to');
    await archive(db.pool, dev, mail({ id: 'forger@evil.example', from: `Eve <${forged}@evil.example>`, subject: 'Innocent', date: 'Mon, 02 Nov 2026 10:00:00 +0000' }));
    await archive(db.pool, dev, mail({ id: 'intl@example.org', from: 'Jörg <jörg@bücher.example>', subject: 'Hallo', date: 'Mon, 02 Nov 2026 11:00:00 +0000' }));
    const res = await get('/lists/dev/2026-11.mbox');
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    const got = [];
    for await (const m of readMbox([bytes])) got.push(m);
    expect(got.map((m) => /^Message-ID: <([^>]+)>/m.exec(m.raw.toString())?.[1])).toEqual(['forger@evil.example', 'intl@example.org']);
    expect(bytes.toString('latin1')).not.toMatch(/^Subject: Wire the money/m);
    // An international sender's From_ line is UTF-8, as mail programs read it.
    expect(got[1].fromLine).toBe(Buffer.from('From jörg@bücher.example Mon Nov  2 11:00:00 2026').toString('latin1'));
  });
});

describe('raw mail kept from address harvesters (ARCHIVE_RAW_ACCESS)', () => {
  const urls = ['/message-id/raw/harvest@example.org', '/lists/dev/2026-10.mbox'];
  let threadMbox: string;
  beforeAll(async () => {
    await archive(db.pool, dev, mail({ id: 'harvest@example.org', from: 'Ann <ann.private@example.net>', subject: 'Harvest me', date: 'Thu, 01 Oct 2026 10:00:00 +0000' }));
    const page = await (await get('/message-id/harvest@example.org')).text();
    threadMbox = /href="([^"]+\.mbox)" rel="nofollow">thread as mbox/.exec(page)![1];
    urls.push(threadMbox);
    // Links to raw mail tell crawlers not to follow them, whatever the setting.
    expect(page).toMatch(/href="\/message-id\/raw\/harvest@example.org[^"]*" rel="nofollow">raw</);
  });
  const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });

  it('by default serves raw messages and mbox files to anyone, cacheable by a cache in front', async () => {
    for (const url of urls) {
      const r = await get(url);
      expect(r.status, url).toBe(200);
      expect(await r.text(), url).toContain('ann.private@example.net');
      expect(r.headers.get('cache-control'), url).toBe('public, max-age=60');
    }
  });

  it('antispam: asks anonymous readers for the published user and password, as pgarchives does; logged-in readers pass', async () => {
    const guarded = await startWeb(db, { ARCHIVE_RAW_ACCESS: 'antispam' });
    try {
      for (const url of urls) {
        const asked = await fetch(`${guarded.url}${url}`, { redirect: 'manual' });
        expect(asked.status, url).toBe(401);
        expect(asked.headers.get('www-authenticate'), url).toBe('Basic realm="Please authenticate with user archives and password antispam", charset="UTF-8"');
        expect(asked.headers.get('cache-control'), url).toBe('no-store');
        const text = await asked.text();
        expect(text, url).toContain('curl -u archives:antispam URL');
        expect(text, url).not.toContain('ann.private');
        const wrong = await fetch(`${guarded.url}${url}`, { redirect: 'manual', headers: basic('archives', 'guess') });
        expect(wrong.status, url).toBe(401);
        const answered = await fetch(`${guarded.url}${url}`, { redirect: 'manual', headers: basic('archives', 'antispam') });
        expect(answered.status, url).toBe(200);
        expect(await answered.text(), url).toContain('ann.private@example.net');
        // Not for a shared cache to hand on to the next reader, who gave no answer.
        expect(answered.headers.get('cache-control'), url).toBe('private, no-cache');
        // Asked again without the answer: still refused, though the page cache has seen the file.
        expect((await fetch(`${guarded.url}${url}`, { redirect: 'manual' })).status, url).toBe(401);
      }
      const reader = await loggedIn(db, guarded.url, 'reader@example.org');
      for (const url of urls) expect((await reader.get(url)).status, url).toBe(200);
      // The pages themselves are as before.
      expect((await fetch(`${guarded.url}/message-id/harvest@example.org`)).status).toBe(200);
    } finally {
      await guarded.stop();
    }
  });

  it('login: sends anonymous readers to log in and come back', async () => {
    const guarded = await startWeb(db, { ARCHIVE_RAW_ACCESS: 'login' });
    try {
      for (const url of urls) {
        const r = await fetch(`${guarded.url}${url}`, { redirect: 'manual', headers: basic('archives', 'antispam') });
        expect(r.status, url).toBe(303);
        expect(r.headers.get('location'), url).toBe(`/login?next=${encodeURIComponent(url)}`);
      }
      const reader = await loggedIn(db, guarded.url, 'reader2@example.org');
      expect((await reader.get(urls[0])).text).toContain('ann.private@example.net');
    } finally {
      await guarded.stop();
    }
  });

  it('refuses a value it does not know at start-up, naming the variable', async () => {
    await expect(startWeb(db, { ARCHIVE_RAW_ACCESS: 'nobody' })).rejects.toThrow(/ARCHIVE_RAW_ACCESS/);
  });
});

/** An HTML-only message. */
function htmlMail(id: string, subject: string, html: string): Buffer {
  return Buffer.from([
    'From: Mallory <mallory@evil.example>', 'To: dev@lists.example.org', `Subject: ${subject}`, 'Date: Tue, 03 Nov 2026 10:00:00 +0000',
    `Message-ID: <${id}>`, 'MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8', '', html, '',
  ].join('\r\n'));
}

/** The part of a page that shows the message. */
const mainOf = (html: string) => html.slice(html.indexOf('<main id="content"'), html.indexOf('</main>'));

describe('addresses for anonymous readers', () => {
  it('are obfuscated in an HTML part however it spells them: entities, tags within, attributes, a mailto: with white space', async () => {
    const html = [
      '<p>Mail ann&#64;example.net or bob@<b></b>ex<i>ample</i>.net.</p>',
      '<p><span title="carol@example.net">hover</span> <a href="https://track.example/?u=dave@example.net" title="erin@example.net">link</a></p>',
      '<p><a href=" mail\tto:frank@example.net">write</a> <img alt="grace@example.net" src="cid:none@example.net"></p>',
    ].join('\n');
    await archive(db.pool, dev, htmlMail('html-addresses@evil.example', 'Contacts', html));
    // As a reader sees it: the inline tags within the text gone.
    const anonymous = mainOf(await (await get('/message-id/html-addresses@evil.example')).text()).replace(/<\/?[bi]>/g, '');
    expect(anonymous).toContain('ann@…');
    expect(anonymous).toContain('bob@….');
    for (const local of ['ann', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace']) expect(anonymous, local).not.toMatch(new RegExp(`${local}(@|&#64;|%40)(?!…)`));
    expect(anonymous).not.toContain('mail\tto');
    const reader = await loggedIn(db, web.url, 'reader@example.org');
    const full = mainOf((await reader.get('/message-id/html-addresses@evil.example')).text);
    for (const address of ['ann@example.net', 'carol@example.net', 'dave@example.net', 'erin@example.net', 'grace@example.net']) expect(full).toContain(address);
  });

  it('are obfuscated in search excerpts when the searched word is part of one', async () => {
    await archive(db.pool, dev, mail({ id: 'excerpt@evil.example', subject: 'Gadgets', date: 'Wed, 04 Nov 2026 10:00:00 +0000', body: 'Ivan says the frobnicator is here: ask henry.owner@frobnicator.example or ivan@example.org about it.\n' }));
    for (const q of ['frobnicator', 'ivan']) {
      const res = await get(`/search?q=${q}&list=dev`);
      const text = mainOf(await res.text());
      expect(text, q).toContain('<mark>');
      expect(text.replace(/<\/?mark>/g, ''), q).toContain('henry.owner@… or ivan@… about it');
    }
  });

  it('are obfuscated in the reply-by-mail link of a message page', async () => {
    await archive(db.pool, dev, mail({ id: 'reply-subject@evil.example', subject: 'Write to judy.private@example.net', date: 'Thu, 05 Nov 2026 10:00:00 +0000' }));
    const anonymous = mainOf(await (await get('/message-id/reply-subject@evil.example')).text());
    const mailto = /href="(mailto:[^"]+)"/.exec(anonymous)![1];
    expect(decodeURIComponent(mailto.replace(/&amp;/g, '&'))).toContain('subject=Re: Write to judy.private@…&');
    expect(anonymous).not.toMatch(/judy\.private(@|%40)(?!…|%E2%80%A6)/i);
    const reader = await loggedIn(db, web.url, 'reader@example.org');
    expect((await reader.get('/message-id/reply-subject@evil.example')).text).toContain('subject=Re%3A%20Write%20to%20judy.private%40example.net');
  });

  it('are obfuscated when their domain is international, in either spelling', async () => {
    await archive(db.pool, dev, mail({
      id: 'idn@evil.example', subject: 'Kontakt kim@bücher.example', date: 'Fri, 06 Nov 2026 10:00:00 +0000', headers: { Cc: 'Leo <leo@例え.jp>' },
      body: 'Schreib an mallory@müller.example, 山田@例え。jp oder nina@xn--mller-kva.example.\n',
    }));
    const pages = ['/message-id/idn@evil.example', '/lists/dev/2026-11/', '/lists/dev/feed.atom', '/search?q=schreib&list=dev'];
    for (const url of pages) {
      const text = await (await get(url)).text();
      expect(text, url).toContain('Kontakt kim@…');
      for (const domain of ['bücher', '例え', 'müller', 'xn--mller-kva']) expect(text, `${url}: ${domain}`).not.toContain(domain);
    }
    const message = mainOf(await (await get('/message-id/idn@evil.example')).text());
    for (const shown of ['Kontakt kim@…', 'leo@…', 'mallory@…, 山田@… oder nina@….']) expect(message).toContain(shown);
  });

  it('cannot be read back a piece at a time through the author filter of a search', async () => {
    await archive(db.pool, dev, mail({ id: 'oracle@example.org', from: 'Oscar <oscar.hidden@quietdomain.example>', subject: 'Quiet', date: 'Sat, 07 Nov 2026 10:00:00 +0000' }));
    const hits = async (from: string, viewer?: Awaited<ReturnType<typeof loggedIn>>) => {
      const path = `/search?from=${encodeURIComponent(from)}&list=dev`;
      const html = viewer ? (await viewer.get(path)).text : await (await get(path)).text();
      return html.includes('/message-id/oracle@example.org');
    };
    // What the page shows, the name and the address before its @, finds the author.
    expect(await hits('Oscar')).toBe(true);
    expect(await hits('oscar.hid')).toBe(true);
    // The domain, which anonymous readers are not shown, does not: each guess would tell a piece of it.
    for (const part of ['quietdomain', 'ietdom', 'hidden@quiet', 'domain.example']) expect(await hits(part), part).toBe(false);
    const reader = await loggedIn(db, web.url, 'reader@example.org');
    expect(await hits('quietdomain', reader)).toBe(true);
  });

  it('are obfuscated in the names of attachments, which still download', async () => {
    const raw = Buffer.from([
      'From: Mallory <mallory@evil.example>', 'To: dev@lists.example.org', 'Subject: Card', 'Date: Sun, 08 Nov 2026 10:00:00 +0000',
      'Message-ID: <card@evil.example>', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '',
      '--b', 'Content-Type: text/plain; charset=utf-8', '', 'My card.', '--b',
      'Content-Type: text/plain; charset=utf-8; name="kate.card@example.net.txt"', 'Content-Disposition: attachment; filename="kate.card@example.net.txt"', '',
      'BEGIN:VCARD', '--b--', '',
    ].join('\r\n'));
    await archive(db.pool, dev, raw);
    const anonymous = mainOf(await (await get('/message-id/card@evil.example')).text());
    expect(anonymous).toContain('kate.card@…');
    expect(anonymous).not.toMatch(/kate\.card(@|%40)(?!…|%E2%80%A6)/);
    const href = /href="(\/message-id\/attachment\/[^"]+)"/.exec(anonymous)![1];
    const res = await get(href.replace(/&amp;/g, '&'));
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('BEGIN:VCARD');
    const reader = await loggedIn(db, web.url, 'reader@example.org');
    expect((await reader.get('/message-id/card@evil.example')).text).toContain('kate.card@example.net.txt');
  });
});
