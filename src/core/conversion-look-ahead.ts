/*
 * Whose a conversion row's failure is, when the row failed alone, not transiently, with a failure
 * of a row's kind (isRowFailure): the row's own, and the row is skipped (core/conversions.ts), or
 * the job's, and the job waits with its error. The rows after it are tried in dry runs, each in a
 * transaction rolled back whatever happens, a batch's worth at a time (one row at a time past a
 * dry batch that fails, to name the row that failed it). The failure is the row's own as soon as
 * one of them is done and writes. Rows the job has nothing to do for (a message without
 * attachments, one whose digest is there) are passed over: done without writing anything, they
 * say nothing of whether the job works. It is the job's when LOOK_AHEAD rows after it fail too,
 * whatever their errors (a job-wide failure whose message names the row would not look alike),
 * or when LOOK_AHEAD batches' worth of rows were looked at without a verdict.
 *
 * At the end of the table there is nothing more to try, and waiting would keep a job whose last
 * rows are poisoned waiting for good; skipping whatever fails there would skip every row of a
 * small table under a job-wide failure. There, the rows the job has changed before (rows_changed)
 * are the evidence that it works: with any, the row is skipped; with none, the job waits. A
 * job-wide failure that begins with fewer than LOOK_AHEAD rows left to do skips at most those,
 * each recorded with its error.
 *
 * A lost connection, or a transient failure of a row tried alone (a lock or statement timeout),
 * tells nothing: nothing is skipped, and the next pass asks again.
 */

import type pg from 'pg';
import { conversionRowsChanged, limitBatch, transactionWrote } from '../db/conversions.ts';
import { isTransientFailure } from '../db/pg-errors.ts';
import { isConnectionLoss, withTransaction } from '../db/pool.ts';
import type { BatchLimits, ConversionJob } from './conversion-job.ts';

/** Rows after a failed one that must fail too, none being done, for the failure to be the job's. */
export const LOOK_AHEAD = 8;

/** 'unknown': the rows after it could not be tried (a transient failure); asked again on the next pass. */
export type Whose = 'row' | 'job' | 'unknown';

type Step = { kind: 'end' } | { kind: 'wrote' } | { kind: 'nothing'; lastKey: number; seen: number } | { kind: 'failed'; key: number | null; cause: unknown };

/** The failure of the row with key `key` of `job`: the row's own, the job's, or unknown for now. */
export async function whoseFailure(pool: pg.Pool, limits: BatchLimits, job: ConversionJob, key: number): Promise<Whose> {
  let after = key;
  let failed = 0;
  let looked = 0;
  // After a dry batch fails, its rows are tried alone, as many as it had, until one fails.
  let alone = 0;
  while (looked < LOOK_AHEAD * limits.batchRows) {
    const step = await dryRun(pool, limits, job, after, alone > 0);
    if (step.kind === 'wrote') return 'row';
    if (step.kind === 'end') return (await conversionRowsChanged(pool, job.name)) > 0 ? 'row' : 'job';
    if (step.kind === 'nothing') {
      after = step.lastKey;
      looked += step.seen;
      if (alone > 0) alone--;
      continue;
    }
    if (isConnectionLoss(step.cause) || (alone > 0 && isTransientFailure(step.cause))) return 'unknown';
    // A dry batch too slow, or held up by a lock, may still be done row by row.
    if (alone === 0) {
      alone = limits.batchRows;
      continue;
    }
    // The job's next key could not be read: no row failed, and none can be tried.
    if (step.key === null) return 'job';
    alone = 0;
    after = step.key;
    looked++;
    if (++failed === LOOK_AHEAD) return 'job';
  }
  return 'job';
}

/** Thrown to roll back a dry run once it has said what it found. */
class RolledBack {
  constructor(readonly step: Step) {}
}

/** The rows after `after` (one, or a batch's worth), done in a transaction that is rolled back. */
async function dryRun(pool: pg.Pool, limits: BatchLimits, job: ConversionJob, after: number, alone: boolean): Promise<Step> {
  let key: number | null = null;
  try {
    await withTransaction(pool, async (tx) => {
      await limitBatch(tx, 2_000, limits.statementTimeoutMs ?? 60_000);
      if (alone) {
        key = await job.nextKey(tx, after);
        if (key === null) throw new RolledBack({ kind: 'end' });
      }
      const r = key === null ? await job.batch(tx, after, limits.batchRows) : await job.batch(tx, key - 1, 1);
      if (r.seen === 0 || r.lastKey === null) throw new RolledBack({ kind: 'end' });
      throw new RolledBack((await transactionWrote(tx)) ? { kind: 'wrote' } : { kind: 'nothing', lastKey: r.lastKey, seen: r.seen });
    });
  } catch (err) {
    if (err instanceof RolledBack) return err.step;
    return { kind: 'failed', key, cause: err };
  }
  throw new Error('a dry run committed');
}
