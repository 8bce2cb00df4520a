import http from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createList, updateDeliverySettings, type ListRow } from '../src/db/lists.ts';
import { claimHeldNotice } from '../src/db/held.ts';
import { nextDigestIssue } from '../src/db/digests.ts';
import { archiveMessage, hideMessage, unhideMessage } from '../src/db/messages.ts';
import { importBatch } from '../src/db/archive-import.ts';
import { parse } from '../src/mail/parse.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
let secret: ListRow;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  secret = await createList(db.pool, { address: 'secret@lists.example.org', name: 'Secret', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'private', owners: [] });
  for (const [list, id, subject] of [[dev, 'first@example.org', 'First words'], [secret, 'hush@example.org', 'Hush']] as const) {
    const raw = Buffer.from(message({ id, subject }));
    await archiveMessage(db.pool, list.id, raw, await parse(raw));
  }
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

/** The page cache's hit and miss counters, from /metrics. */
async function counts(): Promise<{ hit: number; miss: number }> {
  const text = await (await fetch(`${web.url}/metrics`)).text();
  const n = (result: string) => Number(new RegExp(`listkeeper_page_cache_requests_total\\{result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { hit: n('hit'), miss: n('miss') };
}

it('serves a public page again from memory, with the same body, validators and headers', async () => {
  // The messages came after the server read the change counter: the first page kept is tagged
  // older than them, so the first repeat view renders it again and keeps that one.
  await (await fetch(`${web.url}/message-id/first@example.org`)).text();
  const before = await counts();
  const a = await fetch(`${web.url}/message-id/first@example.org`);
  const b = await fetch(`${web.url}/message-id/first@example.org`);
  expect(a.status).toBe(200);
  expect(b.status).toBe(200);
  const body = await b.text();
  expect(body).toContain('First words');
  expect(body).toBe(await a.text());
  for (const h of ['etag', 'last-modified', 'cache-control', 'content-type']) expect(b.headers.get(h)).toBe(a.headers.get(h));
  expect(b.headers.get('cache-control')).toMatch(/^public/);
  const after = await counts();
  expect(after.miss - before.miss).toBe(1);
  expect(after.hit - before.hit).toBe(1);

  // A conditional request answered from the cache still gets its 304.
  const c = await fetch(`${web.url}/message-id/first@example.org`, { headers: { 'if-none-match': a.headers.get('etag')! } });
  expect(c.status).toBe(304);
});

it('never serves a page older than the archive, whichever process changed it', async () => {
  const page = () => fetch(`${web.url}/message-id/first@example.org`);
  expect((await page()).status).toBe(200);
  expect((await page()).status).toBe(200);
  // Written straight to the database, as the CLI or another web server would; the very next
  // request must see it, many times over (a NOTIFY racing the request once failed this).
  for (let i = 0; i < 20; i++) {
    await hideMessage(db.pool, dev.id, 'first@example.org', 'privacy', 'tester');
    expect((await page()).status).toBe(410);
    await unhideMessage(db.pool, dev.id, 'first@example.org');
    expect((await page()).status).toBe(200);
    expect((await page()).status).toBe(200);
  }

  // A new message changes the list's pages (and the previous message's "next" link).
  const month = async () => (await (await fetch(`${web.url}/lists/dev`)).text());
  expect(await month()).not.toContain('Second words');
  expect(await month()).not.toContain('Second words');
  const raw = Buffer.from(message({ id: 'second@example.org', subject: 'Second words' }));
  await archiveMessage(db.pool, dev.id, raw, await parse(raw));
  expect(await month()).toContain('Second words');
});

it('keeps no page rendered while a change is counted but not yet committed', async () => {
  const page = () => fetch(`${web.url}/message-id/first@example.org`);
  expect((await page()).status).toBe(200);
  expect((await page()).status).toBe(200);
  const writer = await db.pool.connect();
  try {
    await writer.query('begin');
    await hideMessage(writer, dev.id, 'first@example.org', 'privacy', 'tester');
    // The counter has moved, the change is not visible: readers get the page as committed...
    for (let i = 0; i < 3; i++) expect((await page()).status).toBe(200);
    await writer.query('commit');
  } finally {
    writer.release();
  }
  // ...and none of those renders is served once the change is visible.
  expect((await page()).status).toBe(410);
  await unhideMessage(db.pool, dev.id, 'first@example.org');
  expect((await page()).status).toBe(200);
});

it('serves many readers of a kept page at once with one counter read per round, all current', async () => {
  const url = `${web.url}/message-id/first@example.org`;
  expect((await fetch(url)).status).toBe(200);
  const before = await counts();
  const statuses = await Promise.all(Array.from({ length: 30 }, async () => (await fetch(url)).status));
  expect(statuses).toEqual(Array(30).fill(200));
  const after = await counts();
  expect(after.hit - before.hit).toBe(30);
  await hideMessage(db.pool, dev.id, 'first@example.org', 'privacy', 'tester');
  const hidden = await Promise.all(Array.from({ length: 30 }, async () => (await fetch(url)).status));
  expect(hidden).toEqual(Array(30).fill(410));
  await unhideMessage(db.pool, dev.id, 'first@example.org');
});

it('serves a page asked for with unknown query parameters from the same entry, whatever their order', async () => {
  const base = `${web.url}/message-id/first@example.org`;
  // Warm the entry (the first render after a change is tagged with the older counter).
  for (let i = 0; i < 2; i++) await (await fetch(base)).text();
  const before = await counts();
  const kept = await (await fetch(base)).text();
  for (const extra of ['?utm_source=feed', '?x=1&y=2', `?nocache=${Date.now()}`, '?utm_source=a&utm_medium=b']) {
    const res = await fetch(`${base}${extra}`);
    expect(res.status, extra).toBe(200);
    expect(await res.text(), extra).toBe(kept);
  }
  const after = await counts();
  expect(after.hit - before.hit).toBe(5);
  expect(after.miss - before.miss).toBe(0);

  // Known parameters still make their own page, in whatever order they come.
  const html = `${base}?view=text&list=dev`;
  for (let i = 0; i < 2; i++) await (await fetch(html)).text();
  const mid = await counts();
  expect((await fetch(`${base}?list=dev&junk=1&view=text`)).status).toBe(200);
  expect((await counts()).hit - mid.hit).toBe(1);
});

it('never lets a parameter a visitor added into the links of a kept page', async () => {
  for (let i = 0; i < 30; i++) {
    const raw = Buffer.from(message({ id: `many-${i}@example.org`, subject: `Many words ${i}` }));
    await archiveMessage(db.pool, dev.id, raw, await parse(raw));
  }
  const page = await (await fetch(`${web.url}/search?q=many&evil=%22onmouseover&page=1`)).text();
  expect(page).toContain('page=2');
  expect(page).not.toContain('evil');
  const again = await (await fetch(`${web.url}/search?q=many`)).text();
  expect(again).not.toContain('evil');
});

it('keeps its pages through writes to a list that no page shows, and drops them at once for one a page shows', async () => {
  const url = `${web.url}/message-id/first@example.org`;
  for (let i = 0; i < 2; i++) expect((await fetch(url)).status).toBe(200);
  // The owners' held-post notice, a digest's issue, a sending option, a name written unchanged:
  // each emptied every process's cache, though none is on any page.
  const before = await counts();
  expect(await claimHeldNotice(db.pool, dev.id)).toBe(true);
  await nextDigestIssue(db.pool, dev.id);
  await updateDeliverySettings(db.pool, dev.id, { footer: 'Unsubscribe: see the headers.', max_message_size: 1000000 });
  await db.pool.query('update lists set name = name, archive = archive where id = $1', [dev.id]);
  const page = await fetch(url);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('>Dev</a>');
  const after = await counts();
  expect(after.hit - before.hit).toBe(1);
  expect(after.miss - before.miss).toBe(0);

  // The list's name is on the page: the next request renders it again.
  await db.pool.query(`update lists set name = 'Developers' where id = $1`, [dev.id]);
  const renamed = await fetch(url);
  expect(await renamed.text()).toContain('>Developers</a>');
  expect((await counts()).miss - after.miss).toBe(1);
  await db.pool.query(`update lists set name = 'Dev' where id = $1`, [dev.id]);
  expect(await (await fetch(url)).text()).toContain('>Dev</a>');
});

it('never keeps what is not public: restricted archives, logged-in readers, errors', async () => {
  const before = await counts();
  for (let i = 0; i < 2; i++) expect((await fetch(`${web.url}/message-id/hush@example.org`)).status).toBe(404);
  for (let i = 0; i < 2; i++) expect((await fetch(`${web.url}/message-id/nothing@example.org`)).status).toBe(404);
  const after = await counts();
  expect(after.hit - before.hit).toBe(0);

  // A list turned private is gone from the cache at once (lists notify too).
  expect((await fetch(`${web.url}/message-id/first@example.org`)).status).toBe(200);
  expect((await fetch(`${web.url}/message-id/first@example.org`)).status).toBe(200);
  await db.pool.query(`update lists set archive = 'private' where id = $1`, [dev.id]);
  expect((await fetch(`${web.url}/message-id/first@example.org`)).status).toBe(404);
});

it('keeps apart the raw messages that share a Message-ID, by their ?list=', async () => {
  const lists = [];
  for (const name of ['alpha', 'beta']) {
    lists.push(await createList(db.pool, { address: `${name}@lists.example.org`, name, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] }));
  }
  for (const list of lists) {
    // Imported: other content under a known Message-ID is kept as a message of its own.
    const raw = Buffer.from(message({ id: 'shared@example.org', subject: 'Shared', body: `Written to ${list.name}.` }));
    await importBatch(db.pool, list.id, [{ raw, message: await parse(raw) }]);
  }
  const raw = async (key: string) => (await (await fetch(`${web.url}/message-id/raw/shared@example.org?list=${key}`)).text());
  // Each asked twice: the second time from the cache, when it keeps the page.
  for (let round = 0; round < 2; round++) {
    expect(await raw('beta')).toContain('Written to beta.');
    expect(await raw('alpha')).toContain('Written to alpha.');
  }
});

it('keys a page by the query values the page itself read, even past a thousand parameters', async () => {
  const list = await createList(db.pool, { address: 'gamma@lists.example.org', name: 'Gamma', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  const raw = Buffer.from(message({ id: 'poison@example.org', subject: 'Marmalade words' }));
  await archiveMessage(db.pool, list.id, raw, await parse(raw));
  // Express reads the first 1,000 parameters of a query string only: a request whose `q` comes
  // after 1,000 others renders the empty search form. It must not be kept as the page of `q`.
  const junk = Array.from({ length: 1000 }, (_, i) => `j${i}=1`).join('&');
  for (let i = 0; i < 3; i++) expect((await fetch(`${web.url}/search?${junk}&q=marmalade`)).status).toBe(200);
  const page = await (await fetch(`${web.url}/search?q=marmalade`)).text();
  expect(page).toContain('Marmalade words');
});

it('counts what a kept page costs by its key too: long URLs of small pages stay within PAGE_CACHE_MB', async () => {
  const small = await startWeb(db, { PAGE_CACHE_MB: '1' });
  try {
    const list = await createList(db.pool, { address: 'delta@lists.example.org', name: 'Delta', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    const raw = Buffer.from(message({ id: 'tiny@example.org', subject: 'Tiny', body: 'x' }));
    await archiveMessage(db.pool, list.id, raw, await parse(raw));
    const url = `${small.url}/message-id/raw/tiny@example.org`;
    for (let i = 0; i < 2; i++) expect((await fetch(url)).status).toBe(200);
    // A few hundred bytes of page under 8 KB of key each: counted by their bodies alone, a megabyte
    // held thousands of such keys (any cache size was many times over in memory), and kept this one.
    const padding = 'p'.repeat(8000);
    for (let i = 0; i < 400; i++) {
      const res = await fetch(`${url}?list=${i}${padding}`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const before = await counts();
    expect((await fetch(url)).status).toBe(200);
    const after = await counts();
    expect(after.miss - before.miss).toBe(1);
    expect(after.hit - before.hit).toBe(0);
  } finally {
    await small.stop();
  }
});

it('keeps a page first asked for with HEAD whole: the GETs after it get its body, a GET with a body too', async () => {
  const list = await createList(db.pool, { address: 'epsilon@lists.example.org', name: 'Epsilon', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  const raw = Buffer.from(message({ id: 'head-first@example.org', subject: 'Headed', body: 'The body a HEAD does not get.' }));
  await archiveMessage(db.pool, list.id, raw, await parse(raw));
  for (const path of ['/message-id/head-first@example.org', '/message-id/raw/head-first@example.org', '/lists/epsilon/feed.atom']) {
    for (let i = 0; i < 2; i++) {
      const head = await fetch(`${web.url}${path}`, { method: 'HEAD' });
      expect(head.status, path).toBe(200);
      expect(await head.text()).toBe('');
    }
    const before = await counts();
    const got = await fetch(`${web.url}${path}`);
    expect(Number(got.headers.get('content-length')), path).toBeGreaterThan(0);
    expect(await got.text(), path).toContain('The body a HEAD does not get.');
    expect((await counts()).hit - before.hit, path).toBe(1);
    // A body on a GET asks for nothing else: the page is the kept one.
    const bodied = await new Promise<string>((resolve, reject) => {
      const req = http.request(`${web.url}${path}?list=epsilon`, { method: 'GET', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '11' } }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end('list=nobody');
    });
    expect(bodied, path).toContain('The body a HEAD does not get.');
  }
});
