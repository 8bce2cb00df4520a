/*
 * A request that failed because of the database rather than of the request or of our code: the
 * server unreachable or out of connection slots, a lock not got in time, a disk full, or a
 * database that takes no writes (a standby not yet promoted after a failover, DATABASE_URL on a
 * replica by mistake, default_transaction_read_only set for maintenance). The visitor is told so
 * with a 503 and Retry-After, and the log says warn, not error: nothing in the code is to fix.
 * A database away for an hour fails every request: logged when it starts, then summed up every
 * LOG_REPEAT_SECONDS, and ended after an interval without one (src/repeated-failures.ts).
 */

import type { Request } from 'express';
import { isReadOnlyDatabase, waitsOut } from '../db/pg-errors.ts';
import { isAppError, TemporaryFailure } from '../errors.ts';
import { log } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';

const faults = new RepeatedFailures(log, { endsWhenQuiet: true });

/** What the 503 asks a client (and a proxy or crawler) to wait before trying again, in seconds. */
export const RETRY_AFTER_SECONDS = 60;

/** The 503 to send instead of a 500 for a fault of the database; null for anything else. */
export function unavailableDatabase(req: Request, err: unknown): TemporaryFailure | null {
  if (isAppError(err) || !(err instanceof Error) || !waitsOut(err)) return null;
  const readOnly = isReadOnlyDatabase(err);
  faults.failed('request', err, 'web request failed on a database fault: answered 503', { url: req.originalUrl.slice(0, 300), method: req.method }, 'warn');
  return readOnly
    ? new TemporaryFailure('This site cannot save changes just now: its database takes no writes (maintenance, or a failover under way). Pages can still be read. Try again in a few minutes.', 'read_only')
    : new TemporaryFailure('This site\'s database is unavailable or busy just now. Try again in a minute.', 'database_unavailable');
}
