/*
 * The download slots (src/web/archive/download-slots.ts): readers who open downloads and never
 * read them hold at most WEB_MAX_DOWNLOADS of them per process, 2 per client address; the next is
 * answered 503 (or 429) with Retry-After while pages go on answering, and each slot comes back
 * however its download ends. Clients here are raw sockets that send a GET, read the status line and
 * nothing more, against a month of 12 MB messages that no socket buffer holds.
 */

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { log } from '../src/log.ts';
import { readMbox } from '../src/mail/mbox.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { stall, type Stalled } from './helpers/stalled-reader.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';
import { bigMessage } from './fixtures/archive/big-message.ts';
import { HEAVY_DOWNLOAD_BYTES } from '../src/web/archive/download-slots.ts';

let db: TestDatabase;
let web: RunningWeb;
let thread = 0;
const MONTH = '/lists/big/2026-11.mbox';
const SMALL_PAGE = '/message-id/small-1@example.org';
const BIG_RAW = '/message-id/raw/big-1@example.org';
const BIG_ATTACHMENT = '/message-id/attachment/big-1@example.org/1/file-1.bin';
const MONTH_MESSAGES = 5;
const STALLED_MS = 6_000;

beforeAll(async () => {
  db = await testDatabase();
  web = await startWeb(db);
  const big = await newList(db.pool, 'big@lists.example.org');
  // Two messages of 12 MB (a 9 MB attachment each) first, then small ones: the month is two pages
  // of mbox (db/archive-mbox.ts, MBOX_PAGE_BYTES), and a raw message or attachment is more than
  // the kernel takes from a reader that does not read (some 4 MB on loopback).
  for (const [i, day] of [[1, '02'], [2, '03']]) {
    await archive(db.pool, big, bigMessage({ id: `big-${i}@example.org`, attachments: 1, bytes: 12 * 1024 * 1024, date: `${day} Nov 2026 10:00:00 +0000` }).raw);
  }
  for (let i = 1; i <= MONTH_MESSAGES - 2; i++) {
    await archive(db.pool, big, mail({ id: `small-${i}@example.org`, subject: `Small ${i}`, date: `1${i} Nov 2026 10:00:00 +0000` }));
  }
  thread = Number((await db.pool.query<{ thread_id: string }>(`select thread_id from messages where message_id = 'big-1@example.org'`)).rows[0].thread_id);
}, 120_000);

afterAll(async () => {
  await web?.stop();
  await db?.drop();
});



const get = (base: string, path: string, ip: string, headers: Record<string, string> = {}) => fetch(`${base}${path}`, { headers: { 'x-forwarded-for': ip, ...headers } });

/** The month's mbox read to its end by `ip`: the number of messages in it. */
async function wholeMonth(base: string, ip: string): Promise<{ status: number; messages: number }> {
  const res = await get(base, MONTH, ip);
  if (res.status !== 200) {
    await res.text();
    return { status: res.status, messages: 0 };
  }
  let messages = 0;
  for await (const _ of readMbox([Buffer.from(await res.arrayBuffer())])) messages++;
  return { status: 200, messages };
}

