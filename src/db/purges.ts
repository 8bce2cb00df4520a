/*
 * The purge queue (sql/0055): keys of archive pages a cache in front must drop, queued by triggers
 * in the transaction of the change; claimed by the purger (src/cache/purger.ts) with SKIP LOCKED,
 * like the outbox, and deleted once the cache has answered.
 */

import type { Queryable } from './pool.ts';

export const PURGE_CHANNEL = 'listkeeper_purges';

export interface ClaimedPurge {
  id: number;
  key: string;
  attempts: number;
}

/**
 * Claims up to `limit` due rows, oldest first, and every other row with one of their keys that no
 * live purger holds, waiting to retry or not (a duplicate is sent once, now). A claim older than
 * `leaseSeconds` is a dead purger's: taken over.
 */
export async function claimPurges(db: Queryable, purger: string, limit: number, leaseSeconds: number): Promise<ClaimedPurge[]> {
  const { rows } = await db.query<ClaimedPurge>(
    `with due as (
       select id, key from purges
        where run_at <= now() and (locked_at is null or locked_at < now() - make_interval(secs => $3))
        order by id limit $2 for update skip locked
     ), same as (
       select p.id from purges p
        where p.key in (select key from due) and (p.locked_at is null or p.locked_at < now() - make_interval(secs => $3))
        for update skip locked
     )
     update purges p set locked_by = $1, locked_at = now()
      where p.id in (select id from due union select id from same)
     returning p.id::int as id, p.key, p.attempts`,
    [purger, limit, leaseSeconds],
  );
  return rows;
}

/**
 * The cache dropped these keys. Rows sent for the first time wait `resendSeconds` and are sent once
 * more (sql/0069: a page being rendered from the old data meanwhile was kept after the first
 * purge); rows that were sent before are done.
 */
export async function confirmPurges(db: Queryable, ids: number[], resendSeconds: number): Promise<void> {
  await db.query(
    `with done as (delete from purges where id = any($1::bigint[]) and sent_at is not null)
     update purges set sent_at = now(), run_at = now() + make_interval(secs => $2), attempts = 0, last_error = null,
            locked_by = null, locked_at = null
      where id = any($1::bigint[]) and sent_at is null`,
    [ids, resendSeconds],
  );
}

/** The cache did not answer or refused: tried again later, the wait growing with each attempt (at most exp(7) s ≈ 18 min). */
export async function retryPurges(db: Queryable, ids: number[], error: string): Promise<void> {
  await db.query(
    `update purges set attempts = attempts + 1, locked_by = null, locked_at = null, last_error = left($2, 500),
            run_at = greatest(now(), run_at) + exp(least(attempts + 1, 7)) * interval '1 second'
      where id = any($1::bigint[])`,
    [ids, error],
  );
}

/** Gives claimed rows back untried (the purger stops). */
export async function releasePurges(db: Queryable, ids: number[]): Promise<void> {
  await db.query('update purges set locked_by = null, locked_at = null where id = any($1::bigint[])', [ids]);
}

/**
 * Turns the triggers' queuing on or off (sql/0055's purge_switch): on where a purger has a
 * PURGE_URL to send to; off, changes to the archive queue nothing and cost nothing more.
 */
export async function setPurging(db: Queryable, enabled: boolean): Promise<void> {
  await db.query('update purge_switch set enabled = $1, changed_at = now() where enabled <> $1', [enabled]);
}

/** Without PURGE_URL nothing is in front to purge: what the triggers queued is dropped. */
export async function discardPurges(db: Queryable): Promise<number> {
  const { rowCount } = await db.query('delete from purges');
  return rowCount ?? 0;
}

/** Only purges not yet sent count: those waiting for their second send have reached the cache once. */
export interface PurgeDepth {
  /** distinct keys waiting (what the next requests will carry) */
  keys: number;
  /** rows waiting; more than keys when changes repeat a key */
  rows: number;
  /** age of the oldest waiting row, 0 when none */
  oldestSeconds: number;
}

export async function purgeDepth(db: Queryable): Promise<PurgeDepth> {
  const { rows } = await db.query<{ keys: number; rows: number; oldest: number }>(
    `select count(distinct key)::int as keys, count(*)::int as rows,
            coalesce(extract(epoch from now() - min(queued_at)), 0)::float8 as oldest
       from purges where sent_at is null`,
  );
  return { keys: rows[0].keys, rows: rows[0].rows, oldestSeconds: rows[0].oldest };
}

export interface PurgeQueueStats extends PurgeDepth {
  /** keys whose last attempt failed, waiting for their next try */
  retrying: number;
  /** the oldest waiting key, with its last failure */
  oldest: { key: string; queued_at: Date; run_at: Date; attempts: number; last_error: string | null } | null;
}

/** The purge queue for `listkeeper queue`. */
export async function purgeQueueStats(db: Queryable): Promise<PurgeQueueStats> {
  const depth = await purgeDepth(db);
  const { rows } = await db.query<{ retrying: number }>('select count(distinct key)::int as retrying from purges where attempts > 0 and sent_at is null');
  const oldest = await db.query<NonNullable<PurgeQueueStats['oldest']>>(
    'select key, queued_at, run_at, attempts, last_error from purges where sent_at is null order by queued_at, id limit 1',
  );
  return { ...depth, retrying: rows[0].retrying, oldest: oldest.rows[0] ?? null };
}
