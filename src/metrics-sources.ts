/*
 * Where the gauges read at scrape time get their figures: the outbox, the conversion jobs and the
 * purge queue, from the database. Set by whichever listener serves /metrics (the web app, or the
 * metrics listener of METRICS_PORT).
 */

import type pg from 'pg';
import { conversionProgress } from './db/conversions.ts';
import { outboxDepth } from './db/outbox.ts';
import { purgeDepth } from './db/purges.ts';
import { setConversionSource, setOutboxDepthSource, setPurgeDepthSource } from './metrics.ts';

export function readGaugesFrom(pool: pg.Pool): void {
  setOutboxDepthSource(() => outboxDepth(pool));
  setConversionSource(() => conversionProgress(pool));
  setPurgeDepthSource(() => purgeDepth(pool));
}
