import type pg from 'pg';
import { log } from '../log.ts';
import { withTransaction } from './pool.ts';

/**
 * Group commit for the ingest path. Concurrent callers of run() that arrive while earlier work is
 * committing share one transaction: one BEGIN/COMMIT and one WAL flush for many messages, which is
 * what lets 20 SMTP sessions outrun PostgreSQL's per-transaction cost on a small machine. Under
 * light load a batch holds one item, so nobody waits for company.
 *
 * Each caller's promise settles only after the shared COMMIT. If any item fails, the batch is
 * rolled back and every item is re-run alone in its own transaction, so one bad message can neither
 * sink the others nor leave half of itself behind. Work passed to run() must therefore touch only
 * the database through `tx` (it may run twice).
 */
interface Item<T> {
  fn: (tx: pg.PoolClient) => Promise<T>;
  lockKeys: string[];
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export class TransactionBatcher {
  private queue: Item<unknown>[] = [];
  private running = 0;

  constructor(private pool: pg.Pool, private opts: { maxBatch: number; maxConcurrent: number } = { maxBatch: 64, maxConcurrent: 3 }) {}

  /**
   * `lockKeys` are the Message-IDs the work will lock (lock_thread_keys in sql/0001): a shared
   * transaction takes all of its items' locks first, in one sorted pass, so that two batches never
   * wait on each other in a cycle.
   */
  run<T>(fn: (tx: pg.PoolClient) => Promise<T>, lockKeys: string[] = []): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, lockKeys, resolve, reject } as Item<unknown>);
      this.pump();
    });
  }

  private pump() {
    while (this.running < this.opts.maxConcurrent && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch);
      this.running++;
      void this.commit(batch).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async commit(batch: Item<unknown>[]) {
    if (batch.length === 1) return this.alone(batch[0]);
    let results: unknown[];
    try {
      results = await withTransaction(this.pool, async (tx) => {
        await lockKeys(tx, batch.flatMap((item) => item.lockKeys));
        const out: unknown[] = [];
        for (const item of batch) out.push(await item.fn(tx));
        return out;
      });
    } catch (err) {
      log.debug({ err, size: batch.length }, 'batch failed; re-running its items one by one');
      await Promise.all(batch.map((item) => this.alone(item)));
      return;
    }
    batch.forEach((item, i) => item.resolve(results[i]));
  }

  private async alone(item: Item<unknown>) {
    try {
      item.resolve(
        await withTransaction(this.pool, async (tx) => {
          await lockKeys(tx, item.lockKeys);
          return item.fn(tx);
        }),
      );
    } catch (err) {
      item.reject(err);
    }
  }
}

async function lockKeys(tx: pg.PoolClient, keys: string[]) {
  if (keys.length > 0) await tx.query('select lock_thread_keys($1::text[])', [keys]);
}

const batchers = new WeakMap<pg.Pool, TransactionBatcher>();

/** The batcher shared by everything that writes through this pool. */
export function batcherFor(pool: pg.Pool): TransactionBatcher {
  let b = batchers.get(pool);
  if (!b) batchers.set(pool, (b = new TransactionBatcher(pool)));
  return b;
}
