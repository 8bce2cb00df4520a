/*
 * A client's download slots hold for the whole site (src/db/download-leases.ts): two real web
 * processes (`listkeeper serve --web`) on one database give one client address 2 heavy downloads
 * between them, not 2 each; and a process killed with kill -9 in the middle of its downloads gives
 * their slots back with its connection. Clients are raw sockets that send a GET, read the status
 * line and nothing more, against a month of 12 MB messages that no socket buffer holds.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { stall, type Stalled } from './helpers/stalled-reader.ts';
import { spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { archive, mail, newList } from './fixtures/archive/seed.ts';
import { bigMessage } from './fixtures/archive/big-message.ts';

let db: TestDatabase;
const serves: ServeProcess[] = [];
const MONTH = '/lists/big/2026-11.mbox';
const BIG_RAW = '/message-id/raw/big-1@example.org';

beforeAll(async () => {
  db = await testDatabase();
  const big = await newList(db.pool, 'big@lists.example.org');
  for (const [i, day] of [[1, '02'], [2, '03']]) {
    await archive(db.pool, big, bigMessage({ id: `big-${i}@example.org`, attachments: 1, bytes: 12 * 1024 * 1024, date: `${day} Nov 2026 10:00:00 +0000` }).raw);
  }
  await archive(db.pool, big, mail({ id: 'small-1@example.org', subject: 'Small', date: '11 Nov 2026 10:00:00 +0000' }));
}, 120_000);

afterAll(async () => {
  for (const s of serves) await s.kill('SIGKILL');
  await db?.drop();
});



/** The status of a whole download by `ip` (its body read to the end). */
async function download(base: string, path: string, ip: string): Promise<number> {
  const res = await fetch(`${base}${path}`, { headers: { 'x-forwarded-for': ip } });
  await res.arrayBuffer();
  return res.status;
}

/** Asks until `check` passes, for up to 30 s. */
async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean): Promise<T> {
  const until = Date.now() + 30_000;
  for (;;) {
    const v = await fn();
    if (check(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The download-slot leases held in the test's database now. */
async function leases(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `select count(*)::int as n from pg_locks where locktype = 'advisory' and classid between 7290 and 7299 and granted
        and database = (select oid from pg_database where datname = current_database())`);
  return rows[0].n;
}

describe('download slots of one client on the whole site', () => {
  it('gives a client address two heavy downloads across two web processes, and gives back those of a process killed with kill -9', async () => {
    const env = { DATABASE_URL: db.url, WEB_MAX_DOWNLOADS: '8' };
    const a = await spawnServe({ roles: ['web'], env });
    serves.push(a);
    const b = await spawnServe({ roles: ['web'], env });
    serves.push(b);
    const stalled: Stalled[] = [];
    try {
      // Two downloads on the first process: the address's two slots.
      stalled.push(await stall(a.webUrl!, MONTH, '192.0.2.1'), await stall(a.webUrl!, BIG_RAW, '192.0.2.1'));
      expect(stalled.map((s) => s.status)).toEqual([200, 200]);
      expect(await leases()).toBe(2);
      // The second process refuses that address a third, whether an mbox or a large raw message;
      // another address downloads there.
      const refused = await fetch(`${b.webUrl}${MONTH}`, { headers: { 'x-forwarded-for': '192.0.2.1' } });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('5');
      expect(await refused.text()).toBe('This address has 2 downloads running already. Try again when one of them has finished.\n');
      expect(await download(b.webUrl!, BIG_RAW, '192.0.2.1')).toBe(429);
      expect(await download(b.webUrl!, MONTH, '192.0.2.2')).toBe(200);

      // The first process dies in the middle of both downloads: their slots go with its connection.
      await a.kill('SIGKILL');
      expect(await eventually(() => download(b.webUrl!, MONTH, '192.0.2.1'), (s) => s === 200)).toBe(200);
      expect(await eventually(leases, (n) => n === 0)).toBe(0);

      // On the second process alone, the address again has two, and gets them back as they end.
      const more = [await stall(b.webUrl!, MONTH, '192.0.2.1'), await stall(b.webUrl!, MONTH, '192.0.2.1')];
      stalled.push(...more);
      expect(more.map((s) => s.status)).toEqual([200, 200]);
      expect(await download(b.webUrl!, MONTH, '192.0.2.1')).toBe(429);
      for (const s of more) s.socket.destroy();
      expect(await eventually(() => download(b.webUrl!, MONTH, '192.0.2.1'), (s) => s === 200)).toBe(200);
      expect(await eventually(leases, (n) => n === 0)).toBe(0);
    } finally {
      for (const s of stalled) s.socket.destroy();
    }
  }, 120_000);

  it('counts a process\'s own downloads when the connection of its leases is cut, and takes leases again once it is back', async () => {
    const b = serves[1];
    const stalled: Stalled[] = [];
    try {
      stalled.push(await stall(b.webUrl!, MONTH, '192.0.2.3'));
      expect(await leases()).toBe(1);
      const { rows } = await db.pool.query<{ n: number }>(
        `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where application_name like 'listkeeper:%:download-leases' and datname = current_database()`);
      expect(rows[0].n).toBe(1);
      expect(await eventually(leases, (n) => n === 0)).toBe(0);
      // Meanwhile the process's own count holds: two for the address, a third refused.
      stalled.push(await stall(b.webUrl!, MONTH, '192.0.2.3'));
      expect(stalled.map((s) => s.status)).toEqual([200, 200]);
      expect(await download(b.webUrl!, MONTH, '192.0.2.3')).toBe(429);
      expect(await download(b.webUrl!, MONTH, '192.0.2.4')).toBe(200);
      // Reconnected (a few seconds later), a new download holds a lease again.
      for (const s of stalled) s.socket.destroy();
      stalled.length = 0;
      await eventually(async () => {
        const s = await stall(b.webUrl!, MONTH, '192.0.2.5');
        stalled.push(s);
        const n = await leases();
        if (n === 0) s.socket.destroy();
        return n;
      }, (n) => n > 0);
      expect(await leases()).toBe(1);
    } finally {
      for (const s of stalled) s.socket.destroy();
    }
    expect(b.alive()).toBe(true);
  }, 120_000);
});
