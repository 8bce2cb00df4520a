/*
 * Purges for a cache in front of the archive: what the triggers of sql/0055 queue for each change
 * (exactly the keys of the pages it changes), the same keys on the pages themselves, and the
 * purger delivering the queue to an HTTP endpoint (a local stand-in here; test/varnish-purge.test.ts
 * runs real Varnish) through failures and timeouts.
 */

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Purger } from '../src/cache/purger.ts';
import { parseConfig } from '../src/config.ts';
import { importMbox } from '../src/core/archive-import.ts';
import { purgesFinding } from '../src/core/doctor.ts';
import { setListSettings } from '../src/core/list-settings.ts';
import { deleteList } from '../src/db/list-admin.ts';
import { createList, getListById, type ListRow } from '../src/db/lists.ts';
import { archiveMessage, hideMessage, unhideMessage } from '../src/db/messages.ts';
import { purgeQueueStats, setPurging } from '../src/db/purges.ts';
import { mboxrdEntry } from '../src/mail/mbox.ts';
import { parse } from '../src/mail/parse.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { spawnServe } from './helpers/serve-process.ts';
import { message } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

let db: TestDatabase;
let web: RunningWeb;
let dev: ListRow;
let ops: ListRow;
let secret: ListRow;

const newList = (address: string, name: string, archive: 'public' | 'private') =>
  createList(db.pool, { address, name, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive, owners: [] });

async function post(list: ListRow, id: string, date: string, headers: Record<string, string> = {}) {
  const raw = Buffer.from(message({ id, subject: `About ${id}`, date, headers }));
  await archiveMessage(db.pool, list.id, raw, await parse(raw));
  const { rows } = await db.pool.query<{ id: number; thread_id: number }>('select id::int, thread_id::int from messages where message_id = $1', [id]);
  return rows[0];
}

/** The distinct keys queued since the last call (and empties the queue). */
async function queued(): Promise<string[]> {
  const { rows } = await db.pool.query<{ key: string }>('delete from purges returning key');
  return [...new Set(rows.map((r) => r.key))].sort();
}

const sorted = (keys: string[]) => [...new Set(keys)].sort();

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  dev = await newList('dev@lists.example.org', 'Dev', 'public');
  ops = await newList('ops@lists.example.org', 'Ops', 'public');
  secret = await newList('secret@lists.example.org', 'Secret', 'private');
  // As a purger with PURGE_URL leaves it (off, the triggers queue nothing: the last tests).
  await setPurging(db.pool, true);
  await queued();
});
afterAll(async () => {
  await web?.stop();
  await db?.drop();
});

let root: { id: number; thread_id: number };
let reply: { id: number; thread_id: number };
let later: { id: number; thread_id: number };

it('a new message queues its list, month, thread, message and neighbour keys, and no other list\'s', async () => {
  const unrelated = await post(ops, 'ops-1@example.org', 'Mon, 02 Nov 2026 09:00:00 +0000');
  root = await post(dev, 'root@example.org', 'Mon, 02 Nov 2026 10:00:00 +0000');
  await queued();
  reply = await post(dev, 'reply@example.org', 'Tue, 01 Dec 2026 10:00:00 +0000', { 'In-Reply-To': '<root@example.org>' });
  expect(reply.thread_id).toBe(root.thread_id);
  expect(await queued()).toEqual(sorted([
    'site', `latest-${dev.id}`, `month-${dev.id}-2026-12`,
    // the thread's first month: its page counts the thread's replies
    `month-${dev.id}-2026-11`,
    `thread-${root.thread_id}`, `message-${reply.id}`,
    // the message before it by date, whose page now links to it as "next"
    `message-${root.id}`,
  ]));
  // A message between the two (by date) changes both neighbours' links.
  later = await post(dev, 'aside@example.org', 'Wed, 18 Nov 2026 10:00:00 +0000');
  expect(await queued()).toEqual(sorted([
    'site', `latest-${dev.id}`, `month-${dev.id}-2026-11`, `thread-${later.thread_id}`,
    `message-${later.id}`, `message-${root.id}`, `message-${reply.id}`,
  ]));
  expect(unrelated.id).toBeGreaterThan(0);
});

it('a message in a private archive queues nothing: no shared cache holds its pages', async () => {
  await post(secret, 'hush@example.org', 'Mon, 02 Nov 2026 10:00:00 +0000');
  expect(await queued()).toEqual([]);
});

