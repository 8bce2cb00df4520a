/*
 * Conversion jobs: work that touches every message (a backfill, a digest, a re-index) done in the
 * background by the delivery workers instead of in a start-up migration. A migration adds what the
 * job fills (a nullable column, a table) and the job's row in `conversions`; the code reads
 * correctly both before the job has finished (it falls back where the job has not been yet) and
 * after. Each batch is one short transaction that claims the job's row (FOR UPDATE SKIP LOCKED),
 * does the next rows by key and moves the cursor: killed at any moment, a job loses at most its
 * batch in flight and goes on from its cursor on whichever worker comes next. A job that finds
 * nothing past its cursor marks itself done and is never looked at again.
 *
 * A batch that fails (but for a lost connection: the database is gone, nothing can be done now) is
 * done again one row per transaction, at once. A row that fails alone, with an error that is not
 * transient (db/pg-errors.ts: not a lost or terminated connection, a serialization failure or
 * deadlock, a lock or statement timeout, a lack of resources) and is the row's own (isRowFailure:
 * a value or constraint refused, an error of the code; not a missing table or a machine out of
 * files), while the job is seen to work on the rows after it (core/conversion-look-ahead.ts: one
 * of the next few it has work for, tried and rolled back, is done), fails every time: it is
 * skipped, recorded in `conversion_skips` with its error, and the cursor moves past it, so that
 * poisoned rows, one or several in a row, cannot stop a job for good. A failure every row would
 * meet skips nothing: the job keeps its error and waits, and the jobs after it are taken first
 * (claimConversion). A transient failure ends the pass, to be tried again on the next one, and
 * never makes a row skipped. Row by row also gets a job past a batch too slow for the statement
 * timeout.
 *
 * A done job whose rows can need it again (`behind`: the attachment-text job, for messages the
 * previous release archives during a rolling upgrade, after the job passed them) is opened again
 * by the workers when they find such a row at the end of a pass, its cursor put back before that
 * row: it walks from there to the end, not the whole archive.
 */

import type pg from 'pg';
import {
  advanceConversion, claimConversion, doneConversions, finishConversion, limitBatch, recordConversionError, reopenConversion, skipConversionRow,
  startConversion,
} from '../db/conversions.ts';
import { isRowFailure, isTransientFailure } from '../db/pg-errors.ts';
import { isConnectionLoss, withTransaction } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';
import type { BatchLimits, ConversionJob } from './conversion-job.ts';
import { whoseFailure } from './conversion-look-ahead.ts';
import { attachmentText } from './conversions/attachment-text.ts';
import { addressSpellings } from './conversions/address-spellings.ts';
import { messageDigests } from './conversions/message-digests.ts';
import { oneLineFields } from './conversions/one-line-fields.ts';
import { searchVectors } from './conversions/search-vectors.ts';

export type { BatchLimits, ConversionJob } from './conversion-job.ts';

/** Every job this release knows. A job in the table that is not here belongs to a newer release. */
export const CONVERSIONS: readonly ConversionJob[] = [messageDigests, attachmentText, addressSpellings, searchVectors, oneLineFields];

export function conversionJob(name: string): ConversionJob | undefined {
  return CONVERSIONS.find((j) => j.name === name);
}

type BatchResult = { kind: 'idle' } | { kind: 'batch'; name: string; seen: number; changed: number; lastKey: number } | { kind: 'done'; name: string };

/** A batch failed (rolled back): its job, the cursor it started from and, done alone, the row's key. */
export class ConversionBatchFailure extends Error {
  constructor(readonly job: string, readonly cursor: number, readonly key: number | null, cause: unknown) {
    super((cause as Error)?.message ?? String(cause), { cause });
    this.name = 'ConversionBatchFailure';
  }
}

/** Which batch to run when it is not just the next one of any job: one row of this job, from this cursor only. */
interface OneRow {
  name: string;
  cursor: number;
}

