import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ListRow } from '../src/db/lists.ts';
import { mboxRows } from '../src/db/archive-mbox.ts';
import { hideMessage, unhideMessage } from '../src/db/messages.ts';
import { readMbox } from '../src/mail/mbox.ts';
import * as urls from '../src/mail/urls.ts';
import { canReadArchive } from '../src/web/archive/access.ts';
import { loggedIn } from './helpers/browser.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, fixture, mail, newList } from './fixtures/archive/seed.ts';
import { BIG, bigId, bigThreadShape, seedBigThread } from './fixtures/archive/big-thread.ts';
import { upsertAccount } from '../src/db/accounts.ts';
import { hashPassword } from '../src/auth/credentials.ts';
import { WebClient } from './helpers/browser.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
let staff: ListRow;
let secret: ListRow;
const raws = new Map<string, Buffer>();
const WEIRD = 'weird/id+plus%pct?q#h@example.org';
const quote = Array.from({ length: 6 }, (_, i) => `> quoted line ${i + 1} of the plan`).join('\n');

async function put(list: ListRow, m: Parameters<typeof mail>[0]) {
  const raw = mail(m);
  raws.set(m.id, raw);
  await archive(db.pool, list, raw);
}

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${web.url}${path}`, { headers, redirect: 'manual' });
const page = async (path: string) => {
  const res = await get(path);
  return { status: res.status, text: await res.text(), headers: res.headers };
};

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await newList(db.pool, 'dev@lists.example.org', 'public', { name: 'Developers', description: 'Development of the thing' });
  staff = await newList(db.pool, 'staff@lists.example.org', 'members', { name: 'Staff' });
  secret = await newList(db.pool, 'secret@lists.example.org', 'private', { name: 'Secret' });
  await newList(db.pool, 'announce@lists.example.org', 'public', { name: 'Announce here' });
  const other = await newList(db.pool, 'announce@lists.other.example', 'public', { name: 'Announce there' });

  await put(dev, { id: 'old-1@example.org', subject: 'Old topic', date: 'Thu, 15 Oct 2026 08:00:00 +0000' });
  await put(dev, { id: 'plan-1@example.org', subject: 'Release plan', date: 'Mon, 02 Nov 2026 10:00:00 +0000', body: 'Here is the plan.\nWrite to alice.private@example.org about frobnication.\n' });
  await put(dev, { id: 'plan-2@example.org', from: 'Bob Builder <bob@example.com>', subject: 'Re: Release plan', date: 'Mon, 02 Nov 2026 11:00:00 +0000', inReplyTo: 'plan-1@example.org', references: ['plan-1@example.org'], body: `Alice wrote:\n${quote}\n\nSounds good to me.\n` });
  await put(dev, { id: 'plan-3@example.org', from: 'Carol <carol@example.net>', subject: 'Re: Release plan', date: 'Mon, 02 Nov 2026 12:00:00 +0000', inReplyTo: 'plan-2@example.org', references: ['plan-1@example.org', 'plan-2@example.org'], body: 'Agreed with Bob.\n' });
  await put(dev, { id: 'plan-4@example.org', from: 'Dave <dave@example.org>', subject: 'Re: Release plan', date: 'Mon, 02 Nov 2026 13:00:00 +0000', inReplyTo: 'plan-1@example.org', references: ['plan-1@example.org'], body: 'A question for Alice.\n' });
  await put(dev, { id: WEIRD, subject: 'Odd identifiers', date: 'Tue, 03 Nov 2026 10:00:00 +0000' });
  await put(staff, { id: 'staff-1@example.org', subject: 'Salary review', date: 'Tue, 03 Nov 2026 11:00:00 +0000', body: 'confidential numbers\n' });
  await put(secret, { id: 'secret-1@example.org', subject: 'Acquisition plans', date: 'Tue, 03 Nov 2026 12:00:00 +0000', body: 'top secret target\n' });
  await put(other, { id: 'there-1@example.org', subject: 'Over there', date: 'Tue, 03 Nov 2026 13:00:00 +0000' });
  raws.set('attachments@example.net', fixture('attachments.eml'));
  await archive(db.pool, dev, fixture('attachments.eml'));

  await db.pool.query(`insert into members (list_id, email, status) values ($1, 'member@example.org', 'active'), ($2, 'member@example.org', 'active'),
                                                                          ($1, 'gone@example.org', 'unsubscribed')`, [staff.id, secret.id]);
  await db.pool.query(`insert into list_roles (list_id, email, role) values ($1, 'mod@example.org', 'moderator')`, [staff.id]);
});

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

describe('browsing the archive', () => {
  it('lists public and members-only lists on / with descriptions, counts and latest activity, but not private ones', async () => {
    const { status, text } = await page('/');
    expect(status).toBe(200);
    expect(text).toContain('Developers');
    expect(text).toContain('Development of the thing');
    expect(text).toMatch(/href="\/lists\/dev\/"[\s\S]*?<td class="num">7<\/td>/);
    expect(text).toContain('2026-11-04 12:00');
    expect(text).toContain('Staff');
    expect(text).toContain('members only');
    expect(text).toMatch(/<strong>Staff<\/strong>[\s\S]*?<td class="num">—<\/td>/);
    expect(text).not.toContain('Secret');
    expect(text).not.toContain('secret@lists.example.org');
  });

  it('shows a private list on / to its members', async () => {
    const member = await loggedIn(db, web.url, 'member@example.org');
    expect((await member.get('/')).text).toContain('secret@lists.example.org');
  });

  it('shows a list with its months, recent threads and a subscribe form', async () => {
    const { status, text } = await page('/lists/dev/');
    expect(status).toBe(200);
    expect(text).toMatch(/href="\/lists\/dev\/2026-11\/">2026-11<\/a><\/td><td class="num">6</);
    expect(text).toMatch(/href="\/lists\/dev\/2026-10\/">2026-10<\/a><\/td><td class="num">1</);
    expect(text).toContain('href="/lists/dev/2026-11.mbox"');
    expect(text).toContain('Release plan');
    expect(text).toContain('href="/message-id/plan-1@example.org"');
    expect(text).toMatch(/<form class="subscribe[^"]*" method="post" action="\/lists\/dev@lists.example.org\/subscribe">/);
    // The same page for every anonymous reader: no token in it (the form's post asks again, with one).
    expect(text).not.toContain('name="_csrf"');
    expect(text).toContain('name="email"');
    expect(text).toContain('name="name"');
    expect(text).toContain('href="/lists/dev/feed.atom"');
  });

  it('addresses a list by its full address when its local part is shared, and by local part otherwise', async () => {
    expect((await page('/lists/announce@lists.other.example/')).text).toContain('Announce there');
    expect((await page('/lists/dev@lists.example.org/')).status).toBe(200);
    expect((await page('/')).text).toContain('href="/lists/announce@lists.other.example/"');
    expect((await page('/lists/nosuchlist/')).status).toBe(404);
  });

  it('shows a month as its threads with reply counts and participants', async () => {
    const { status, text } = await page('/lists/dev/2026-11/');
    expect(status).toBe(200);
    expect(text).toContain('6 messages in 3 threads');
    const row = /<tr>\s*<td><a href="\/lists\/dev\/thread\/(\d+)">Release plan<\/a>[\s\S]*?<\/tr>/.exec(text);
    expect(row).not.toBeNull();
    expect(row![0]).toContain('<td class="num">3</td>');
    expect(row![0]).toMatch(/Alice Example.*Bob Builder.*Carol.*Dave|Alice Example, Bob Builder, Carol, Dave/s);
    expect(text).toContain('href="/lists/dev/2026-10/"');
    expect(text).toContain('href="/lists/dev/2026-11.mbox"');
    expect((await page('/lists/dev/2026-13/')).status).toBe(404);
  });

  it('answers under /lists/LIST/ only the shapes it declares: any other part is 404, and the subscribe form there still answers', async () => {
    for (const path of ['/lists/dev/thread', '/lists/dev/thread/12a', '/lists/dev/thread/12a.mbox', '/lists/dev/thread/1234567890123456', '/lists/dev/2026-11.mbox.mbox',
      '/lists/dev/feed.atom.mbox', '/lists/dev/2026-1/', '/lists/dev/nonsense', '/lists/dev/.mbox']) {
      expect((await page(path)).status, path).toBe(404);
    }
    expect((await page('/lists/dev/subscribe')).status).toBe(200);
    expect((await page('/lists/dev/feed.atom')).status).toBe(200);
    expect((await page('/lists/dev/2026-11')).status).toBe(200);
    // Percent-escaped unreserved characters name the same URL (RFC 3986 §6.2.2.2).
    for (const path of ['/lists/dev/feed%2Eatom', '/lists/dev/fe%65d.atom', '/lists/dev/2026-11%2Embox', '/lists/dev/2026%2D11/']) {
      expect((await page(path)).status, path).toBe(200);
    }
  });

  it('answers every URL shape that mail/urls.ts builds, and builds the links the pages show', async () => {
    const month = (await page(urls.monthUrl('dev', '2026-11'))).text;
    const threadId = /href="\/lists\/dev\/thread\/(\d+)">Release plan/.exec(month)![1];
    expect(month).toContain(`href="${urls.threadUrl('dev', threadId)}"`);
    for (const url of [urls.listUrl('dev'), urls.listUrl('announce@lists.example.org'), urls.monthMboxUrl('dev', '2026-11'), urls.feedUrl('dev'),
      urls.threadUrl('dev', threadId), urls.threadMboxUrl('dev', threadId), urls.messageUrl(WEIRD), urls.messageUrl('plan-1@example.org', 'dev'),
      urls.rawMessageUrl(WEIRD), urls.attachmentUrl('attachments@example.net', 3, 'dot.png'), urls.attachmentUrl('attachments@example.net', 3), urls.subscribeUrl('dev')]) {
      expect((await get(url)).status, url).toBe(200);
    }
  });

  it('shows a thread as an indented tree, each message linked to its permalink, long quotes folded', async () => {
    const month = (await page('/lists/dev/2026-11/')).text;
    const threadId = /href="\/lists\/dev\/thread\/(\d+)">Release plan/.exec(month)![1];
    const { status, text } = await page(`/lists/dev/thread/${threadId}`);
    expect(status).toBe(200);
    const order = [...text.matchAll(/<li class="msg d(\d+)"[\s\S]*?href="\/message-id\/([^"]+)"/g)].map((m) => [m[2], Number(m[1])]);
    expect(order).toEqual([['plan-1@example.org', 0], ['plan-2@example.org', 1], ['plan-3@example.org', 2], ['plan-4@example.org', 1]]);
    expect(text).toMatch(/<details class="quote"><summary>6 quoted lines<\/summary>/);
    expect(text).toContain('Sounds good to me.');
    expect(text).toContain(`href="/lists/dev/thread/${threadId}.mbox"`);
  });

  it('shows a message with its headers, body, attachments, place in the thread and neighbours', async () => {
    const { status, text } = await page('/message-id/plan-2@example.org');
    expect(status).toBe(200);
    expect(text).toContain('<h1>Re: Release plan</h1>');
    expect(text).toContain('Bob Builder &lt;bob@…&gt;');
    expect(text).toContain('2026-11-02 11:00');
    expect(text).toContain('&lt;plan-2@example.org&gt;');
    expect(text).toContain('Sounds good to me.');
    expect(text).toContain('Message 2 of 4');
    expect(text).toMatch(/In reply to:<\/span> <a href="\/message-id\/plan-1@example.org">/);
    expect(text).toMatch(/Previous in thread:<\/span> <a href="\/message-id\/plan-1@example.org">/);
    expect(text).toMatch(/Next in thread:<\/span> <a href="\/message-id\/plan-3@example.org">/);
    expect(text).toMatch(/Reply:<\/span> <a href="\/message-id\/plan-3@example.org">/);
    expect(text).toMatch(/Previous:<\/span> <a href="\/message-id\/plan-1@example.org">/);
    expect(text).toMatch(/Next:<\/span> <a href="\/message-id\/plan-3@example.org">/);
    expect(text).toContain('href="/message-id/raw/plan-2@example.org"');

    const withFiles = (await page('/message-id/attachments@example.net')).text;
    expect(withFiles).toContain('page.html');
    expect(withFiles).toContain('dot.png');
    expect(withFiles).toContain('href="/message-id/attachment/attachments@example.net/3/dot.png"');
  });

  it('answers a permalink with the angle brackets and with percent-encoded special characters', async () => {
    expect((await page('/message-id/%3Cplan-1@example.org%3E')).text).toContain('<h1>Release plan</h1>');
    const weird = (await page(`/message-id/${encodeURIComponent(WEIRD).replace(/%40/g, '@')}`));
    expect(weird.status).toBe(200);
    expect(weird.text).toContain('<h1>Odd identifiers</h1>');
    expect(weird.text).toContain('href="/message-id/weird%2Fid%2Bplus%25pct%3Fq%23h@example.org"');
    expect((await page('/message-id/nothing-here@example.org')).status).toBe(404);
  });

  it('serves the raw message byte for byte as text/plain', async () => {
    const res = await get(`/message-id/raw/${encodeURIComponent(WEIRD)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(Buffer.from(await res.arrayBuffer()).equals(raws.get(WEIRD)!)).toBe(true);
    const bracketed = await get('/message-id/raw/%3Cattachments@example.net%3E');
    expect(Buffer.from(await bracketed.arrayBuffer()).equals(fixture('attachments.eml'))).toBe(true);

    // Bytes that are not UTF-8 are not labelled UTF-8.
    const latin1 = Buffer.from(mail({ id: 'latin1@example.org', subject: 'Caf\u00e9', date: 'Wed, 04 Nov 2026 09:00:00 +0000', body: 'Un caf\u00e9.\n' }).toString('utf8').replace('charset=utf-8', 'charset=iso-8859-1'), 'latin1');
    await archive(db.pool, dev, latin1);
    const res8859 = await get('/message-id/raw/latin1@example.org');
    expect(res8859.headers.get('content-type')).toBe('text/plain');
    expect(Buffer.from(await res8859.arrayBuffer()).equals(latin1)).toBe(true);
    await db.pool.query(`delete from list_messages where message_id = (select id from messages where message_id = 'latin1@example.org')`);
  });

  it('downloads a month and a thread as mboxrd holding the exact messages', async () => {
    const res = await get('/lists/dev/2026-11.mbox');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/mbox');
    expect(res.headers.get('content-disposition')).toContain('dev-2026-11.mbox');
    const got = [];
    for await (const m of readMbox([Buffer.from(await res.arrayBuffer())])) got.push(m.raw);
    expect(got.length).toBe(6);
    expect(got[0].equals(raws.get('plan-1@example.org')!)).toBe(true);
    expect(got.some((r) => r.equals(fixture('attachments.eml')))).toBe(true);

    const month = (await page('/lists/dev/2026-11/')).text;
    const threadId = /href="\/lists\/dev\/thread\/(\d+)">Release plan/.exec(month)![1];
    const thread = await get(`/lists/dev/thread/${threadId}.mbox`);
    const ids = [];
    for await (const m of readMbox([Buffer.from(await thread.arrayBuffer())])) ids.push(/Message-ID: <([^>]+)>/.exec(m.raw.toString())![1]);
    expect(ids).toEqual(['plan-1@example.org', 'plan-2@example.org', 'plan-3@example.org', 'plan-4@example.org']);
    expect((await get('/lists/dev/1999-01.mbox')).status).toBe(404);
  });

  it('reads an mbox download a bounded number of bytes at a time, however large its messages', async () => {
    // 200 rows a page held 800 MB in the web process when each message was 4 MB.
    const bulky = await newList(db.pool, 'bulky@lists.example.org');
    const body = (i: number) => `${String(i).padStart(2, '0')} ${'x'.repeat(75)}\n`.repeat(500);
    for (let i = 0; i < 12; i++) {
      await put(bulky, { id: `bulky-${i}@example.org`, subject: `Bulky ${i}`, date: `Mon, 02 Nov 2026 10:${String(i).padStart(2, '0')}:00 +0000`, body: body(i) });
    }
    const size = raws.get('bulky-0@example.org')!.length;
    const pages: number[] = [];
    const recording = { query: async (text: string, values: unknown[]) => {
      const res = await db.pool.query(text, values);
      pages.push(res.rows.length);
      return res;
    } } as unknown as typeof db.pool;
    const got: string[] = [];
    for await (const row of mboxRows(recording, { listId: bulky.id }, 200, 2.5 * size)) got.push(/Message-ID: <([^>]+)>/.exec(row.raw.toString())![1]);
    expect(got).toEqual(Array.from({ length: 12 }, (_, i) => `bulky-${i}@example.org`));
    // Each page stops at the message that passes the bound (the third of these), never the whole
    // month; the last one, full by its bytes, is followed by an empty one.
    expect(pages).toEqual([3, 3, 3, 3, 0]);
    // The download is whole, as before.
    const res = await get('/lists/bulky/2026-11.mbox');
    const downloaded = [];
    for await (const m of readMbox([Buffer.from(await res.arrayBuffer())])) downloaded.push(m.raw);
    expect(downloaded.map((r) => r.equals(raws.get(/Message-ID: <([^>]+)>/.exec(r.toString())![1])!))).toEqual(Array(12).fill(true));
  });

  it('publishes a well-formed Atom feed of the latest messages with permalinks', async () => {
    const res = await get('/lists/dev/feed.atom');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/atom\+xml/);
    const xml = await res.text();
    expect(wellFormed(xml)).toBe(true);
    expect(xml).toContain('<feed xmlns="http://www.w3.org/2005/Atom">');
    expect(xml).toContain(`<link rel="alternate" type="text/html" href="${web.url}/message-id/plan-4@example.org"/>`);
    expect(xml.match(/<entry>/g)!.length).toBe(7);
    expect(xml).toContain('<title type="text">Re: Release plan</title>');
    expect(xml).not.toContain('alice.private@example.org');
  });

  it('obfuscates addresses for anonymous readers and shows them to logged-in readers, Message-ID links untouched', async () => {
    const list = await newList(db.pool, 'subjects@lists.example.org');
    await put(list, { id: 'subject-address@example.org', subject: 'Write to eve.secret@evil.example now', date: 'Mon, 02 Nov 2026 10:00:00 +0000' });
    for (const url of ['/message-id/subject-address@example.org', '/lists/subjects/', '/lists/subjects/2026-11/', '/lists/subjects/feed.atom', '/search?q=write&list=subjects']) {
      const text = (await page(url)).text;
      expect(text, url).toContain('eve.secret@…');
      expect(text, url).not.toContain('eve.secret@evil.example');
    }
    const anonymous = (await page('/message-id/plan-1@example.org')).text;
    expect(anonymous).toContain('alice.private@…');
    expect(anonymous).not.toContain('alice.private@example.org');
    expect(anonymous).not.toContain('alice@example.org');
    expect(anonymous).toContain('href="/message-id/plan-1@example.org"');
    const reader = await loggedIn(db, web.url, 'reader@example.org');
    const full = (await reader.get('/message-id/plan-1@example.org')).text;
    expect(full).toContain('alice.private@example.org');
    expect(full).toContain('Alice Example &lt;alice@example.org&gt;');
  });

  it('paginates a month with more threads than a page holds', async () => {
    const big = await newList(db.pool, 'busy@lists.example.org');
    for (let i = 0; i < 105; i++) {
      await put(big, { id: `busy-${i}@example.org`, subject: `Topic ${i}`, date: new Date(Date.UTC(2026, 4, 1, 0, i)).toUTCString() });
    }
    const first = (await page('/lists/busy/2026-05/')).text;
    expect(first).toContain('page 1 of 2');
    expect(first).toContain('href="/lists/busy/2026-05/?page=2"');
    expect(first).toContain('Topic 99');
    expect(first).not.toContain('Topic 104');
    expect((await page('/lists/busy/2026-05/?page=2')).text).toContain('Topic 104');
  });
});