it('hiding and showing a message again purge its pages and those that list or link to it', async () => {
  const expected = sorted([
    'site', `latest-${dev.id}`, `month-${dev.id}-2026-12`, `month-${dev.id}-2026-11`,
    `thread-${reply.thread_id}`, `message-${reply.id}`, `message-${later.id}`,
  ]);
  expect(await hideMessage(db.pool, dev.id, 'reply@example.org', 'privacy', 'tester')).toBe(true);
  expect(await queued()).toEqual(expected);
  expect(await unhideMessage(db.pool, dev.id, 'reply@example.org')).toBe(true);
  expect(await queued()).toEqual(expected);
});

it('list settings shown on archive pages purge the whole list and the index; others purge nothing', async () => {
  await setListSettings(db.pool, await getListById(db.pool, dev.id), { footer: 'Unsubscribe: ...' }, { actor: 'tester' });
  await setListSettings(db.pool, await getListById(db.pool, dev.id), { subject_prefix: '[dev] ' }, { actor: 'tester' });
  expect(await queued()).toEqual([]);
  await setListSettings(db.pool, await getListById(db.pool, dev.id), { name: 'Developers' }, { actor: 'tester' });
  expect(await queued()).toEqual(sorted(['site', `list-${dev.id}`]));
  await setListSettings(db.pool, await getListById(db.pool, dev.id), { description: 'Talk about the code' }, { actor: 'tester' });
  expect(await queued()).toEqual(sorted(['site', `list-${dev.id}`]));
});

it('a message deleted from the archive (as retention or an admin does) purges what showed it', async () => {
  await db.pool.query('delete from messages where id = $1', [later.id]);
  expect(await queued()).toEqual(sorted([
    'site', `latest-${dev.id}`, `month-${dev.id}-2026-11`, `thread-${later.thread_id}`,
    `message-${later.id}`, `message-${root.id}`, `message-${reply.id}`,
  ]));
});

it('a list whose archive stops being public, and a deleted list, are purged whole', async () => {
  await setListSettings(db.pool, await getListById(db.pool, dev.id), { archive: 'members' }, { actor: 'tester' });
  expect(await queued()).toEqual(sorted(['site', `list-${dev.id}`]));
  const gone = await post(ops, 'ops-2@example.org', 'Mon, 02 Nov 2026 11:00:00 +0000');
  await queued();
  await deleteList(db.pool, ops.id);
  const keys = await queued();
  expect(keys).toContain('site');
  expect(keys).toContain(`list-${ops.id}`);
  expect(keys).toContain(`message-${gone.id}`);
  expect(keys.filter((k) => k.includes(String(dev.id)) && /^(list|latest|month)-/.test(k))).toEqual([]);
  // A new list with the local part of an existing one changes that list's URL key (ops -> its address).
  const other = await newList('dev@other.example.org', 'Other dev', 'public');
  expect(await queued()).toEqual(sorted(['site', `list-${dev.id}`, `list-${other.id}`]));
});

