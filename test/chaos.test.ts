import { afterEach, expect, inject, it } from 'vitest';
import { formatReport, runCrashLoop, type CrashLoopOptions } from './chaos-loop.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

/**
 * The short form of the crash loop (test/chaos-loop.ts; `npm run chaos` runs the long one):
 * the real `listkeeper serve --smtp --worker` is killed with SIGKILL at random moments while
 * posts arrive and copies go out, and whatever was acknowledged must be archived and delivered.
 * A short lease (2 s) lets a restarted worker take over the killed one's rows at once; the
 * seed is printed, and CHAOS_SEED plays a run again.
 */
const SEED = Number(process.env.CHAOS_SEED ?? 20261202);

let db: TestDatabase | undefined;
afterEach(async () => {
  await db?.drop();
  db = undefined;
});

async function loop(opts: Partial<CrashLoopOptions>) {
  db = await testDatabase();
  const report = await runCrashLoop({
    databaseUrl: db.url,
    adminUrl: inject('adminDatabaseUrl'),
    iterations: 3,
    seed: SEED,
    leaseSeconds: 2,
    batchSize: 20,
    killWindowMs: [400, 1500],
    ...opts,
  });
  console.log(formatReport(report));
  return report;
}

it('serve killed with SIGKILL at random moments loses no acknowledged post, delivers every copy once or within a batch, and settles', async () => {
  const r = await loop({});
  expect(r.kills).toBe(3);
  expect(r.posts.acknowledged).toBeGreaterThan(0);
  expect(r.acknowledgedButLost).toEqual([]);
  expect(r.copies.expected).toBeGreaterThan(0);
  expect(r.copies.missing).toBe(0);
  expect(r.copies.duplicates).toBeLessThanOrEqual(r.copies.duplicateBound);
  expect(r.stuck).toBe(0);
  expect(r.failures).toEqual([]);
}, 240_000);

// Issue 10 items 3 and 4: today serve dies of an unhandled 'error' event when its backends are
// terminated, and delivery stalls for good after the relay comes back. This passes once both
// are fixed.
it('serve survives terminated database backends and a relay outage, and delivery resumes after the outage', async () => {
  const r = await loop({ iterations: 2, faults: ['relay-outage', 'backend-termination'], killWindowMs: [1200, 2500] });
  expect(r.faults.relayOutages).toBeGreaterThan(0);
  expect(r.faults.backendsEnded).toBeGreaterThan(0);
  expect(r.diedOnItsOwn).toEqual([]);
  expect(r.stalls).toEqual([]);
  expect(r.acknowledgedButLost).toEqual([]);
  expect(r.failures).toEqual([]);
}, 240_000);