/**
 * One batch of one job that no one else is working on, in one transaction. With `one`, the single
 * row past `one.cursor` of that job, if its cursor is still there (another worker may have moved
 * it: idle then). A failure is recorded on the job's row and thrown as a ConversionBatchFailure.
 */
export async function runConversionBatch(pool: pg.Pool, worker: string, limits: BatchLimits, jobs: readonly ConversionJob[] = CONVERSIONS, one?: OneRow): Promise<BatchResult> {
  let claimed: { name: string; cursor: number } | null = null;
  let key: number | null = null;
  try {
    return await withTransaction(pool, async (tx) => {
      await limitBatch(tx, 2_000, limits.statementTimeoutMs ?? 60_000);
      const row = await claimConversion(tx, one ? [one.name] : jobs.map((j) => j.name));
      if (!row || (one && row.last_key !== one.cursor)) return { kind: 'idle' } as const;
      claimed = { name: row.name, cursor: row.last_key };
      const job = jobs.find((j) => j.name === row.name)!;
      if (!row.started_at) await startConversion(tx, row.name, await job.estimate(tx, row.last_key));
      let r;
      if (one) {
        key = await job.nextKey(tx, row.last_key);
        // The row named, and it alone: a row committed late behind it is not the one that failed.
        r = key === null ? { lastKey: null, seen: 0, changed: 0 } : await job.batch(tx, key - 1, 1);
      } else {
        r = await job.batch(tx, row.last_key, limits.batchRows);
      }
      if (r.seen === 0 || r.lastKey === null) {
        await finishConversion(tx, row.name, worker);
        return { kind: 'done', name: row.name } as const;
      }
      await advanceConversion(tx, row.name, worker, r.lastKey, r.seen, r.changed);
      return { kind: 'batch', name: row.name, seen: r.seen, changed: r.changed, lastKey: r.lastKey } as const;
    });
  } catch (err) {
    if (!claimed) throw err;
    const { name, cursor } = claimed;
    await recordConversionError(pool, name, worker, (err as Error).message).catch(() => undefined);
    throw new ConversionBatchFailure(name, cursor, key, err);
  }
}

/**
 * Runs batches until no job is left to this worker (all done, or held by other workers), pausing
 * `pauseMs` between two so that the site's own traffic keeps the database, and stopping between
 * batches when `stopping()` says so. A batch that fails is done again row by row (rowByRow()); a
 * transient failure ends the pass, and the next pass tries again. With nothing left to claim, the
 * done jobs with rows behind their cursor are opened again (reopenBehind()), once a pass.
 */
export async function runConversions(
  pool: pg.Pool, worker: string, limits: BatchLimits & { pauseMs: number }, log: Logger, stopping: () => boolean, jobs: readonly ConversionJob[] = CONVERSIONS,
  failures = new RepeatedFailures(log),
): Promise<void> {
  // Done jobs are opened again at most once a pass: whatever went wrong, never a loop in one.
  let looked = false;
  while (!stopping()) {
    let r: BatchResult;
    try {
      r = await runConversionBatch(pool, worker, limits, jobs);
      failures.ok('conversion batch');
    } catch (err) {
      const failure = err instanceof ConversionBatchFailure ? err : null;
      if (!failure || isConnectionLoss(failure.cause)) {
        // The database away: every pass fails so until it is back, said once and summed up.
        failures.failed('conversion batch', failure?.cause ?? err, 'a conversion batch failed; it is tried again on the next pass', { conversion: failure?.job });
        return;
      }
      log.warn({ err: failure.cause, conversion: failure.job }, 'a conversion batch failed; its rows are done again one at a time');
      if (!(await rowByRow(pool, worker, limits, log, stopping, jobs, failure))) return;
      continue;
    }
    if (r.kind === 'idle') {
      if (looked) return;
      looked = true;
      if (await reopenBehind(pool, log, jobs)) continue;
      return;
    }
    if (r.kind === 'done') {
      log.info({ conversion: r.name }, 'conversion finished');
      continue;
    }
    await pause(limits.pauseMs);
  }
}