it('pages name the same keys in Surrogate-Key and xkey, from the page cache too', async () => {
  const pub = await newList('web@lists.example.org', 'Web', 'public');
  const a = await post(pub, 'w1@example.org', 'Mon, 02 Nov 2026 10:00:00 +0000');
  await post(pub, 'w2@example.org', 'Tue, 01 Dec 2026 10:00:00 +0000', { 'In-Reply-To': '<w1@example.org>' });
  const keysOf = async (path: string) => {
    const res = await fetch(`${web.url}${path}`);
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    expect(res.headers.get('xkey')).toBe(res.headers.get('surrogate-key'));
    return (res.headers.get('surrogate-key') ?? '').split(' ').sort();
  };
  for (let i = 0; i < 3; i++) {
    // The second and third requests are the in-process page cache's: the keys come with them.
    expect(await keysOf('/message-id/w1@example.org')).toEqual(sorted([`message-${a.id}`, `list-${pub.id}`, `thread-${a.thread_id}`]));
  }
  expect(await keysOf('/')).toEqual(['site']);
  expect(await keysOf('/search?q=about')).toEqual(['site']);
  expect(await keysOf('/lists/web/2026-11')).toEqual(sorted([`list-${pub.id}`, `month-${pub.id}-2026-11`]));
  expect(await keysOf('/lists/web/2026-11.mbox')).toEqual(sorted([`list-${pub.id}`, `month-${pub.id}-2026-11`]));
  expect(await keysOf(`/lists/web/thread/${a.thread_id}`)).toEqual(sorted([`list-${pub.id}`, `thread-${a.thread_id}`]));
  expect(await keysOf('/lists/web/feed.atom')).toEqual(sorted([`list-${pub.id}`, `latest-${pub.id}`]));
  // The list page, shared now that its form has no token: its recent threads' keys too.
  expect(await keysOf('/lists/web/')).toEqual(sorted([`list-${pub.id}`, `latest-${pub.id}`, `thread-${a.thread_id}`]));
  expect(await keysOf('/message-id/raw/w1@example.org')).toEqual(sorted([`message-${a.id}`, `list-${pub.id}`]));
  // Each key a page carries is one the triggers queue when what it names changes.
  await queued();
  await post(pub, 'w3@example.org', 'Wed, 02 Dec 2026 10:00:00 +0000', { 'In-Reply-To': '<w2@example.org>' });
  const keys = await queued();
  for (const k of [`thread-${a.thread_id}`, `month-${pub.id}-2026-11`, 'site', `latest-${pub.id}`]) expect(keys).toContain(k);
  expect(keys).not.toContain(`message-${a.id}`);
});

/** A purge endpoint that records requests and answers as told. */
async function standIn() {
  const requests: { method: string; keys: string; authorization?: string }[] = [];
  let mode: 'ok' | 'fail' | 'hang' = 'ok';
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method!, keys: String(req.headers['xkey-purge'] ?? ''), authorization: req.headers.authorization });
    if (mode === 'hang') return;
    res.writeHead(mode === 'ok' ? 200 : 503).end(mode === 'ok' ? 'purged' : 'backend unhappy');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://purger:s3cret@127.0.0.1:${port}/`,
    requests,
    set(m: typeof mode) {
      mode = m;
    },
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await what();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

it('a different message under a Message-ID already archived purges the permalink page of the one before', async () => {
  const [one, two] = [await newList('one@lists.example.org', 'One', 'public'), await newList('two@lists.example.org', 'Two', 'public')];
  const first = await post(one, 'shared-id@example.org', 'Thu, 03 Dec 2026 10:00:00 +0000');
  await queued();
  // Another message (another date, so other bytes) under the same id, in another public list.
  const raw = Buffer.from(message({ id: 'shared-id@example.org', subject: 'Another', date: 'Fri, 04 Dec 2026 10:00:00 +0000' }));
  await archiveMessage(db.pool, two.id, raw, await parse(raw));
  const { rows } = await db.pool.query<{ id: number }>('select id::int from messages where message_id = $1 and id <> $2', ['shared-id@example.org', first.id]);
  expect(rows).toHaveLength(1);
  // /message-id/shared-id@example.org, kept under message-FIRST, is now a choice of two.
  expect(await queued()).toEqual(expect.arrayContaining([`message-${first.id}`, `message-${rows[0].id}`]));
});

