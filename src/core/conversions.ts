/*
 * Conversion jobs: work that touches every message (a backfill, a digest, a re-index) done in the
 * background by the delivery workers instead of in a start-up migration. A migration adds what the
 * job fills (a nullable column, a table) and the job's row in `conversions`; the code reads
 * correctly both before the job has finished (it falls back where the job has not been yet) and
 * after. Each batch is one short transaction that claims the job's row (FOR UPDATE SKIP LOCKED),
 * does the next rows by key and moves the cursor: killed at any moment, a job loses at most its
 * batch in flight and goes on from its cursor on whichever worker comes next. A job that finds
 * nothing past its cursor marks itself done and is never looked at again.
 */

import type pg from 'pg';
import { advanceConversion, claimConversion, finishConversion, limitBatch, recordConversionError, startConversion } from '../db/conversions.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { attachmentText } from './conversions/attachment-text.ts';
import { messageDigests } from './conversions/message-digests.ts';

export interface ConversionJob {
  /** its row's name in `conversions`, inserted by the migration that brings the job */
  name: string;
  /** what it does, in a line, for the dashboard */
  describe: string;
  /** how many rows lie past the cursor when the job starts */
  estimate(db: Queryable, afterKey: number): Promise<number>;
  /** the next rows after `afterKey`, at most `limit`, in the caller's transaction */
  batch(tx: Queryable, afterKey: number, limit: number): Promise<{ lastKey: number | null; seen: number; changed: number }>;
}

/** Every job this release knows. A job in the table that is not here belongs to a newer release. */
export const CONVERSIONS: readonly ConversionJob[] = [messageDigests, attachmentText];

export function conversionJob(name: string): ConversionJob | undefined {
  return CONVERSIONS.find((j) => j.name === name);
}

export interface BatchLimits {
  batchRows: number;
  /** a batch that runs longer is cancelled (and recorded as the job's error): batches stay short */
  statementTimeoutMs?: number;
}

type BatchResult = { kind: 'idle' } | { kind: 'batch'; name: string; seen: number; changed: number } | { kind: 'done'; name: string };

/** One batch of one job that no one else is working on, in one transaction. */
export async function runConversionBatch(pool: pg.Pool, worker: string, limits: BatchLimits, jobs: readonly ConversionJob[] = CONVERSIONS): Promise<BatchResult> {
  let claimed: string | null = null;
  try {
    return await withTransaction(pool, async (tx) => {
      await limitBatch(tx, 2_000, limits.statementTimeoutMs ?? 60_000);
      const row = await claimConversion(tx, jobs.map((j) => j.name));
      if (!row) return { kind: 'idle' } as const;
      claimed = row.name;
      const job = jobs.find((j) => j.name === row.name)!;
      if (!row.started_at) await startConversion(tx, row.name, await job.estimate(tx, row.last_key));
      const r = await job.batch(tx, row.last_key, limits.batchRows);
      if (r.seen === 0 || r.lastKey === null) {
        await finishConversion(tx, row.name, worker);
        return { kind: 'done', name: row.name } as const;
      }
      await advanceConversion(tx, row.name, worker, r.lastKey, r.seen, r.changed);
      return { kind: 'batch', name: row.name, seen: r.seen, changed: r.changed } as const;
    });
  } catch (err) {
    if (claimed) await recordConversionError(pool, claimed, worker, (err as Error).message).catch(() => undefined);
    throw err;
  }
}

/**
 * Runs batches until no job is left to this worker (all done, or held by other workers), pausing
 * `pauseMs` between two so that the site's own traffic keeps the database, and stopping between
 * batches when `stopping()` says so. A failed batch ends the pass; the next pass tries again.
 */
export async function runConversions(pool: pg.Pool, worker: string, limits: BatchLimits & { pauseMs: number }, log: Logger, stopping: () => boolean): Promise<void> {
  while (!stopping()) {
    let r: BatchResult;
    try {
      r = await runConversionBatch(pool, worker, limits);
    } catch (err) {
      log.error({ err }, 'a conversion batch failed; it is tried again on the next pass');
      return;
    }
    if (r.kind === 'idle') return;
    if (r.kind === 'done') {
      log.info({ conversion: r.name }, 'conversion finished');
      continue;
    }
    if (limits.pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, limits.pauseMs));
  }
}