describe('archive access', () => {
  const restricted = (id: string, list: string, month: string) => [
    `/lists/${list}/`, `/lists/${list}/${month}/`, `/lists/${list}/${month}.mbox`, `/lists/${list}/feed.atom`,
    `/message-id/${id}`, `/message-id/raw/${id}`,
  ];

  it('keeps members and private archives from anonymous readers on every URL', async () => {
    for (const url of [...restricted('staff-1@example.org', 'staff', '2026-11'), ...restricted('secret-1@example.org', 'secret', '2026-11')]) {
      const { status, text } = await page(url);
      expect([403, 404], url).toContain(status);
      expect(text, url).not.toMatch(/Salary review|confidential numbers|Acquisition plans|top secret target/);
    }
    const threadId = (await db.pool.query(`select thread_id from messages where message_id = 'staff-1@example.org'`)).rows[0].thread_id;
    expect([403, 404]).toContain((await page(`/lists/staff/thread/${threadId}`)).status);
    expect([403, 404]).toContain((await page(`/lists/staff/thread/${threadId}.mbox`)).status);
    expect((await page('/search?q=confidential')).text).toContain('No messages found');
    expect((await page('/search?q=acquisition')).text).toContain('No messages found');
    expect((await page('/search?q=%3Csecret-1@example.org%3E')).status).toBe(200);
    expect((await page('/lists/secret/')).status).toBe(404);
    expect((await page('/lists/staff/')).status).toBe(403);
  });

  it('opens a members archive to active members, its moderators and site administrators, not to others', async () => {
    for (const [email, admin] of [['member@example.org', false], ['mod@example.org', false], ['root@example.org', true]] as const) {
      const c = await loggedIn(db, web.url, email, { siteAdmin: admin });
      const r = await c.get('/message-id/staff-1@example.org');
      expect(r.status, email).toBe(200);
      expect(r.text).toContain('confidential numbers');
      expect((await c.get('/search?q=confidential')).text).toContain('Salary review');
      expect(r.headers.get('cache-control')).toBe('private, no-store');
    }
    for (const email of ['outsider@example.org', 'gone@example.org']) {
      const c = await loggedIn(db, web.url, email);
      expect((await c.get('/message-id/staff-1@example.org')).status, email).toBe(403);
      expect((await c.get('/lists/secret/')).status, email).toBe(404);
      expect((await c.get('/search?q=confidential')).text).not.toContain('Salary review');
    }
  });

  it('decides access with canReadArchive for any viewer', async () => {
    const viewer = (email: string, isSiteAdmin = false) => ({ accountId: 1, email, emails: [email.toLowerCase()], isSiteAdmin });
    expect(await canReadArchive(db.pool, null, dev)).toBe(true);
    expect(await canReadArchive(db.pool, null, staff)).toBe(false);
    expect(await canReadArchive(db.pool, null, secret)).toBe(false);
    expect(await canReadArchive(db.pool, viewer('member@example.org'), secret)).toBe(true);
    expect(await canReadArchive(db.pool, viewer('Member@Example.org'), staff)).toBe(true);
    expect(await canReadArchive(db.pool, viewer('mod@example.org'), staff)).toBe(true);
    expect(await canReadArchive(db.pool, viewer('mod@example.org'), secret)).toBe(false);
    expect(await canReadArchive(db.pool, viewer('gone@example.org'), staff)).toBe(false);
    expect(await canReadArchive(db.pool, viewer('anyone@example.org', true), secret)).toBe(true);
  });
});