it('the purger sends each key once per PURGE, keeps failed and timed-out purges queued, and retries them with backoff', async () => {
  const endpoint = await standIn();
  const cfg = parseConfig({ PURGE_URL: endpoint.url, PURGE_TIMEOUT: '0.5' }).purge;
  const purger = new Purger(db.pool, db.url, cfg, { pollMs: 100 });
  const pub = await newList('purged@lists.example.org', 'Purged', 'public');
  await queued();
  try {
    // Two posts queue 'site' twice: one request carries it once.
    await post(pub, 'p1@example.org', 'Mon, 02 Nov 2026 10:00:00 +0000');
    await post(pub, 'p2@example.org', 'Mon, 02 Nov 2026 11:00:00 +0000');
    const want = (await db.pool.query<{ key: string }>('select distinct key from purges order by key')).rows.map((r) => r.key);
    expect((await db.pool.query('select count(*)::int as n from purges where key = $1', ['site'])).rows[0].n).toBe(2);
    await purger.start();
    await until(async () => endpoint.requests.length, (n) => n > 0);
    await until(async () => (await purgeQueueStats(db.pool)).rows, (n) => n === 0);
    expect(endpoint.requests).toHaveLength(1);
    expect(endpoint.requests[0].method).toBe('PURGE');
    expect(endpoint.requests[0].keys.split(' ')).toEqual(want);
    // The password in PURGE_URL goes as Basic authentication.
    expect(endpoint.requests[0].authorization).toBe(`Basic ${Buffer.from('purger:s3cret').toString('base64')}`);

    // The endpoint fails: the purge stays queued with why, and comes back after its backoff.
    endpoint.set('fail');
    await hideMessage(db.pool, pub.id, 'p1@example.org', 'spam', 'tester');
    const failed = await until(() => purgeQueueStats(db.pool), (s) => s.retrying > 0);
    expect(failed.keys).toBeGreaterThan(0);
    expect(failed.oldest?.attempts).toBe(1);
    expect(failed.oldest?.last_error).toContain('answered 503: backend unhappy');
    expect(failed.oldest?.last_error).not.toContain('s3cret');
    expect(failed.oldest!.run_at.getTime()).toBeGreaterThan(Date.now());
    const metrics = await (await fetch(`${web.url}/metrics`)).text();
    expect(metrics).toMatch(/listkeeper_purge_keys_total\{result="failed"\} [1-9]/);
    expect(metrics).toMatch(new RegExp(`listkeeper_purge_queue_keys ${failed.keys}\\b`));

    // It hangs: the request is cut at PURGE_TIMEOUT and the purge is kept.
    endpoint.set('hang');
    await db.pool.query('update purges set run_at = now()');
    const hung = await until(() => purgeQueueStats(db.pool), (s) => s.oldest?.attempts === 2, 10_000);
    expect(hung.oldest?.last_error).toMatch(/did not answer within 0.5 s/);

    // Back: the same keys are delivered, and the queue empties.
    endpoint.set('ok');
    const before = endpoint.requests.length;
    await db.pool.query('update purges set run_at = now()');
    await until(async () => (await purgeQueueStats(db.pool)).rows, (n) => n === 0);
    const last = endpoint.requests.slice(before).filter((r) => r.keys.includes(`message-`));
    expect(last.at(-1)?.keys.split(' ')).toContain('site');
    expect((await (await fetch(`${web.url}/metrics`)).text())).toMatch(/listkeeper_purge_keys_total\{result="sent"\} [1-9]/);
  } finally {
    await purger.stop();
    await endpoint.stop();
  }
});

it('stopping cuts a purge request in flight and gives its rows back untried', async () => {
  const endpoint = await standIn();
  endpoint.set('hang');
  const pub = await newList('stopping@lists.example.org', 'Stopping', 'public');
  await queued();
  await post(pub, 'st1@example.org', 'Mon, 02 Nov 2026 10:00:00 +0000');
  const purger = new Purger(db.pool, db.url, parseConfig({ PURGE_URL: endpoint.url, PURGE_TIMEOUT: '60' }).purge, { pollMs: 100 });
  try {
    await purger.start();
    await until(async () => endpoint.requests.length, (n) => n > 0);
    const t = Date.now();
    await purger.stop();
    expect(Date.now() - t).toBeLessThan(5_000);
    const { rows } = await db.pool.query<{ n: number; locked: number; tried: number }>(
      'select count(*)::int as n, count(locked_by)::int as locked, count(*) filter (where attempts > 0)::int as tried from purges');
    expect(rows[0]).toEqual({ n: 5, locked: 0, tried: 0 });
  } finally {
    await purger.stop();
    await endpoint.stop();
    await queued();
  }
});

it('many messages at once (an import) purge their lists whole instead of each message\'s pages', async () => {
  const bulk = await newList('bulk@lists.example.org', 'Bulk', 'public');
  await queued();
  const file = path.join(os.tmpdir(), `lk-purge-bulk-${process.pid}.mbox`);
  const raws = Array.from({ length: 120 }, (_, i) => Buffer.from(message({
    from: `a${i % 7}@example.org`, to: bulk.address, subject: `bulk ${i}`, id: `bulk${i}@example.org`,
    date: new Date(Date.UTC(2026, 0, 1 + (i % 60))).toUTCString(), headers: i > 0 ? { 'In-Reply-To': `<bulk${i - 1}@example.org>` } : {},
  })));
  fs.writeFileSync(file, Buffer.concat(raws.map((r) => mboxrdEntry(r, 'someone@example.org', new Date('2026-01-01T00:00:00Z')))));
  try {
    expect((await importMbox(db, bulk, file, { batchSize: 60 })).added).toBe(120);
  } finally {
    fs.rmSync(file, { force: true });
  }
  expect(await queued()).toEqual(sorted(['site', `list-${bulk.id}`]));
});

