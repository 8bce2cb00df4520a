import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { until } from './helpers/worker-process.ts';

/*
 * The workers' hourly chores (src/delivery/maintenance.ts hourly()) run once an hour for the whole
 * fleet, whenever workers start (sql/0089): each worker ran them from a timer of an hour after its
 * own start, so a fleet restarted more often than hourly never ran them.
 */

let db: TestDatabase;
let relay: CaptureRelay;
let worker: DeliveryWorker | undefined;

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
});
afterAll(async () => {
  await worker?.stop();
  await relay?.stop();
  await db?.drop();
});

const expired = async () => (await db.pool.query(`select count(*)::int as n from rate_limits where key = 'chores-test'`)).rows[0].n;
const ranAt = async () => (await db.pool.query<{ ago: number }>(`select extract(epoch from now() - ran_at)::float8 as ago from chore_runs where name = 'hourly'`)).rows[0].ago;

it('runs the hourly chores soon after a start when the last run is an hour old, and not again within the hour', async () => {
  // A rate-limit row two days old: the hourly chores prune it.
  const insert = () => db.pool.query(`insert into rate_limits (key, window_start, hits) values ('chores-test', now() - interval '2 days', 1)`);
  await insert();
  // The last run, by any worker, 2 hours ago (a fleet that restarted every 30 minutes never got to run them).
  await db.pool.query(`update chore_runs set ran_at = now() - interval '2 hours' where name = 'hourly'`);
  worker = await startWorker(db, workerConfig(relay));
  await until(async () => (await expired()) === 0, 'the hourly chores to prune the expired rate limit');
  expect(await ranAt()).toBeLessThan(60);
  // Within the hour they are not run again, by this worker or another one started now.
  await insert();
  const second = await startWorker(db, workerConfig(relay));
  try {
    await new Promise((r) => setTimeout(r, 3000));
    expect(await expired()).toBe(1);
  } finally {
    await second.stop();
  }
});
