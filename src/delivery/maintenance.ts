/*
 * What the workers do besides sending, every few seconds. Every task is safe when several
 * workers run it at once (atomic claims and row locks), so no leader is needed.
 */

import type pg from 'pg';
import type { Config } from '../config.ts';
import { decayBounceScores } from '../db/bounces.ts';
import { listsAwaitingHeldNotice } from '../db/held.ts';
import { getListById } from '../db/lists.ts';
import { forgetDeadWorkers, pruneFinished, reclaimStale } from '../db/outbox.ts';
import { withTransaction } from '../db/pool.ts';
import { pruneRateLimits } from '../db/rate-limits.ts';
import { pruneExpiredRequests } from '../db/subscription-requests.ts';
import { runBounceChores } from '../core/bounce-warnings.ts';
import { sendDueDigests } from '../core/digests.ts';
import { runVacationEnds } from '../core/vacation.ts';
import type { Logger } from '../log.ts';
import { BOUNCE_HALF_LIFE_DAYS } from '../mail/bounce-rules.ts';
import { notifyModeratorsOfHeld } from '../core/held-notices.ts';
import { pruneKept } from '../core/retention.ts';

export async function reclaim(pool: pg.Pool, cfg: Config, log: Logger, except: string | null = null): Promise<void> {
  const n = await reclaimStale(pool, cfg.delivery.leaseSeconds, except);
  if (n > 0) log.warn({ rows: n }, 'rows claimed by a worker that stopped were put back in the queue');
}

export async function periodic(pool: pg.Pool, cfg: Config, log: Logger): Promise<void> {
  for (const listId of await listsAwaitingHeldNotice(pool)) {
    await withTransaction(pool, async (tx) => notifyModeratorsOfHeld(tx, await getListById(tx, listId), cfg));
  }
  const digests = await sendDueDigests(pool, cfg.publicUrl);
  if (digests > 0) log.info({ digests }, 'digests queued');
  await runBounceChores(pool, cfg.publicUrl, log);
  await runVacationEnds(pool, cfg.publicUrl, log);
}

/** The slow chores: an hourly pass is plenty. */
export async function hourly(pool: pg.Pool, cfg: Config, log: Logger): Promise<void> {
  await decayBounceScores(pool, BOUNCE_HALF_LIFE_DAYS);
  const pruned = await pruneFinished(pool, cfg.delivery.keepDays);
  await pruneExpiredRequests(pool);
  await pruneRateLimits(pool);
  await forgetDeadWorkers(pool, cfg.delivery.leaseSeconds);
  await pruneKept(pool, cfg, log);
  if (pruned > 0) log.info({ rows: pruned }, 'finished outbox rows pruned');
}