/** Opens again the done jobs that have rows to do behind their cursor (`behind`); whether any was. */
async function reopenBehind(pool: pg.Pool, log: Logger, jobs: readonly ConversionJob[]): Promise<boolean> {
  const watched = jobs.filter((j) => j.behind);
  if (watched.length === 0) return false;
  let reopened = false;
  try {
    for (const done of await doneConversions(pool, watched.map((j) => j.name))) {
      const job = watched.find((j) => j.name === done.name)!;
      const key = await job.behind!(pool);
      if (key === null) continue;
      const from = Math.min(done.last_key, key - 1);
      if (await reopenConversion(pool, job.name, from, await job.estimate(pool, from))) {
        log.info({ conversion: job.name, key }, 'conversion opened again: a row behind it needs it (archived by the previous release)');
        reopened = true;
      }
    }
  } catch (err) {
    log.error({ err }, 'could not check the finished conversions for rows behind them; checked again on the next pass');
  }
  return reopened;
}

/**
 * The rows of a failed batch, one per transaction (without pauses: each is a few statements), from
 * the cursor it started at: as many as the batch could have had. A row that fails alone, not
 * transiently, is skipped (skipConversionRow()). Returns false when the pass is to end: a
 * transient failure, the job's cursor moved by another worker (which carries on), or the worker
 * stopping.
 */
async function rowByRow(pool: pg.Pool, worker: string, limits: BatchLimits, log: Logger, stopping: () => boolean, jobs: readonly ConversionJob[], failed: ConversionBatchFailure): Promise<boolean> {
  let cursor = failed.cursor;
  for (let n = 0; n < limits.batchRows; n++) {
    if (stopping()) return false;
    let r: BatchResult;
    try {
      r = await runConversionBatch(pool, worker, limits, jobs, { name: failed.job, cursor });
    } catch (err) {
      const f = err instanceof ConversionBatchFailure ? err : null;
      if (!f || f.key === null || isTransientFailure(f.cause)) {
        log.error({ err: f?.cause ?? err, conversion: failed.job }, 'a conversion row failed; it is tried again on the next pass');
        return false;
      }
      const message = (f.cause as Error)?.message ?? String(f.cause);
      // Skipped only when the failure is the row's own: one every row would meet (a table not
      // there yet, a bug of the release, a machine out of files) would otherwise skip them all.
      const whose = isRowFailure(f.cause) ? await whoseFailure(pool, limits, jobs.find((j) => j.name === f.job)!, f.key) : 'job';
      if (whose === 'unknown') {
        log.error({ err: f.cause, conversion: f.job, key: f.key }, 'a conversion row failed, and the rows after it could not be tried (a transient failure): nothing skipped; tried again on the next pass');
        return false;
      }
      if (whose === 'job') {
        log.error({ err: f.cause, conversion: f.job, key: f.key }, 'a conversion row failed, and not for anything of its own (the rows after it fail too, none being done, or the error is the release\'s or the machine\'s): nothing skipped, the job waits; tried again on the next pass');
        return false;
      }
      try {
        if (!(await skipConversionRow(pool, f.job, worker, f.cursor, f.key, message))) return false;
      } catch (skipErr) {
        log.error({ err: skipErr, conversion: f.job, key: f.key }, 'a conversion row failed alone, and could not be recorded as skipped; it is tried again on the next pass');
        return false;
      }
      log.warn({ err: f.cause, conversion: f.job, key: f.key }, 'a conversion row failed alone, not transiently: skipped (conversion_skips)');
      cursor = f.key;
      continue;
    }
    if (r.kind === 'idle') return false;
    if (r.kind === 'done') {
      log.info({ conversion: r.name }, 'conversion finished');
      return true;
    }
    cursor = r.lastKey;
  }
  return true;
}

const pause = (ms: number) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());