describe('caching', () => {
  it('sends validators and answers 304 to If-None-Match and If-Modified-Since', async () => {
    for (const url of ['/', '/lists/dev/2026-11/', '/message-id/plan-1@example.org', '/lists/dev/2026-11.mbox', '/lists/dev/feed.atom']) {
      const first = await get(url);
      await first.arrayBuffer();
      const etag = first.headers.get('etag');
      const lastModified = first.headers.get('last-modified');
      expect(etag, url).toBeTruthy();
      expect(lastModified, url).toBeTruthy();
      expect((await get(url, { 'if-none-match': etag! })).status, url).toBe(304);
      expect((await get(url, { 'if-modified-since': lastModified! })).status, url).toBe(304);
      expect((await get(url, { 'if-none-match': '"something-else"' })).status, url).toBe(200);
    }
  });

  it('lets a shared cache keep the list page: its subscribe form carries no token, and subscribes only once sent again with one', async () => {
    const first = await get('/lists/dev/');
    const html = await first.text();
    expect(first.headers.get('cache-control')).toBe('public, max-age=60');
    expect(first.headers.get('set-cookie')).toBeNull();
    expect(html).not.toContain('name="_csrf"');
    expect((await get('/lists/dev/', { 'if-modified-since': first.headers.get('last-modified')! })).status).toBe(304);
    expect((await get('/lists/dev/', { 'if-none-match': first.headers.get('etag')! })).status).toBe(304);

    // Posted as the page has it: the form again, filled in, with this visitor's token; nothing done.
    const email = 'shared-form@example.net';
    const requests = async () => (await db.pool.query('select count(*)::int as n from subscription_requests where email = $1', [email])).rows[0].n;
    const visitor = new WebClient(web.url);
    const asked = await visitor.post('/lists/dev@lists.example.org/subscribe', { email, name: 'Shared Form', website: '' }, { csrf: false });
    expect(asked.status).toBe(200);
    expect(asked.text).toContain('Check your address and press Subscribe once more');
    expect(asked.text).toContain(`value="${email}"`);
    expect(asked.text).toContain('value="Shared Form"');
    const token = /name="_csrf" value="([^"]+)"/.exec(asked.text)?.[1];
    expect(token).toBe(visitor.jar.get('lk_csrf'));
    expect(await requests()).toBe(0);
    // Sent again with it: the confirmation mail goes.
    const sent = await visitor.post('/lists/dev@lists.example.org/subscribe', { email, name: 'Shared Form', website: '' }, { csrf: token });
    expect(sent.status).toBe(200);
    expect(sent.text).toContain('Check your mail');
    expect(await requests()).toBe(1);
    // A token that is not this visitor's (another site's guess, an expired form) is refused, as on every form.
    const stranger = new WebClient(web.url);
    await stranger.get('/lists/dev/subscribe');
    const forged = await stranger.post('/lists/dev@lists.example.org/subscribe', { email: 'forged@example.net' }, { csrf: 'x'.repeat(32) });
    expect(forged.status).toBe(403);
    // A logged-in reader's page keeps the session's token, and is theirs alone.
    const reader = await loggedIn(db, web.url, 'reader3@example.org');
    const mine = await reader.get('/lists/dev/');
    expect(mine.text).toMatch(/name="_csrf" value="[A-Za-z0-9_-]{32,}"/);
    expect(mine.headers.get('cache-control')).toBe('private, no-cache');
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    for (const url of ['/lists/dev/2026-11/', '/message-id/plan-1@example.org', '/search?q=plan', '/lists/dev/feed.atom']) {
      const full = await get(url);
      const body = Buffer.from(await full.arrayBuffer());
      const head = await fetch(`${web.url}${url}`, { method: 'HEAD' });
      expect(head.status, url).toBe(200);
      expect(Buffer.from(await head.arrayBuffer()).length, url).toBe(0);
      expect(Number(head.headers.get('content-length')), url).toBe(body.length);
      for (const h of ['content-type', 'etag', 'cache-control', 'vary']) expect(head.headers.get(h), `${url} ${h}`).toBe(full.headers.get(h));
    }
  });

  it('lets a shared cache keep public pages for anonymous readers, and sets no cookie on them', async () => {
    const res = await get('/lists/dev/2026-11/');
    expect(res.headers.get('cache-control')).toBe('public, max-age=60');
    expect(res.headers.get('vary')).toMatch(/Cookie/i);
    expect(res.headers.get('set-cookie')).toBeNull();
    // The front page names a members-only list but shows nothing of it to anonymous readers.
    expect((await get('/')).headers.get('cache-control')).toBe('public, max-age=60');
    const member = await loggedIn(db, web.url, 'member@example.org');
    expect((await member.get('/')).headers.get('cache-control')).toBe('private, no-store');
    expect((await get('/lists/dev/')).headers.get('cache-control')).toBe('public, max-age=60');
    const reader = await loggedIn(db, web.url, 'reader2@example.org');
    expect((await reader.get('/lists/dev/2026-11/')).headers.get('cache-control')).toBe('private, no-cache');
  });
});

