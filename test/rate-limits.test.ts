import { afterAll, beforeAll, expect, it } from 'vitest';
import { allowHit, clearHits } from '../src/db/rate-limits.ts';
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