/** Asks until `check` passes, for up to 10 s: a slot comes back once the server has seen its connection close. */
async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean): Promise<T> {
  const until = Date.now() + 30_000;
  for (;;) {
    const v = await fn();
    if (check(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Captures the log's lines (JSON, from here to the end of the test). */
function captureLog(): () => Record<string, unknown>[] {
  const out: string[] = [];
  const level = log.level;
  log.level = 'info';
  onTestFinished(() => {
    log.level = level;
    write.mockRestore();
  });
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out.push(String(chunk));
    return true;
  });
  return () => out.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${web.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('heavy downloads at once', () => {
  it('refuses a ninth download with 503 and Retry-After while eight readers have stalled, serves pages meanwhile, and downloads again once they leave', async () => {
    const stalled: Stalled[] = [];
    try {
      // Eight downloads from four addresses, two each: months, a thread, a raw message, an attachment.
      const paths = [MONTH, MONTH, MONTH, `/lists/big/thread/${thread}.mbox`, MONTH, MONTH, BIG_RAW, BIG_ATTACHMENT];
      for (const [i, path] of paths.entries()) stalled.push(await stall(web.url, path, `192.0.2.${1 + (i >> 1)}`));
      expect(stalled.map((s) => s.status)).toEqual(Array(8).fill(200));
      expect(await metric('listkeeper_web_downloads')).toBe(8);

      const lines = captureLog();
      for (const path of [MONTH, `/lists/big/thread/${thread}.mbox`, BIG_RAW, BIG_ATTACHMENT]) {
        const refused = await get(web.url, path, '192.0.2.9');
        expect(refused.status, path).toBe(503);
        expect(refused.headers.get('retry-after')).toBe('5');
        expect(refused.headers.get('cache-control')).toBe('no-store');
        expect(refused.headers.get('etag')).toBeNull();
        expect(refused.headers.get('content-disposition')).toBeNull();
        expect(refused.headers.get('content-type')).toBe('text/plain; charset=utf-8');
        expect(await refused.text()).toBe('Too many downloads are running on this server just now. Try again in a few seconds.\n');
      }
      expect(await metric('listkeeper_web_downloads_refused_total{reason="process"}')).toBeGreaterThanOrEqual(4);
      // One warning for the four: a flood of refusals does not flood the log.
      expect(lines().filter((l) => l.msg === 'downloads refused')).toMatchObject([{ level: 40, reason: 'process', ip: '192.0.2.9', refused: 1, running: 8, limit: 8 }]);

      // Pages, small raw messages, HEAD and a 304 send no heavy body: they are answered.
      expect((await get(web.url, SMALL_PAGE, '192.0.2.9')).status).toBe(200);
      expect((await get(web.url, '/lists/big/', '192.0.2.9')).status).toBe(200);
      expect((await get(web.url, '/message-id/raw/small-1@example.org', '192.0.2.9')).status).toBe(200);
      const head = await fetch(`${web.url}${MONTH}`, { method: 'HEAD', headers: { 'x-forwarded-for': '192.0.2.9' } });
      expect(head.status).toBe(200);
      expect((await get(web.url, MONTH, '192.0.2.9', { 'if-none-match': head.headers.get('etag')! })).status).toBe(304);

      for (const s of stalled) s.socket.destroy();
      const again = await eventually(() => wholeMonth(web.url, '192.0.2.9'), (r) => r.status === 200);
      expect(again).toEqual({ status: 200, messages: MONTH_MESSAGES });
      expect(await eventually(() => metric('listkeeper_web_downloads'), (n) => n === 0)).toBe(0);
      // Every slot is back: eight readers can stall again.
      stalled.length = 0;
      for (let i = 0; i < 8; i++) stalled.push(await stall(web.url, MONTH, `192.0.2.${20 + (i >> 1)}`));
      expect(stalled.map((s) => s.status)).toEqual(Array(8).fill(200));
    } finally {
      for (const s of stalled) s.socket.destroy();
    }
    await eventually(() => metric('listkeeper_web_downloads'), (n) => n === 0);
  }, 60_000);

  it('answers a third download from one address 429 with Retry-After, an IPv6 /64 counting as one address, while other addresses download', async () => {
    const stalled: Stalled[] = [];
    try {
      stalled.push(await stall(web.url, MONTH, '198.51.100.7'), await stall(web.url, BIG_RAW, '198.51.100.7'));
      stalled.push(await stall(web.url, MONTH, '2001:db8:1:2::1'), await stall(web.url, MONTH, '2001:db8:1:2::2'));
      expect(stalled.map((s) => s.status)).toEqual([200, 200, 200, 200]);
      for (const ip of ['198.51.100.7', '2001:db8:1:2::3']) {
        const refused = await get(web.url, MONTH, ip);
        expect(refused.status, ip).toBe(429);
        expect(refused.headers.get('retry-after')).toBe('5');
        expect(await refused.text()).toBe('This address has 2 downloads running already. Try again when one of them has finished.\n');
      }
      expect(await metric('listkeeper_web_downloads_refused_total{reason="client"}')).toBe(2);
      expect(await wholeMonth(web.url, '198.51.100.8')).toEqual({ status: 200, messages: MONTH_MESSAGES });
      expect(await wholeMonth(web.url, '2001:db8:1:3::1')).toEqual({ status: 200, messages: MONTH_MESSAGES });

      // One of the address's two ends: it may start another.
      stalled[0].socket.destroy();
      expect(await eventually(() => wholeMonth(web.url, '198.51.100.7'), (r) => r.status === 200)).toEqual({ status: 200, messages: MONTH_MESSAGES });
    } finally {
      for (const s of stalled) s.socket.destroy();
    }
    await eventually(() => metric('listkeeper_web_downloads'), (n) => n === 0);
  }, 60_000);

  it('reads a large raw message only once it has a slot: a flood of refused requests reads none of it', async () => {
    const stalled: Stalled[] = [];
    // Every row the web reads, watched for the large message's bytes (readPool is this pool here).
    const query = db.pool.query;
    let bigReads = 0;
    db.pool.query = async function (this: typeof db.pool, ...args: unknown[]) {
      const result = await (query as (...a: unknown[]) => Promise<{ rows?: Record<string, unknown>[] }>).apply(this, args);
      if (result?.rows?.some((row) => Object.values(row).some((v) => Buffer.isBuffer(v) && v.length >= HEAVY_DOWNLOAD_BYTES))) bigReads++;
      return result;
    } as typeof query;
    onTestFinished(() => {
      db.pool.query = query;
    });
    try {
      stalled.push(await stall(web.url, BIG_RAW, '198.51.100.20'), await stall(web.url, BIG_RAW, '198.51.100.20'));
      expect(stalled.map((s) => s.status)).toEqual([200, 200]);
      expect(bigReads).toBe(2);
      bigReads = 0;
      // Read first and refused after, each of these cost a read of all 12 MB: a flood of them held
      // the read pool and hundreds of MB while the pages of every other reader waited seconds.
      for (let i = 0; i < 5; i++) {
        const refused = await get(web.url, BIG_RAW, '198.51.100.20');
        expect(refused.status).toBe(429);
        expect(await refused.text()).toBe('This address has 2 downloads running already. Try again when one of them has finished.\n');
      }
      expect(bigReads).toBe(0);
      // Nor a HEAD, whose ETag and length are the bytes': it too waits for a slot, and is refused without them.
      for (let i = 0; i < 5; i++) {
        const head = await fetch(`${web.url}${BIG_RAW}`, { method: 'HEAD', headers: { 'x-forwarded-for': '198.51.100.20' } });
        expect(head.status).toBe(429);
      }
      expect(bigReads).toBe(0);
      const head = await fetch(`${web.url}${BIG_RAW}`, { method: 'HEAD', headers: { 'x-forwarded-for': '198.51.100.22' } });
      expect([head.status, head.headers.get('content-length')]).toEqual([200, String(bigMessage({ id: 'big-1@example.org', attachments: 1, bytes: 12 * 1024 * 1024, date: '02 Nov 2026 10:00:00 +0000' }).raw.length)]);
      expect(bigReads).toBe(1);
      bigReads = 0;
      // Another reader is served meanwhile: the message whole, and a page.
      const whole = await get(web.url, BIG_RAW, '198.51.100.21');
      expect(whole.status).toBe(200);
      expect(Buffer.from(await whole.arrayBuffer()).equals(bigMessage({ id: 'big-1@example.org', attachments: 1, bytes: 12 * 1024 * 1024, date: '02 Nov 2026 10:00:00 +0000' }).raw)).toBe(true);
      expect(bigReads).toBe(1);
      expect(await (await get(web.url, SMALL_PAGE, '198.51.100.20')).text()).toContain('Small 1');
    } finally {
      for (const s of stalled) s.socket.destroy();
    }
    await eventually(() => metric('listkeeper_web_downloads'), (n) => n === 0);
  }, 60_000);
});

describe('a slot comes back however its download ends', () => {
  let one: RunningWeb;

  beforeAll(async () => {
    // The idle deadline is short here, but not so short that a loaded machine (a CI run beside other
    // work) takes longer than it to send a download's first bytes: at 3 s it cut whole downloads off.
    one = await startWeb(db, { WEB_MAX_DOWNLOADS: '1' }, { stalledMs: STALLED_MS });
  });

  afterAll(async () => {
    await one?.stop();
  });

  it('when the download is sent whole', async () => {
    for (let i = 0; i < 3; i++) expect(await wholeMonth(one.url, '192.0.2.1')).toEqual({ status: 200, messages: MONTH_MESSAGES });
    expect((await (await get(one.url, BIG_RAW, '192.0.2.1')).arrayBuffer()).byteLength).toBeGreaterThan(12_000_000);
    const attachment = await get(one.url, BIG_ATTACHMENT, '192.0.2.1');
    expect(attachment.status).toBe(200);
    expect((await attachment.arrayBuffer()).byteLength).toBeGreaterThan(8_000_000);
    expect((await wholeMonth(one.url, '192.0.2.1')).status).toBe(200);
  });

  it('when its reader left before it began', async () => {
    // The download waits for its first query while the reader goes away.
    const locker = await db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table list_messages in access exclusive mode');
      const s = net.connect(Number(new URL(one.url).port), '127.0.0.1');
      s.on('error', () => undefined);
      s.write(`GET ${MONTH} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n`);
      await eventually(async () => (await db.pool.query(`select count(*)::int as n from pg_locks where relation = 'list_messages'::regclass and not granted`)).rows[0].n, (n) => n > 0);
      s.destroy();
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      await locker.query('commit');
      locker.release();
    }
    expect(await eventually(() => wholeMonth(one.url, '192.0.2.2'), (r) => r.status === 200)).toEqual({ status: 200, messages: MONTH_MESSAGES });
  });

  it('when a reader that stopped reading is cut off by the idle deadline', async () => {
    const s = await stall(one.url, BIG_ATTACHMENT, '192.0.2.1');
    expect(s.status).toBe(200);
    expect((await get(one.url, MONTH, '192.0.2.2')).status).toBe(503);
    // The server closes the connection after STALLED_MS without traffic (some 2 × STALLED_MS after
    // the download began, here: the kernel takes bytes for a while); the reader did nothing.
    const started = Date.now();
    expect(await eventually(() => wholeMonth(one.url, '192.0.2.2'), (r) => r.status === 200)).toEqual({ status: 200, messages: MONTH_MESSAGES });
    expect(Date.now() - started).toBeGreaterThan(STALLED_MS - 1_000);
    // Reading again, the reader finds its connection ended by the server.
    s.socket.resume();
    await s.closed;
  }, 60_000);

  it('when the download fails halfway (its second page cannot be read)', async () => {
    const s = await stall(one.url, MONTH, '192.0.2.1');
    expect(s.status).toBe(200);
    expect((await get(one.url, MONTH, '192.0.2.2')).status).toBe(503);
    // The large messages come first, each past a page's bytes: the next page is read only once the
    // reader has taken the first, and by then it cannot be.
    await db.pool.query('alter table messages rename to messages_away');
    const chunks: Buffer[] = [];
    try {
      s.socket.on('data', (d: Buffer) => chunks.push(d));
      s.socket.resume();
      await s.closed;
    } finally {
      await db.pool.query('alter table messages_away rename to messages');
    }
    // Cut short: a large message went, and the chunked body never got its last chunk.
    const got = Buffer.concat(chunks);
    expect(got.length).toBeGreaterThan(12_000_000);
    expect(got.subarray(-5).toString()).not.toBe('0\r\n\r\n');
    expect(await eventually(() => wholeMonth(one.url, '192.0.2.2'), (r) => r.status === 200)).toEqual({ status: 200, messages: MONTH_MESSAGES });
  });
});