describe('hiding a message', () => {
  it('removes it from every page, search, feed and mbox at once, and its permalink says why', async () => {
    const before = (await page('/search?q=frobnication')).text;
    expect(before).toContain('Release plan');
    await hideMessage(db.pool, dev.id, 'plan-1@example.org', 'privacy: the author asked', 'mod@example.org');

    const permalink = await page('/message-id/plan-1@example.org');
    expect(permalink.status).toBe(410);
    expect(permalink.text).toContain('privacy: the author asked');
    expect(permalink.text).not.toContain('Here is the plan');
    const raw = await page('/message-id/raw/plan-1@example.org');
    expect(raw.status).toBe(410);
    expect(raw.text).not.toContain('Here is the plan');

    const month = (await page('/lists/dev/2026-11/')).text;
    expect(month).toContain('5 messages in 3 threads');
    expect(month).not.toContain('href="/message-id/plan-1@example.org"');
    const threadId = /href="\/lists\/dev\/thread\/(\d+)">Re: Release plan/.exec(month)![1];
    const thread = (await page(`/lists/dev/thread/${threadId}`)).text;
    expect(thread).not.toContain('plan-1@example.org');
    expect(thread).not.toContain('Here is the plan');
    const order = [...thread.matchAll(/<li class="msg d(\d+)"[\s\S]*?href="\/message-id\/([^"]+)"/g)].map((m) => [m[2], Number(m[1])]);
    expect(order).toEqual([['plan-2@example.org', 0], ['plan-3@example.org', 1], ['plan-4@example.org', 0]]);

    expect((await page('/search?q=frobnication')).text).toContain('No messages found');
    expect((await page('/lists/dev/feed.atom')).text).not.toContain('plan-1@example.org');
    expect((await page('/lists/dev/2026-11.mbox')).text).not.toContain('Here is the plan');
    expect((await page('/lists/dev/')).text).toMatch(/2026-11<\/a><\/td><td class="num">5</);
    expect((await page('/message-id/plan-2@example.org')).text).not.toContain('In reply to:');
    const byId = await page(`/search?q=${encodeURIComponent('<plan-1@example.org>')}`);
    expect(byId.status).toBe(200);
    expect(byId.text).toContain('No archived message that you can read has the Message-ID');
    expect(byId.text).not.toContain('Release plan');
  });
});

