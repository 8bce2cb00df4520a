import { afterAll, beforeAll, expect, it } from 'vitest';
import type pg from 'pg';
import { GroupCommit } from '../src/db/group-commit.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;
beforeAll(async () => {
  db = await testDatabase();
  await db.pool.query('create table batch_probe (n int primary key, txid bigint not null)');
});
afterAll(async () => { await db?.drop(); });

interface Job {
  fn: (tx: pg.PoolClient) => Promise<number>;
  keys: string[];
  lane?: string;
}

/** A group commit whose items are closures, run one after the other in the shared transaction. */
function committer(opts: { maxBatch: number; maxConcurrent: number; maxKeys?: number }) {
  const sizes: number[] = [];
  const gc = new GroupCommit<Job, number>(db.pool, async (tx, jobs) => {
    sizes.push(jobs.length);
    const out: number[] = [];
    for (const j of jobs) out.push(await j.fn(tx));
    return out;
  }, { ...opts, lockKeys: (j) => j.keys, lane: (j) => j.lane ?? '' });
  return { run: (fn: Job['fn'], keys: string[] = [], lane?: string) => gc.run({ fn, keys, lane }), sizes };
}

const insert = (n: number) => async (tx: pg.PoolClient) => {
  await tx.query('insert into batch_probe (n, txid) values ($1, txid_current())', [n]);
  return n * 2;
};

it('commits concurrent callers together and answers each with its own result', async () => {
  const b = committer({ maxBatch: 50, maxConcurrent: 1 });
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => b.run(insert(i))));
  expect(results).toEqual(Array.from({ length: 30 }, (_, i) => i * 2));
  const { rows } = await db.pool.query('select count(*)::int as rows, count(distinct txid)::int as txs from batch_probe where n < 30');
  expect(rows[0].rows).toBe(30);
  // The first caller runs alone; the 29 that queued behind it share one transaction, and the
  // work function sees them together (so it can do them in set-based statements).
  expect(rows[0].txs).toBeLessThanOrEqual(2);
  expect(b.sizes).toEqual([1, 29]);
});

it('lets a small batch wait for company while another transaction is in flight, not start alone', async () => {
  const b = committer({ maxBatch: 50, maxConcurrent: 2 });
  const first = b.run(insert(50));
  // These arrive while the first is committing: with a free slot they could each start a
  // transaction of their own; they go together instead.
  const rest = [51, 52, 53].map((n) => b.run(insert(n)));
  expect(await Promise.all([first, ...rest])).toEqual([100, 102, 104, 106]);
  expect(b.sizes).toEqual([1, 3]);
});

it('isolates a failing item: the others commit, the failure is reported to its caller only', async () => {
  const b = committer({ maxBatch: 50, maxConcurrent: 1 });
  const calls = [100, 101, 102, 101, 103].map((n) => b.run(insert(n)).then(() => 'ok', (e: Error) => e.message));
  const outcomes = await Promise.all(calls);
  expect(outcomes.filter((o) => o === 'ok')).toHaveLength(4);
  expect(outcomes.filter((o) => /duplicate key/.test(o))).toHaveLength(1);
  const { rows } = await db.pool.query('select n from batch_probe where n >= 100 order by n');
  expect(rows.map((r) => r.n)).toEqual([100, 101, 102, 103]);
});

it('does not answer before the shared transaction has committed', async () => {
  const b = committer({ maxBatch: 50, maxConcurrent: 1 });
  const seen: number[] = [];
  await Promise.all(Array.from({ length: 10 }, (_, i) => b.run(insert(200 + i)).then(async () => {
    // Visible from another connection as soon as the caller is answered.
    const { rows } = await db.pool.query('select 1 from batch_probe where n = $1', [200 + i]);
    seen.push(rows.length);
  })));
  expect(seen).toEqual(Array(10).fill(1));
});

it('takes the thread locks of a whole batch up front, so crossing batches do not deadlock', async () => {
  const b = committer({ maxBatch: 8, maxConcurrent: 3 });
  // Items whose keys overlap in opposite orders across batches: without the sorted up-front pass,
  // concurrent batches wait on each other in a cycle and PostgreSQL aborts one (40P01).
  const lockAll = (keys: string[]) => async (tx: pg.PoolClient) => {
    for (const k of keys) {
      await tx.query('select pg_advisory_xact_lock(hashtextextended($1, 7283))', [k]);
      await new Promise((r) => setTimeout(r, 2));
    }
    return keys.length;
  };
  const work = Array.from({ length: 60 }, (_, i) => {
    const keys = [`k${i % 7}`, `k${(i + 3) % 7}`, `k${(i + 5) % 7}`];
    const ordered = i % 2 ? keys : [...keys].reverse();
    return b.run(lockAll(ordered), keys).then(() => 'ok', (e: Error) => e.message);
  });
  const outcomes = await Promise.all(work);
  expect(outcomes.filter((o) => o !== 'ok')).toEqual([]);
});

it('keeps the advisory locks of one transaction under its key budget, however many items queue', async () => {
  const b = committer({ maxBatch: 50, maxConcurrent: 1, maxKeys: 100 });
  const keysOf = (i: number) => Array.from({ length: 40 }, (_, k) => `budget-${i}-${k}`);
  const first = b.run(insert(300), keysOf(0));
  const rest = Array.from({ length: 9 }, (_, i) => b.run(insert(301 + i), keysOf(i + 1)));
  await Promise.all([first, ...rest]);
  // 40 keys each, at most 100 per transaction: two items at a time after the first.
  expect(b.sizes).toEqual([1, 2, 2, 2, 2, 1]);
});

it("keeps a transaction for the main lane, however many of another lane's hang, and never mixes lanes", async () => {
  const b = committer({ maxBatch: 50, maxConcurrent: 3 });
  // A list's posts whose COMMIT waits for a standby that is away: they do not finish until released.
  let release!: () => void;
  const away = new Promise<void>((r) => { release = r; });
  const hang = (n: number) => async (tx: pg.PoolClient) => {
    await insert(n)(tx);
    await away;
    return n * 2;
  };
  // One at a time, as posts come from separate SMTP sessions: each could start a transaction of its own.
  const waiting: Promise<number>[] = [];
  for (const n of [400, 401, 402, 403, 404, 405]) {
    waiting.push(b.run(hang(n), [], 'remote_write'));
    await new Promise((r) => setTimeout(r, 30));
  }
  // Every other list's posts still commit, in transactions of their own lane.
  const others = await Promise.race([
    Promise.all([410, 411, 412].map((n) => b.run(insert(n)))),
    new Promise((r) => setTimeout(() => r('no answer'), 3000)),
  ]);
  release();
  expect(others).toEqual([820, 822, 824]);
  expect(await Promise.all(waiting)).toEqual([800, 802, 804, 806, 808, 810]);
  const { rows } = await db.pool.query<{ n: number[] }>('select array_agg(n order by n) as n from batch_probe where n between 400 and 419 group by txid order by min(n)');
  for (const { n } of rows) expect(n.every((x) => x >= 410) || n.every((x) => x < 410), `one transaction: ${n}`).toBe(true);
});