it('without PURGE_URL the worker turns the triggers\' queuing off and drops what they queued', async () => {
  const pub = await newList('nocache@lists.example.org', 'No cache', 'public');
  await post(pub, 'n1@example.org', 'Mon, 02 Nov 2026 10:00:00 +0000');
  expect((await purgeQueueStats(db.pool)).keys).toBeGreaterThan(0);
  const purger = new Purger(db.pool, db.url, parseConfig({}).purge, { pollMs: 100 });
  await purger.start();
  try {
    expect((await until(() => purgeQueueStats(db.pool), (s) => s.rows === 0)).rows).toBe(0);
    expect((await db.pool.query('select enabled from purge_switch')).rows[0].enabled).toBe(false);
    await post(pub, 'n2@example.org', 'Mon, 02 Nov 2026 11:00:00 +0000');
    expect((await db.pool.query('select count(*)::int as n from purges')).rows[0].n).toBe(0);
  } finally {
    await purger.stop();
  }
});

it('`listkeeper serve --worker` purges with PURGE_URL, and `queue --json` shows what waits and why', async () => {
  const endpoint = await standIn();
  endpoint.set('fail');
  const pub = await newList('served@lists.example.org', 'Served', 'public');
  await queued();
  const serve = await spawnServe({ roles: ['worker'], env: { DATABASE_URL: db.url, PURGE_URL: endpoint.url, PURGE_TIMEOUT: '1' } });
  try {
    // The banner names where purges go, without the password.
    expect(serve.output()).toMatch(/purges to http:\/\/purger:\*\*\*@127\.0\.0\.1:\d+\//);
    const m = await post(pub, 's1@example.org', 'Mon, 02 Nov 2026 10:00:00 +0000');
    await until(async () => endpoint.requests.length, (n) => n > 0);
    await until(() => purgeQueueStats(db.pool), (s) => s.retrying > 0);
    const shown = await cli(['queue', '--json'], { DATABASE_URL: db.url, PURGE_URL: endpoint.url });
    expect(shown.code).toBe(0);
    const q = JSON.parse(shown.stdout);
    expect(q.purges.url).toBe(endpoint.url.replace('s3cret', '***'));
    // site, latest, month, thread and message: the list's first message has no neighbours
    expect(q.purges.keys).toBe(5);
    expect(q.purges.retrying).toBe(5);
    expect(q.purges.oldest.last_error).toContain('answered 503');
    expect(q.counts).toBeDefined();
    // The doctor says so once the oldest has waited past ten minutes (and says nothing without PURGE_URL).
    const withUrl = parseConfig({ PURGE_URL: endpoint.url });
    expect((await purgesFinding(db.pool, withUrl))[0]).toMatchObject({ check: 'purges', status: 'ok' });
    await db.pool.query("update purges set queued_at = now() - interval '20 minutes'");
    const late = (await purgesFinding(db.pool, withUrl))[0];
    expect(late).toMatchObject({ check: 'purges', status: 'warn' });
    expect(late.what).toMatch(/^5 key\(s\) waiting for the cache in front, the oldest \(\S+\) for 20 min, \d attempt\(s\): .*answered 503/);
    expect(await purgesFinding(db.pool, parseConfig({}))).toEqual([]);
    const text = await cli(['queue'], { DATABASE_URL: db.url, PURGE_URL: endpoint.url });
    expect(text.stdout).toMatch(/^purges {3}5 key\(s\) waiting \(5 to retry\)$/m);
    endpoint.set('ok');
    await db.pool.query('update purges set run_at = now()');
    await until(async () => (await purgeQueueStats(db.pool)).rows, (n) => n === 0);
    expect(endpoint.requests.at(-1)?.keys.split(' ')).toEqual(sorted(['site', `latest-${pub.id}`, `month-${pub.id}-2026-11`, `thread-${m.thread_id}`, `message-${m.id}`]));
  } finally {
    await serve.kill('SIGTERM');
    await endpoint.stop();
  }
}, 60_000);
