/*
 * The pool archive reads use when DATABASE_READ_URL names a replica: archive pages, search,
 * downloads, `export`. Three things send a read to the primary instead:
 *
 * - The replica cannot be reached (refused, terminated, shut down): the read is run again on the
 *   primary at once, so the reader sees a page, not an error. The replica is then left alone for
 *   REPLICA_RETRY_MS before a read tries it again; each outage is logged when it starts and when
 *   it ends, and every read sent to the primary for it is counted
 *   (listkeeper_read_fallbacks_total{reason="unreachable"}).
 * - The read must see a write the replica may not have replayed yet: inside readFromPrimary()
 *   (the web runs the requests of a browser that has just written there: web/fresh-reads.ts),
 *   counted with reason="fresh".
 * - The replica is more than DATABASE_READ_MAX_LAG (10 s) behind the primary (reason="lagging"):
 *   a member removed, a list made private or a message hidden for privacy must not stay visible
 *   for as long as a stalled replica lags (ReplicaLag, one per replica, shared by the pools that
 *   read from it). The bound is MAX_LAG plus a second or two; the fresh-reads window and the
 *   second purge (cache/purger.ts) cover what is younger.
 *
 * A read the replica cancelled because replaying the primary's changes needed its rows ("conflict
 * with recovery") is run again on the primary too (reason="recovery_conflict"). A statement that
 * fails for another reason (a syntax error, a timeout) is not: it would fail on the primary too.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { log } from '../log.ts';
import { readFallbacks } from '../metrics.ts';
import { briefError, isConnectionLoss, isRecoveryConflict } from './pool.ts';

const REPLICA_RETRY_MS = 5_000;
const LAG_CHECK_MS = 1_000;

/** A pg_lsn's text (`16/B374D848`) as a number that orders as the position does. */
function lsnOf(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

type ReplicaQuery = (text: string) => Promise<pg.QueryResult<{ lsn: string | null }>>;

/**
 * Whether a replica is more than `maxLagMs` behind its primary: once a second, the primary's WAL
 * position is noted and the replica asked how far it has replayed; short of the position noted
 * `maxLagMs` ago, it is lagging until it has replayed that one. One per replica, watched by the
 * pools that read from it (archive reads, searches) while they are open.
 */
export class ReplicaLag {
  lagging = false;
  /** the primary's WAL positions noted in the last maxLagMs, oldest first, and the one before */
  private positions: { at: number; lsn: bigint }[] = [];
  private replicas: ReplicaQuery[] = [];
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(private readonly primary: pg.Pool, private readonly maxLagMs: number, private readonly role: string) {}

  /** Checks through `replica` (a pool's own query, which never falls back) until the returned function is called. */
  watch(replica: ReplicaQuery): () => void {
    this.replicas.push(replica);
    this.timer ??= setInterval(() => void this.check(), LAG_CHECK_MS).unref();
    return () => {
      this.replicas = this.replicas.filter((r) => r !== replica);
      if (this.replicas.length > 0) return;
      clearInterval(this.timer);
      this.timer = undefined;
    };
  }

  private async check(): Promise<void> {
    if (this.checking || this.replicas.length === 0) return;
    this.checking = true;
    try {
      const now = performance.now();
      const { rows } = await this.primary.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn');
      this.positions.push({ at: now, lsn: lsnOf(rows[0].lsn) });
      // Keep the newest position at least maxLagMs old, and every one after it.
      let due = -1;
      for (let i = 0; i < this.positions.length && this.positions[i].at <= now - this.maxLagMs; i++) due = i;
      if (due < 0) return;
      this.positions.splice(0, due);
      const replica = await this.replicas[0]('select pg_last_wal_replay_lsn()::text as lsn');
      // null: not a standby (a primary named as its own replica), never behind.
      const replayed = replica.rows[0].lsn;
      const behind = replayed !== null && lsnOf(replayed) < this.positions[0].lsn;
      if (behind !== this.lagging) {
        this.lagging = behind;
        if (behind) log.warn({ role: this.role, maxLagSeconds: this.maxLagMs / 1000 }, 'read replica lagging more than DATABASE_READ_MAX_LAG: reading from the primary');
        else log.info({ role: this.role }, 'read replica caught up: reading from it');
      }
    } catch {
      // The replica unreachable is the pools' to handle; the primary unreachable fails every
      // write anyway. Either way the last verdict stands until a check succeeds.
    } finally {
      this.checking = false;
    }
  }
}

const primaryReads = new AsyncLocalStorage<boolean>();

/** Runs fn with every read-pool read in it (and in what it starts) sent to the primary. */
export function readFromPrimary<T>(fn: () => T): T {
  return primaryReads.run(true, fn);
}

/**
 * A pool on the replica that falls back to `primary` (set with fallBackTo()). Only the promise
 * forms of query() and connect() are ours; listkeeper uses no other.
 */
export class ReplicaPool extends pg.Pool {
  private primary: pg.Pool | null = null;
  private downUntil = 0;
  private role = 'read';
  private lag: ReplicaLag | undefined;
  private unwatch: (() => void) | undefined;

  /** `lag`: the watch of this replica's lag, shared with the other pools on it (none: never lagging). */
  fallBackTo(primary: pg.Pool, role: string, lag?: ReplicaLag): this {
    this.primary = primary;
    this.role = role;
    this.lag = lag;
    this.unwatch = lag?.watch((text) => super.query<{ lsn: string | null }>(text));
    return this;
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- pg's overloads
  override end(...args: any[]): any {
    this.unwatch?.();
    return super.end(...(args as []));
  }

  /** Where the next read goes: the primary while the replica is down or the read must be fresh. */
  private target(): 'replica' | 'primary' {
    if (!this.primary) return 'replica';
    if (primaryReads.getStore() === true) {
      readFallbacks.inc({ reason: 'fresh' });
      return 'primary';
    }
    if (performance.now() < this.downUntil) {
      readFallbacks.inc({ reason: 'unreachable' });
      return 'primary';
    }
    if (this.lag?.lagging) {
      readFallbacks.inc({ reason: 'lagging' });
      return 'primary';
    }
    return 'replica';
  }

  private lost(err: unknown) {
    const wasUp = this.downUntil === 0;
    this.downUntil = performance.now() + REPLICA_RETRY_MS;
    readFallbacks.inc({ reason: 'unreachable' });
    if (wasUp) log.warn({ error: briefError(err), role: this.role, retryMs: REPLICA_RETRY_MS }, 'read replica unreachable: reading from the primary');
  }

  private back() {
    if (this.downUntil === 0) return;
    this.downUntil = 0;
    log.info({ role: this.role }, 'read replica reachable again: reading from it');
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- pg's overloads; see the class comment
  override query(...args: any[]): any {
    if (typeof args[args.length - 1] === 'function') return super.query(...(args as Parameters<pg.Pool['query']>));
    return this.read((pool) => (pool === this ? super.query(...(args as [string])) : pool.query(...(args as [string]))));
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as query()
  override connect(...args: any[]): any {
    if (args.length > 0) return super.connect(...(args as Parameters<pg.Pool['connect']>));
    return this.read((pool) => (pool === this ? super.connect() : pool.connect()));
  }

  private async read<T>(run: (pool: pg.Pool) => Promise<T>): Promise<T> {
    if (this.target() === 'primary') return run(this.primary!);
    const retrying = this.downUntil !== 0;
    try {
      const result = await run(this);
      if (retrying) this.back();
      return result;
    } catch (err) {
      if (!this.primary) throw err;
      if (isRecoveryConflict(err)) {
        // The replica is up; only this read met the replay.
        readFallbacks.inc({ reason: 'recovery_conflict' });
        return run(this.primary);
      }
      if (!isConnectionLoss(err)) throw err;
      this.lost(err);
      return run(this.primary);
    }
  }
}
