/*
 * The conversions table (sql/0056): one row per background conversion job, its keyset cursor and
 * progress. A batch claims its job's row with FOR UPDATE SKIP LOCKED inside the batch's own
 * transaction, so the claim ends with the batch: a worker killed mid-batch loses that batch's
 * work and its lock together, and the next worker starts from the last committed cursor.
 */

import type { Queryable } from './pool.ts';

export interface ConversionRow extends ClaimedConversion {
  /** rows skipped: each failed alone, not transiently (conversion_skips, sql/0072) */
  rows_skipped: number;
  /** the last of them, with its error */
  last_skipped: { key: number; error: string; skipped_at: Date } | null;
  /** seconds since its last batch by the database's clock (never the reader's: `doctor` may run on a machine whose clock is off) */
  idle_seconds: number | null;
}

export interface ClaimedConversion {
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

const COLUMNS = `c.name, c.last_key::float8 as last_key, c.rows_done::float8 as rows_done, c.rows_changed::float8 as rows_changed,
  c.total_estimate::float8 as total_estimate, c.started_at, c.done_at, c.locked_by, c.locked_at, c.error, c.error_at`;
const SKIPS = `(select count(*)::float8 from conversion_skips s where s.name = c.name) as rows_skipped,
  (select json_build_object('key', s.key, 'error', s.error, 'skipped_at', s.skipped_at) from conversion_skips s
    where s.name = c.name order by s.skipped_at desc, s.key desc limit 1) as last_skipped`;

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
export async function claimConversion(tx: Queryable, names: string[]): Promise<ClaimedConversion | null> {
  const { rows } = await tx.query<ClaimedConversion>(
    // A job whose last batch failed comes after the others: one that cannot go on for now does
    // not keep them waiting (its error stays until a batch of it succeeds).
    `select ${COLUMNS} from conversions c where c.done_at is null and c.name = any($1::text[])
      order by c.error_at is not null, c.name limit 1 for update skip locked`,
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

/** The jobs among `names` that are done, with their cursor: whether rows behind it need them again is each job's (core/conversions.ts). */
export async function doneConversions(db: Queryable, names: string[]): Promise<{ name: string; last_key: number }[]> {
  const { rows } = await db.query<{ name: string; last_key: number }>(
    'select name, last_key::float8 as last_key from conversions where done_at is not null and name = any($1::text[]) order by name',
    [names],
  );
  return rows;
}

/**
 * A done job opened again, its cursor at `fromKey` (rows behind it need it), expecting `estimate`
 * more rows; false if it was not done any more (another worker opened it first).
 */
export async function reopenConversion(db: Queryable, name: string, fromKey: number, estimate: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `update conversions set done_at = null, last_key = $2, total_estimate = rows_done + $3, error = null, error_at = null
      where name = $1 and done_at is not null`,
    [name, fromKey, estimate],
  );
  return rowCount === 1;
}

/** A batch failed (its transaction was rolled back): what went wrong, for the dashboard and `queue`. */
export async function recordConversionError(db: Queryable, name: string, worker: string, error: string): Promise<void> {
  await db.query('update conversions set error = left($3, 2000), error_at = now(), locked_by = $2 where name = $1', [name, worker, error]);
}

/**
 * A row that failed alone, not transiently, is skipped: recorded with its error, and the cursor
 * moved past it, in one statement, if the job's cursor is still `cursor` and no other worker holds
 * the job (else false: that worker carries on). Counted among the rows looked at, not changed.
 */
export async function skipConversionRow(db: Queryable, name: string, worker: string, cursor: number, key: number, error: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `with claimed as (select name from conversions where name = $1 and done_at is null and last_key = $3 for update skip locked),
          skipped as (insert into conversion_skips (name, key, error, worker)
                      select name, $4, left($5, 2000), $2 from claimed
                      on conflict (name, key) do update set error = excluded.error, worker = excluded.worker, skipped_at = now()
                      returning 1)
     update conversions c set last_key = $4, rows_done = rows_done + 1, locked_by = $2, locked_at = now(), error = null, error_at = null
       from claimed where c.name = claimed.name`,
    [name, worker, cursor, key, error],
  );
  return rowCount === 1;
}

/** How many rows a job has changed so far, over all its batches (0 for a job not in the table). */
export async function conversionRowsChanged(db: Queryable, name: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select rows_changed::float8 as n from conversions where name = $1', [name]);
  return rows[0]?.n ?? 0;
}

/**
 * Whether the caller's transaction has written anything yet: PostgreSQL gives a transaction its
 * id at its first write (of a subtransaction's too), and reads alone never do.
 */
export async function transactionWrote(tx: Queryable): Promise<boolean> {
  const { rows } = await tx.query<{ wrote: boolean }>('select pg_current_xact_id_if_assigned() is not null as wrote');
  return rows[0].wrote;
}

/** The rows a job skipped, the last first: for `listkeeper doctor`. */
export async function conversionSkips(db: Queryable, name: string, limit: number): Promise<{ key: number; error: string; skipped_at: Date }[]> {
  const { rows } = await db.query<{ key: number; error: string; skipped_at: Date }>(
    'select key::float8 as key, error, skipped_at from conversion_skips where name = $1 order by skipped_at desc, key desc limit $2',
    [name, limit],
  );
  return rows;
}

/** Every job, finished or not, with the rows it skipped, for `listkeeper queue`, /metrics, the dashboard and `doctor`. */
export async function conversionProgress(db: Queryable): Promise<ConversionRow[]> {
  const { rows } = await db.query<ConversionRow & { last_skipped: { key: number; error: string; skipped_at: string } | null }>(
    `select ${COLUMNS}, ${SKIPS}, extract(epoch from now() - c.locked_at)::float8 as idle_seconds from conversions c order by c.name`,
  );
  return rows.map((r) => ({ ...r, last_skipped: r.last_skipped && { ...r.last_skipped, key: Number(r.last_skipped.key), skipped_at: new Date(r.last_skipped.skipped_at) } }));
}