describe('threads that merge', () => {
  it('keeps an old thread URL working by redirecting to the thread it merged into', async () => {
    const list = await newList(db.pool, 'merge@lists.example.org');
    await put(list, { id: 'child@example.org', subject: 'Re: parent', date: 'Mon, 02 Nov 2026 10:00:00 +0000', inReplyTo: 'parent@example.org', references: ['parent@example.org'] });
    const oldThread = (await db.pool.query(`select thread_id from messages where message_id = 'child@example.org'`)).rows[0].thread_id;
    await put(list, { id: 'parent@example.org', subject: 'parent', date: 'Mon, 02 Nov 2026 09:00:00 +0000' });
    const newThread = (await db.pool.query(`select thread_id from messages where message_id = 'child@example.org'`)).rows[0].thread_id;
    expect(newThread).not.toBe(oldThread);
    const res = await get(`/lists/merge/thread/${oldThread}`);
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe(`/lists/merge/thread/${newThread}`);
  });

  it('redirects an old thread only in a list it was shown in: a private reply adopted by a public message is not told', async () => {
    // A private list's reply arrives before the public message it answers, which adopts it
    // (sql/0086 allows it: the adopting list is public). The private thread's old number
    // redirected in every list, the public one too, telling its readers a private list replied.
    const open = await newList(db.pool, 'merge-open@lists.example.org');
    const hush = await newList(db.pool, 'merge-hush@lists.example.org', 'private');
    await put(hush, { id: 'hush-child@example.org', subject: 'Re: open parent', date: 'Mon, 02 Nov 2026 10:00:00 +0000', inReplyTo: 'open-parent@example.org' });
    const thread = async () => (await db.pool.query(`select thread_id from messages where message_id = 'hush-child@example.org'`)).rows[0].thread_id;
    const oldThread = await thread();
    await put(open, { id: 'open-parent@example.org', subject: 'open parent', date: 'Mon, 02 Nov 2026 09:00:00 +0000' });
    const newThread = await thread();
    expect(newThread).not.toBe(oldThread);
    const answer = await get(`/lists/merge-open/thread/${oldThread}`);
    expect(answer.status).toBe(404);
    expect(await answer.text()).toContain('There is no such thread in this list.');
    // The public thread itself answers, with the private reply left out.
    const shown = await get(`/lists/merge-open/thread/${newThread}`);
    expect(shown.status).toBe(200);
    expect(await shown.text()).not.toContain('hush-child');
    // Moves record the lists they moved messages of; a merge within the private list is its own.
    await put(hush, { id: 'hush-2@example.org', subject: 'Re: hush root', date: 'Mon, 02 Nov 2026 11:00:00 +0000', inReplyTo: 'hush-root@example.org' });
    const hushOld = (await db.pool.query(`select thread_id from messages where message_id = 'hush-2@example.org'`)).rows[0].thread_id;
    await put(hush, { id: 'hush-root@example.org', subject: 'hush root', date: 'Mon, 02 Nov 2026 10:30:00 +0000' });
    expect((await db.pool.query('select lists from thread_moves where old_thread = $1', [hushOld])).rows).toEqual([{ lists: [String(hush.id)] }]);
    expect((await get(`/lists/merge-open/thread/${hushOld}`)).status).toBe(404);
  });
});

