/*
 * Group commit. Concurrent callers of run() that arrive while earlier work is committing share one
 * transaction, and their items go to `work` together, so that it can do them in a few set-based
 * statements: one BEGIN/COMMIT, one WAL flush and a handful of round trips for many items. That
 * is what lets 20 SMTP sessions outrun PostgreSQL's per-statement and per-transaction costs on a
 * small machine. Under light load a batch holds one item, so nobody waits for company.
 *
 * Each caller's promise settles only after the shared COMMIT. If the batch fails, it is rolled back
 * and every item is re-run alone in its own transaction, so one bad item can neither sink the
 * others nor leave half of itself behind. A batch whose connection dies (the backend terminated,
 * the server restarted) takes the same path: its items are re-run on fresh connections, and each
 * caller gets its item's result or an error, never silence. `work` must therefore touch only the
 * database through `tx` (it may run twice), and return one result per item, in order.
 */

import type pg from 'pg';
import { log } from '../log.ts';
import { isConnectionLoss, withTransaction } from './pool.ts';

export interface GroupCommitOptions<I> {
  /**
   * The Message-IDs an item will lock (lock_thread_keys in sql/0001): a shared transaction takes
   * all of its items' locks first, in one sorted pass, so that two batches never wait on each
   * other in a cycle.
   */
  lockKeys: (item: I) => string[];
  /**
   * Which transactions an item may share: items of different lanes never share one. '' (the
   * default) is the main lane; the others together hold at most maxConcurrent - 1 transactions, so
   * that one is always the main lane's. Posts whose COMMIT waited for an absent synchronous standby
   * (a list's own synchronous_commit) took every slot, and no other list's post was answered.
   */
  lane?: (item: I) => string;
  maxBatch?: number;
  /**
   * lock keys per transaction: each is an advisory lock held to commit, and PostgreSQL's lock table
   * is shared and small (max_locks_per_transaction x connections); a batch stops growing here
   */
  maxKeys?: number;
  /** transactions in flight at once; more only adds lock and CPU contention on 2 cores */
  maxConcurrent?: number;
  /** while a transaction is in flight, a batch smaller than this waits up to gatherMs for more */
  minBatch?: number;
  gatherMs?: number;
}

/**
 * The batch statements are named, so PostgreSQL would plan them afresh ("custom" plans) for as
 * long as it guesses that beats a generic plan, and it kept guessing so for arrays and VALUES lists
 * of parameters. Their plans do not depend on the values (lookups by unique keys), so the generic
 * plan is always right; saying so rides along with BEGIN, at no extra round trip.
 */
const BEGIN = 'begin; set local plan_cache_mode = force_generic_plan';

/** The default budgets (GroupCommitOptions.maxKeys, maxConcurrent): the reference cap on advisory locks. */
export const DEFAULT_MAX_KEYS = 1000;
export const DEFAULT_MAX_CONCURRENT = 3;

/**
 * Slots of PostgreSQL's shared lock table that one process's group commit may fill at once with
 * default budgets: every transaction in flight holding its whole key budget, plus the first item's
 * own keys (always taken, whatever the budget: a message id, its parent and the newest references).
 * `listkeeper doctor` compares the lock table with this.
 */
export function advisoryLockCap(firstItemKeys: number): number {
  return DEFAULT_MAX_CONCURRENT * (DEFAULT_MAX_KEYS + firstItemKeys);
}

interface Pending<I, O> {
  item: I;
  keys: string[];
  lane: string;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

export class GroupCommit<I, O> {
  private queue: Pending<I, O>[] = [];
  private running = 0;
  /** of those, transactions of lanes other than the main one (GroupCommitOptions.lane) */
  private runningAside = 0;
  private timer: NodeJS.Timeout | null = null;
  private gathered = false;
  /** lock keys of the transactions in flight, with how many hold each */
  private inFlight = new Map<string, number>();
  private readonly maxBatch: number;
  private readonly maxKeys: number;
  private readonly maxConcurrent: number;
  private readonly minBatch: number;
  private readonly gatherMs: number;

