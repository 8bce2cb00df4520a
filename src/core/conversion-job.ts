/*
 * What a background conversion job is (core/conversions.ts runs them, core/conversions/ holds
 * them): a module of its own so that the parts of the runner can name it without importing the
 * runner.
 */

import type { Queryable } from '../db/pool.ts';

export interface ConversionJob {
  /** its row's name in `conversions`, inserted by the migration that brings the job */
  name: string;
  /** what it does, in a line, for the dashboard */
  describe: string;
  /** how many rows lie past the cursor when the job starts */
  estimate(db: Queryable, afterKey: number): Promise<number>;
  /** the next rows after `afterKey`, at most `limit`, in the caller's transaction */
  batch(tx: Queryable, afterKey: number, limit: number): Promise<{ lastKey: number | null; seen: number; changed: number }>;
  /** the key of the first row after `afterKey`, null if none: done alone, a row is named before it is done (keys are integers) */
  nextKey(db: Queryable, afterKey: number): Promise<number | null>;
  /**
   * For a job whose rows can need it again once it is done (written by the previous release during
   * a rolling upgrade): the key of the first such row, null if none. Cheap: asked at every pass.
   */
  behind?(db: Queryable): Promise<number | null>;
}

export interface BatchLimits {
  batchRows: number;
  /** a batch that runs longer is cancelled (and recorded as the job's error): batches stay short */
  statementTimeoutMs?: number;
}