describe('Last-Modified after hiding and showing again', () => {
  /** Each page's Last-Modified, read whole (each must have one). */
  const lastModifiedOf = async (urls: string[]) => {
    const seen: Record<string, string> = {};
    for (const url of urls) {
      const res = await get(url);
      await res.arrayBuffer();
      seen[url] = res.headers.get('last-modified')!;
      expect(seen[url], url).toBeTruthy();
    }
    return seen;
  };

  it('never answers 304 to a copy that still has a hidden message or still lacks one shown again', async () => {
    const list = await newList(db.pool, 'lm@lists.example.org');
    await put(list, { id: 'lm-1@example.org', subject: 'First of two', date: 'Mon, 02 Nov 2026 10:00:00 +0000' });
    await put(list, { id: 'lm-2@example.org', subject: 'Second of two', date: 'Mon, 02 Nov 2026 11:00:00 +0000' });
    // HTTP dates have whole seconds: every step below happens minutes apart, as far as they can tell.
    await db.pool.query(`update messages set received_at = received_at - interval '1 hour'`);
    await db.pool.query(`update list_messages set hidden_at = hidden_at - interval '1 hour', visibility_changed_at = visibility_changed_at - interval '1 hour'`);
    await db.pool.query(`update archive_list_changes set changed_at = changed_at - interval '1 hour'`);
    const urls = ['/', '/lists/lm/', '/lists/lm/2026-11/', '/lists/lm/2026-11.mbox', '/lists/lm/feed.atom', '/message-id/lm-1@example.org'];
    const lastModified = () => lastModifiedOf(urls);
    const changedSince = async (seen: Record<string, string>, shows: boolean) => {
      for (const url of urls) {
        const res = await get(url, { 'if-modified-since': seen[url] });
        expect(res.status, url).toBe(200);
        if (url.startsWith('/lists/lm/2026-11')) expect((await res.text()).includes('Second of two'), url).toBe(shows);
      }
    };

    const before = await lastModified();
    await hideMessage(db.pool, list.id, 'lm-2@example.org', 'spam', 'mod@example.org');
    await changedSince(before, false);

    await db.pool.query(`update list_messages set hidden_at = hidden_at - interval '10 minutes', visibility_changed_at = visibility_changed_at - interval '10 minutes'
                          where message_id = (select id from messages where message_id = 'lm-2@example.org')`);
    const whileHidden = await lastModified();
    const rawHidden = await get('/message-id/raw/lm-2@example.org');
    expect(rawHidden.status).toBe(410);
    await unhideMessage(db.pool, list.id, 'lm-2@example.org');
    await changedSince(whileHidden, true);
    const rawBack = await get('/message-id/raw/lm-2@example.org', { 'if-modified-since': rawHidden.headers.get('last-modified')! });
    expect(rawBack.status).toBe(200);
    expect(await rawBack.text()).toContain('Second of two');
  });

  it('moves forwards when an operator deletes a message with SQL, or a list is renamed', async () => {
    const list = await newList(db.pool, 'lmdel@lists.example.org', 'public', { name: 'Deletions' });
    await put(list, { id: 'lmdel-1@example.org', subject: 'Kept words', date: 'Mon, 02 Nov 2026 10:00:00 +0000' });
    await put(list, { id: 'lmdel-2@example.org', subject: 'Libellous words', date: 'Mon, 02 Nov 2026 11:00:00 +0000' });
    await put(list, { id: 'lmdel-3@example.org', subject: 'Newest words', date: 'Mon, 02 Nov 2026 12:00:00 +0000' });
    // HTTP dates have whole seconds: each step below happens an hour or minutes after the last.
    const aged = async () => {
      await db.pool.query(`update messages set received_at = received_at - interval '1 hour'`);
      await db.pool.query(`update list_messages set visibility_changed_at = visibility_changed_at - interval '1 hour' where visibility_changed_at is not null`);
      await db.pool.query(`update archive_list_changes set changed_at = changed_at - interval '1 hour'`);
    };
    await aged();
    const urls = ['/', '/lists/lmdel/', '/lists/lmdel/2026-11/', '/lists/lmdel/2026-11.mbox', '/lists/lmdel/feed.atom', '/message-id/lmdel-1@example.org'];
    const lastModified = () => lastModifiedOf(urls);
    const changedSince = async (seen: Record<string, string>, lacks: string) => {
      for (const url of urls) {
        const res = await get(url, { 'if-modified-since': seen[url] });
        expect(res.status, url).toBe(200);
        if (url !== '/') expect(await res.text(), url).not.toContain(lacks);
      }
    };

    // Not a product operation, but an operator may remove a message for good so: the middle one,
    // then the newest from the list alone (the list's newest arrival goes back in time).
    const before = await lastModified();
    await db.pool.query(`delete from messages where message_id = 'lmdel-2@example.org'`);
    await changedSince(before, 'Libellous words');
    await aged();
    const second = await lastModified();
    await db.pool.query(`delete from list_messages where list_id = $1 and message_id = (select id from messages where message_id = 'lmdel-3@example.org')`, [list.id]);
    await changedSince(second, 'Newest words');

    // A list's name is on all its pages, and on /.
    await aged();
    const third = await lastModified();
    await db.pool.query(`update lists set name = 'Removals' where id = $1`, [list.id]);
    await changedSince(third, 'Deletions');
  });

  it('answers 410 with the reason for an attachment of a hidden message', async () => {
    expect((await get('/message-id/attachment/attachments@example.net/3/dot.png')).status).toBe(200);
    await hideMessage(db.pool, dev.id, 'attachments@example.net', 'legal: a takedown', 'mod@example.org');
    const res = await page('/message-id/attachment/attachments@example.net/3/dot.png');
    expect(res.status).toBe(410);
    expect(res.text).toContain('legal: a takedown');
  });
});