  constructor(
    private pool: pg.Pool,
    private work: (tx: pg.PoolClient, items: I[]) => Promise<O[]>,
    private opts: GroupCommitOptions<I>,
  ) {
    this.maxBatch = opts.maxBatch ?? 64;
    this.maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    this.maxConcurrent = opts.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
    this.minBatch = opts.minBatch ?? 8;
    this.gatherMs = opts.gatherMs ?? 3;
  }

  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, keys: this.opts.lockKeys(item), lane: this.opts.lane?.(item) ?? '', resolve, reject });
      this.pump();
    });
  }

  private pump() {
    while (this.running < this.maxConcurrent && this.queue.length > 0) {
      const ready = this.ready();
      // Everything waiting is related to a message being committed: the batch's end pumps again.
      if (ready.length === 0) return;
      // With a transaction already in flight, a small batch waits a moment for company: a lone
      // item would pay a whole transaction's round trips and fsync for itself. An idle committer
      // starts at once, so light load sees no delay.
      if (this.running > 0 && ready.length < this.minBatch && !this.gathered) {
        this.timer ??= setTimeout(() => {
          this.timer = null;
          this.gathered = true;
          this.pump();
          this.gathered = false;
        }, this.gatherMs);
        return;
      }
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      const taken = new Set(ready);
      const batch = ready.map((i) => this.queue[i]);
      this.queue = this.queue.filter((_, i) => !taken.has(i));
      const keys = batch.flatMap((p) => p.keys);
      const aside = batch[0].lane !== '';
      for (const k of keys) this.inFlight.set(k, (this.inFlight.get(k) ?? 0) + 1);
      this.running++;
      if (aside) this.runningAside++;
      void this.commit(batch).finally(() => {
        for (const k of keys) {
          const n = this.inFlight.get(k)! - 1;
          if (n === 0) this.inFlight.delete(k);
          else this.inFlight.set(k, n);
        }
        this.running--;
        if (aside) this.runningAside--;
        this.pump();
      });
    }
  }

  /**
   * The queued items that can start now, in order, up to maxBatch. An item that shares a lock key
   * with a transaction in flight would only sleep on its lock inside PostgreSQL, holding a slot
   * and a connection: it waits here instead, and so does anything queued after it that shares a
   * key with it (a reply stays behind its parent). All of one lane: the first item whose lane may
   * start a transaction now chooses it; an item passed over blocks its keys alike.
   */
  private ready(): number[] {
    const out: number[] = [];
    let blocked: Set<string> | null = null;
    let keyCount = 0;
    let lane: string | null = null;
    for (let i = 0; i < this.queue.length && out.length < this.maxBatch; i++) {
      const { keys, lane: own } = this.queue[i];
      const passed = lane === null ? own !== '' && this.runningAside >= Math.max(1, this.maxConcurrent - 1) : own !== lane;
      if (passed || keys.some((k) => this.inFlight.has(k) || blocked?.has(k))) {
        blocked ??= new Set();
        for (const k of keys) blocked.add(k);
      } else {
        lane = own;
        // The first item always goes (its own keys are bounded by the caller); others up to the budget.
        if (out.length > 0 && keyCount + keys.length > this.maxKeys) break;
        keyCount += keys.length;
        out.push(i);
      }
    }
    return out;
  }

  private async commit(batch: Pending<I, O>[]) {
    if (batch.length === 1) return this.alone(batch[0]);
    let results: O[];
    try {
      results = await this.transaction(batch);
    } catch (err) {
      log.debug({ err, size: batch.length }, 'batch failed; re-running its items one by one');
      await Promise.all(batch.map((p) => this.alone(p)));
      return;
    }
    batch.forEach((p, i) => p.resolve(results[i]));
  }

  /**
   * One item in its own transaction. A lost connection is no fault of the item: it is tried once
   * more on a fresh one (`work` may run twice; a COMMIT whose answer was lost is found done), and
   * if that fails too, its caller hears the error: a server that is down fails items, it does not
   * hold them.
   */
  private async alone(p: Pending<I, O>) {
    for (let attempt = 1; ; attempt++) {
      try {
        return p.resolve((await this.transaction([p]))[0]);
      } catch (err) {
        if (attempt < 2 && isConnectionLoss(err)) continue;
        return p.reject(err);
      }
    }
  }

  private transaction(batch: Pending<I, O>[]): Promise<O[]> {
    const items = batch.map((p) => p.item);
    return withTransaction(this.pool, async (tx) => {
      const keys = batch.flatMap((p) => p.keys);
      if (keys.length > 0) await tx.query({ name: 'lock_thread_keys', text: 'select lock_thread_keys($1::text[])', values: [keys] });
      const results = await this.work(tx, items);
      if (results.length !== items.length) throw new Error(`group commit: ${results.length} results for ${items.length} items`);
      return results;
    }, BEGIN);
  }
}
