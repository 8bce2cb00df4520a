import { afterAll, beforeAll, expect, it } from 'vitest';
import { allowHit, clearHits, clientKey } from '../src/db/rate-limits.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
beforeAll(async () => { db = await testDatabase(); });
afterAll(async () => { await db?.drop(); });

it('allows hits up to the limit in a window and refuses the next', async () => {
  const results = [];
  for (let i = 0; i < 4; i++) results.push(await allowHit(db.pool, 'test:a', 3, 60));
  expect(results).toEqual([true, true, true, false]);
});

it('counts keys separately and forgets a cleared key', async () => {
  expect(await allowHit(db.pool, 'test:b', 1, 60)).toBe(true);
  expect(await allowHit(db.pool, 'test:b', 1, 60)).toBe(false);
  expect(await allowHit(db.pool, 'test:c', 1, 60)).toBe(true);
  await clearHits(db.pool, 'test:b');
  expect(await allowHit(db.pool, 'test:b', 1, 60)).toBe(true);
});

it('starts a new window once the old one has passed', async () => {
  expect(await allowHit(db.pool, 'test:d', 1, 60)).toBe(true);
  await db.pool.query(`update rate_limits set window_start = now() - interval '2 minutes' where key = 'test:d'`);
  expect(await allowHit(db.pool, 'test:d', 1, 60)).toBe(true);
});

it('counts an IPv4 client by its address and an IPv6 one by its /64, however it is written', () => {
  expect(clientKey('203.0.113.9')).toBe('203.0.113.9');
  expect(clientKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
  for (const ip of ['2001:db8:1:2::13', '2001:DB8:1:2:aaaa:bbbb:cccc:dddd', '2001:0db8:0001:0002::', '2001:db8:1:2:0:0:0:1']) expect(clientKey(ip), ip).toBe('2001:db8:1:2::/64');
  expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
  expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  expect(clientKey(undefined)).toBe('');
});