describe('a thread of 300 messages', () => {
  let big: ListRow;
  let threadId: number;
  const idOf = new Map<number, string>(); // row id -> Message-ID
  const { parent, depth } = bigThreadShape();
  const k = (msgid: string) => Number(/^big-(\d+)@/.exec(msgid)![1]);

  beforeAll(async () => {
    big = await newList(db.pool, 'big@lists.example.org', 'public', { name: 'Big' });
    await seedBigThread(db.pool, big);
    const { rows } = await db.pool.query<{ id: number; message_id: string; thread_id: number }>(`select id, message_id, thread_id from messages where message_id like 'big-%'`);
    for (const r of rows) idOf.set(Number(r.id), r.message_id);
    threadId = rows[0].thread_id;
    expect(new Set(rows.map((r) => r.thread_id)).size).toBe(1);
  }, 60_000);

  const outlineOf = (html: string) => [...html.matchAll(/<li class="o i(\d+)[^"]*" id="o(\d+)">(?:<span class="depth"[^>]*>(\d+)<\/span> )?<a href="([^"]*)">([\s\S]*?)<\/a>/g)]
    .map((m) => ({ indent: Number(m[1]), id: Number(m[2]), shownDepth: m[3] ? Number(m[3]) : null, href: m[4], text: m[5] }));
  const bodiesOf = (html: string) => [...html.matchAll(/<li class="msg d\d+" id="m(\d+)">\s*<div class="msg-head"><a class="subject" href="\/message-id\/([^"]+)">[\s\S]*?<div class="small msg-place">(?:in reply to <a class="in-reply-to" href="([^"]*)">)?/g)]
    .map((m) => ({ id: Number(m[1]), msgid: decodeURIComponent(m[2]), replyHref: m[3] ?? null }));

  it('opens with an outline listing every message once, at its depth, with deep replies numbered rather than indented', async () => {
    const { status, text } = await page(`/lists/big/thread/${threadId}`);
    expect(status).toBe(200);
    expect(text.indexOf('id="outline-title"')).toBeLessThan(text.indexOf('<ol class="tree">'));
    const outline = outlineOf(text);
    expect(outline).toHaveLength(BIG);
    const msgids = outline.map((o) => idOf.get(o.id)!);
    expect(new Set(msgids).size).toBe(BIG);
    // Reading order: a reply after its parent.
    const place = new Map(msgids.map((m, i) => [k(m), i]));
    for (let n = 1; n < BIG; n++) expect(place.get(n)!).toBeGreaterThan(place.get(parent[n])!);
    for (const o of outline) {
      const n = k(idOf.get(o.id)!);
      expect(o.indent, `indent of ${n}`).toBe(Math.min(depth[n], 8));
      expect(o.shownDepth, `depth of ${n}`).toBe(depth[n] > 8 ? depth[n] : null);
      expect(o.text).toContain(`Person ${n % 17}`);
    }
    expect(Math.max(...depth)).toBeGreaterThan(12);
    // Subjects where they change: the first message's and the renamed branch's, not every "Re:".
    expect(outline.filter((o) => o.text.includes('o-subject')).map((o) => k(idOf.get(o.id)!))).toEqual([0, 100]);
  });

  it('shows 50 bodies a page, and every outline link leads to its message on the page that holds it', async () => {
    const first = await page(`/lists/big/thread/${threadId}`);
    const outline = outlineOf(first.text);
    const seen = new Set<number>();
    for (let p = 1; p <= 6; p++) {
      const { status, text } = await page(`/lists/big/thread/${threadId}${p > 1 ? `?page=${p}` : ''}`);
      expect(status).toBe(200);
      const bodies = bodiesOf(text);
      expect(bodies, `page ${p}`).toHaveLength(50);
      for (const b of bodies) {
        expect(idOf.get(b.id)).toBe(b.msgid);
        expect(seen.has(b.id)).toBe(false);
        seen.add(b.id);
        expect(text).toContain(`Message number ${k(b.msgid)} of the long discussion.`);
        // The outline on this page links to it as an anchor on this very page.
        expect(outlineOf(text).find((o) => o.id === b.id)!.href).toBe(`#m${b.id}`);
      }
      // The outline of page 1 links here for these messages.
      for (const b of bodies) expect(outline.find((o) => o.id === b.id)!.href).toBe(p === 1 ? `#m${b.id}` : `/lists/big/thread/${threadId}?page=${p}#m${b.id}`);
      if (p < 6) expect(text).toContain(`href="/lists/big/thread/${threadId}?page=${p + 1}"`);
    }
    expect(seen.size).toBe(BIG);
    expect((await page(`/lists/big/thread/${threadId}?page=7`)).status).toBe(404);
  });

  it('marks each reply "in reply to" its parent, linked to the parent\'s anchor', async () => {
    let replies = 0;
    for (let p = 1; p <= 6; p++) {
      const text = (await page(`/lists/big/thread/${threadId}?page=${p}`)).text;
      const here = new Set(bodiesOf(text).map((b) => b.id));
      for (const b of bodiesOf(text)) {
        const n = k(b.msgid);
        if (n === 0) {
          expect(b.replyHref).toBeNull();
          continue;
        }
        replies++;
        const m = /^(?:\/lists\/big\/thread\/\d+(?:\?page=(\d+))?)?#m(\d+)$/.exec(b.replyHref!);
        expect(m, b.replyHref!).not.toBeNull();
        const parentRow = Number(m![2]);
        expect(idOf.get(parentRow), `parent of ${n}`).toBe(bigId(parent[n]));
        // Same page: a bare anchor; another page: that page's URL with the anchor.
        if (here.has(parentRow)) expect(b.replyHref).toBe(`#m${parentRow}`);
        else {
          const target = await page(`/lists/big/thread/${threadId}${m![1] ? `?page=${m![1]}` : ''}`);
          expect(bodiesOf(target.text).map((x) => x.id)).toContain(parentRow);
        }
      }
    }
    expect(replies).toBe(BIG - 1);
  });

  it('keeps the page cache and conditional GETs working on every page', async () => {
    const url = `/lists/big/thread/${threadId}?page=2`;
    const a = await get(url);
    const body = await a.text();
    const etag = a.headers.get('etag')!;
    expect(etag).toBeTruthy();
    expect(a.headers.get('cache-control')).toBe('public, max-age=60');
    const again = await get(`${url}&utm_source=x`);
    expect(again.headers.get('etag')).toBe(etag);
    expect(await again.text()).toBe(body);
    const cond = await get(url, { 'if-none-match': etag });
    expect(cond.status).toBe(304);
    const since = await get(url, { 'if-modified-since': a.headers.get('last-modified')! });
    expect(since.status).toBe(304);
    // Another page is another entry.
    expect((await get(`/lists/big/thread/${threadId}?page=3`, { 'if-none-match': etag })).status).toBe(200);
  });

  it('drops a message hidden after its pages were seen from every page at once, each page still in the one order', async () => {
    const pages = async () => {
      const texts: string[] = [];
      for (let p = 1; p <= 6; p++) texts.push((await page(`/lists/big/thread/${threadId}${p > 1 ? `?page=${p}` : ''}`)).text);
      return texts;
    };
    const before = await pages();
    await hideMessage(db.pool, big.id, bigId(120), 'spam', 'mod@example.org');
    const after = await pages();
    const hiddenRow = [...idOf].find(([, m]) => m === bigId(120))![0];
    const order = outlineOf(before[0]).map((o) => o.id).filter((id) => id !== hiddenRow);
    for (const [i, text] of after.entries()) {
      expect(text).not.toContain('Message number 120 of');
      expect(outlineOf(text).map((o) => o.id), `outline of page ${i + 1}`).toEqual(order);
      // The bodies of each page are the outline's at that page's places, one fewer from its page on.
      expect(bodiesOf(text).map((b) => b.id), `bodies of page ${i + 1}`).toEqual(order.slice(i * 50, i * 50 + 50));
    }
    await unhideMessage(db.pool, big.id, bigId(120));
    expect(await pages()).toEqual(before);
  });
});

