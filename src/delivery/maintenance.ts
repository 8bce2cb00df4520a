/*
 * What the workers do besides sending, every few seconds. Every task is safe when several
 * workers run it at once (atomic claims and row locks), so no leader is needed.
 */

import type pg from 'pg';
import type { Config } from '../config.ts';
import { decayBounceScores } from '../db/bounces.ts';
import { listsWithDueDigest } from '../db/digests.ts';
import { listsAwaitingHeldNotice } from '../db/held.ts';
import { getListById } from '../db/lists.ts';
import { forgetDeadWorkers, pruneFinished, reclaimStale } from '../db/outbox.ts';
import { pruneGivenUpRefusals } from '../db/outbox-refusals.ts';
import { withTransaction } from '../db/pool.ts';
import { pruneRateLimits } from '../db/rate-limits.ts';
import { pruneExpiredRequests } from '../db/subscription-requests.ts';
import { runBounceChores } from '../core/bounce-warnings.ts';
import { recordRefusals } from '../core/refusals.ts';
import { sendDueDigest } from '../core/digests.ts';
import { runVacationEnds } from '../core/vacation.ts';
import type { Logger } from '../log.ts';
import { RepeatedFailures } from '../repeated-failures.ts';
import { BOUNCE_HALF_LIFE_DAYS } from '../mail/bounce-rules.ts';
import { notifyModeratorsOfHeld } from '../core/held-notices.ts';
import { pruneKept } from '../core/retention.ts';

export async function reclaim(pool: pg.Pool, cfg: Config, log: Logger, except: string | null = null): Promise<void> {
  const n = await reclaimStale(pool, cfg.delivery.leaseSeconds, except);
  if (n > 0) log.warn({ rows: n }, 'rows claimed by a worker that stopped, or whose send was stuck past its deadline, were put back in the queue');
}

/**
 * The frequent chores, each on its own (and per list where they go list by list): one that fails
 * every time, a digest that cannot be built, is logged and tried again next pass, and does not
 * keep the others (bounce probes, the end of vacations) from running. `failures` is the worker's,
 * kept from pass to pass: a chore failing pass after pass is logged once, summed up, and ended.
 */
export async function periodic(pool: pg.Pool, cfg: Config, log: Logger, failures = new RepeatedFailures(log)): Promise<void> {
  const chore = choreRunner(log, failures);
  await chore('held notices', async () => {
    for (const listId of await listsAwaitingHeldNotice(pool)) {
      await chore('held notice', () => withTransaction(pool, async (tx) => notifyModeratorsOfHeld(tx, await getListById(tx, listId), cfg)), { listId });
    }
  });
  await chore('digests', async () => {
    for (const listId of await listsWithDueDigest(pool)) {
      await chore('digest', () => sendDueDigest(pool, listId, cfg.publicUrl), { listId });
    }
  });
  // Refusals whose worker died (or lost its connection) before it recorded their bounces.
  await chore('refused copies', () => recordRefusals(pool, cfg, log, null));
  await chore('bounce chores', () => runBounceChores(pool, cfg.publicUrl, log));
  await chore('vacation ends', () => runVacationEnds(pool, cfg.publicUrl, log));
}

/** Runs one chore (of one list), catching its failure. */
function choreRunner(log: Logger, failures: RepeatedFailures) {
  return async (name: string, task: () => Promise<unknown>, of: { listId?: number } = {}): Promise<void> => {
    const key = `chore:${name}:${of.listId ?? ''}`;
    try {
      await task();
      failures.ok(key);
    } catch (err) {
      failures.failed(key, err, 'delivery maintenance chore failed', { chore: name, ...of });
    }
  };
}

/** The slow chores, each on its own as well: an hourly pass is plenty. */
export async function hourly(pool: pg.Pool, cfg: Config, log: Logger, failures = new RepeatedFailures(log)): Promise<void> {
  const chore = choreRunner(log, failures);
  await chore('bounce score decay', () => decayBounceScores(pool, BOUNCE_HALF_LIFE_DAYS));
  await chore('outbox pruning', async () => {
    const pruned = await pruneFinished(pool, cfg.delivery.keepDays);
    if (pruned > 0) log.info({ rows: pruned }, 'finished outbox rows pruned');
    await pruneGivenUpRefusals(pool, cfg.delivery.keepDays);
  });
  await chore('request pruning', () => pruneExpiredRequests(pool));
  await chore('rate limit pruning', () => pruneRateLimits(pool));
  await chore('dead workers', () => forgetDeadWorkers(pool, cfg.delivery.leaseSeconds));
  await chore('retention', () => pruneKept(pool, cfg, log));
}
