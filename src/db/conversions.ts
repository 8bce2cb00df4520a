/*
 * The conversions table (sql/0056): one row per background conversion job, its keyset cursor and
 * progress. A batch claims its job's row with FOR UPDATE SKIP LOCKED inside the batch's own
 * transaction, so the claim ends with the batch: a worker killed mid-batch loses that batch's
 * work and its lock together, and the next worker starts from the last committed cursor.
 */

import type { Queryable } from './pool.ts';

export interface ConversionRow {
  name: string;
  last_key: number;
  rows_done: number;
  rows_changed: number;
  total_estimate: number | null;
  started_at: Date | null;
  done_at: Date | null;
  locked_by: string | null;
  locked_at: Date | null;
  error: string | null;
  error_at: Date | null;
}

const COLUMNS = `name, last_key::float8 as last_key, rows_done::float8 as rows_done, rows_changed::float8 as rows_changed,
  total_estimate::float8 as total_estimate, started_at, done_at, locked_by, locked_at, error, error_at`;

/**
 * Bounds for the rest of the caller's transaction: a batch never waits long on a lock the site's
 * traffic holds, nor runs long (either makes it fail, recorded, and be tried again later).
 */
export async function limitBatch(tx: Queryable, lockTimeoutMs: number, statementTimeoutMs: number): Promise<void> {
  await tx.query(`select set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`, [`${lockTimeoutMs}ms`, `${statementTimeoutMs}ms`]);
}

/**
 * An unfinished job among `names` (the ones this release knows: a newer release's job is left to
 * it) that no other transaction holds, locked until the caller's transaction ends; null if none.
 */
export async function claimConversion(tx: Queryable, names: string[]): Promise<ConversionRow | null> {
  const { rows } = await tx.query<ConversionRow>(
    `select ${COLUMNS} from conversions where done_at is null and name = any($1::text[])
      order by name limit 1 for update skip locked`,
    [names],
  );
  return rows[0] ?? null;
}

/** The first batch of a job: when it started and how many rows it expects. */
export async function startConversion(tx: Queryable, name: string, totalEstimate: number): Promise<void> {
  await tx.query('update conversions set started_at = now(), total_estimate = $2 where name = $1', [name, totalEstimate]);
}

/** Moves the cursor past a batch, in the batch's transaction: the work and the cursor commit together. */
export async function advanceConversion(tx: Queryable, name: string, worker: string, lastKey: number, seen: number, changed: number): Promise<void> {
  await tx.query(
    `update conversions set last_key = $3, rows_done = rows_done + $4, rows_changed = rows_changed + $5,
            locked_by = $2, locked_at = now(), error = null, error_at = null
      where name = $1`,
    [name, worker, lastKey, seen, changed],
  );
}

/** Nothing is left past the cursor: the job is done and no worker looks at it again. */
export async function finishConversion(tx: Queryable, name: string, worker: string): Promise<void> {
  await tx.query(
    `update conversions set done_at = now(), locked_by = $2, locked_at = now(), error = null, error_at = null
      where name = $1`,
    [name, worker],
  );
}

/** A batch failed (its transaction was rolled back): what went wrong, for the dashboard and `queue`. */
export async function recordConversionError(db: Queryable, name: string, worker: string, error: string): Promise<void> {
  await db.query('update conversions set error = left($3, 2000), error_at = now(), locked_by = $2 where name = $1', [name, worker, error]);
}

/** Every job, finished or not, for `listkeeper queue`, /metrics and the dashboard. */
export async function conversionProgress(db: Queryable): Promise<ConversionRow[]> {
  const { rows } = await db.query<ConversionRow>(`select ${COLUMNS} from conversions order by name`);
  return rows;
}