describe('no dead ends for members-only archives', () => {
  const PASSWORD = 'correct horse battery staple';

  beforeAll(async () => {
    await upsertAccount(db.pool, 'reader@example.org', { passwordHash: await hashPassword(PASSWORD) });
    await db.pool.query(`insert into members (list_id, email, status) values ($1, 'reader@example.org', 'active'), ($2, 'pending@example.org', 'pending')`, [staff.id, dev.id]);
  });

  it('answers 403 with a login link that returns to the page, and a subscribe link', async () => {
    const threadId = (await db.pool.query(`select thread_id from messages where message_id = 'staff-1@example.org'`)).rows[0].thread_id;
    for (const path of ['/lists/staff/', `/lists/staff/thread/${threadId}?page=1`, '/lists/staff/2026-11/']) {
      const { status, text } = await page(path);
      expect(status, path).toBe(403);
      expect(text).toContain(`<a class="login" href="/login?next=${encodeURIComponent(path)}">Log in</a>`);
      expect(text).toContain(`<a class="subscribe" href="${urls.subscribeUrl('staff@lists.example.org')}">Subscribe to Staff</a>`);
      expect(text).not.toContain('confidential numbers');
    }
    expect((await page(urls.subscribeUrl('staff@lists.example.org'))).status).toBe(200);
  });

  it('logs in from that link and comes back to the page', async () => {
    const c = new WebClient(web.url);
    const login = await c.get('/login?next=%2Flists%2Fstaff%2F');
    expect(login.text).toContain('name="next" value="/lists/staff/"');
    const r = await c.post('/login', { email: 'reader@example.org', password: PASSWORD, next: '/lists/staff/' });
    expect(r.status).toBe(303);
    expect(r.location).toBe('/lists/staff/');
    const back = await c.get(r.location!);
    expect(back.status).toBe(200);
    expect(back.text).toContain('Salary review');
  });

  it('refuses to return anywhere off the site', async () => {
    for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example', '/\t/evil.example', '/\\/evil.example', 'javascript:alert(1)', ' //evil.example']) {
      const c = new WebClient(web.url);
      const r = await c.post('/login', { email: 'reader@example.org', password: PASSWORD, next });
      expect(r.status, JSON.stringify(next)).toBe(303);
      expect(r.location, JSON.stringify(next)).toBe('/account');
      // Already logged in, /login?next= sends straight on: to the same safe place.
      const again = await c.get(`/login?next=${encodeURIComponent(next)}`);
      expect(again.location, JSON.stringify(next)).toBe('/account');
    }
  });

  it('offers a logged-in non-member the subscribe link, and names no list on a permalink', async () => {
    const stranger = await loggedIn(db, web.url, 'stranger@example.org');
    const r = await stranger.get('/lists/staff/');
    expect(r.status).toBe(403);
    expect(r.text).toContain('stranger@example.org is not one');
    expect(r.text).not.toContain('class="login"');
    expect(r.text).toContain(`href="${urls.subscribeUrl('staff@lists.example.org')}"`);
    const anon = await page('/message-id/staff-1@example.org');
    expect(anon.status).toBe(403);
    expect(anon.text).toContain(`<a class="login" href="/login?next=${encodeURIComponent('/message-id/staff-1@example.org')}">`);
    expect(anon.text).not.toContain('staff@lists.example.org');
    expect(anon.text).not.toContain('Salary review');
  });

  it('shows a member "you are subscribed" instead of the subscribe form, and others the form', async () => {
    const member = await loggedIn(db, web.url, 'reader@example.org');
    const mine = await member.get('/lists/staff/');
    expect(mine.status).toBe(200);
    expect(mine.text).toContain('You are subscribed as <strong>reader@example.org</strong>');
    expect(mine.text).toContain('<a href="/account">Manage or unsubscribe on your account page</a>');
    expect(mine.text).not.toContain('<form class="subscribe');
    // Not a member of dev: the form.
    const other = await member.get('/lists/dev/');
    expect(other.text).toContain('<form class="subscribe');
    expect(other.text).not.toContain('You are subscribed');
    // Asked and not confirmed yet: told so, not offered the form again.
    const pending = await (await loggedIn(db, web.url, 'pending@example.org')).get('/lists/dev/');
    expect(pending.text).toContain('the confirmation message we sent is waiting for you');
    expect(pending.text).not.toContain('<form class="subscribe');
    // Unsubscribed: the form again.
    const gone = await (await loggedIn(db, web.url, 'gone@example.org')).get('/lists/staff/');
    expect(gone.status).toBe(403);
  });
});

/** Enough of XML well-formedness for a feed: balanced tags, known entities, legal characters. */
function wellFormed(xml: string): boolean {
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(xml)) return false;
  if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(xml)) return false;
  const stack: string[] = [];
  for (const m of xml.replace(/<\?xml[^>]*\?>/, '').matchAll(/<(\/?)([A-Za-z][\w:.-]*)([^>]*?)(\/?)>/g)) {
    if (m[1]) {
      if (stack.pop() !== m[2]) return false;
    } else if (!m[4]) stack.push(m[2]);
  }
  return stack.length === 0;
}
