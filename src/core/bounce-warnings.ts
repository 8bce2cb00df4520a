/*
 * What follows a disable, run by every delivery worker in its periodic maintenance: probes that
 * nobody bounced expire; disabled members get their next warning when it is due; members whose
 * last warning went unanswered are removed (status 'unsubscribed', with the reason) and the
 * owners are told. Each step claims its rows in one statement with SKIP LOCKED and queues its
 * notices in the same transaction, so several workers at once never send anything twice, and a
 * pass that finds nothing due costs three index lookups. Time is the database's now(): tests
 * back-date the rows.
 */

import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import { claimDueRemovals, claimDueWarnings, expireProbes } from '../db/bounces.ts';
import { getListById } from '../db/lists.ts';
import type { MemberRow } from '../db/members.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { BOUNCE_PROBE_DAYS } from '../mail/bounce-rules.ts';
import { tellDisabled, tellOwnersRemoved, tellRemoved } from './bounce-notices.ts';

/** Rows per transaction: a backlog (a list imported with many disabled members) goes in slices. */
const BATCH = 100;

export interface BounceChores {
  probesExpired: number;
  warned: number;
  removed: number;
}

export async function runBounceChores(pool: pg.Pool, publicUrl: string, log: Logger): Promise<BounceChores> {
  const done: BounceChores = { probesExpired: 0, warned: 0, removed: 0 };
  for (;;) {
    const n = await withTransaction(pool, async (tx) => {
      const expired = await expireProbes(tx, BOUNCE_PROBE_DAYS, BATCH);
      for (const m of expired.filter((e) => e.status === 'active')) {
        await recordAudit(tx, { actor: 'bounces', action: 'member.probe_expired', list: { id: m.list_id, address: (await getListById(tx, m.list_id)).address }, target: m.email });
      }
      return expired.length;
    });
    done.probesExpired += n;
    if (n < BATCH) break;
  }
  for (;;) {
    const n = await withTransaction(pool, async (tx) => {
      const due = await claimDueWarnings(tx, BATCH);
      for (const m of due) {
        const list = await getListById(tx, m.list_id);
        await tellDisabled(tx, list, m, publicUrl, m.bounce_warnings_sent, false);
        await recordAudit(tx, { actor: 'bounces', action: 'member.bounce_warning', list, target: m.email, detail: { warning: m.bounce_warnings_sent, of: list.bounce_warnings } });
      }
      return due.length;
    });
    done.warned += n;
    if (n < BATCH) break;
  }
  for (;;) {
    const n = await withTransaction(pool, async (tx) => {
      const due = await claimDueRemovals(tx, BATCH);
      for (const m of due) await removed(tx, m);
      return due.length;
    });
    done.removed += n;
    if (n < BATCH) break;
  }
  if (done.probesExpired + done.warned + done.removed > 0) log.info({ ...done }, 'bounce probes, warnings and removals');
  return done;
}

async function removed(tx: Queryable, m: MemberRow) {
  const list = await getListById(tx, m.list_id);
  await tellRemoved(tx, list, m);
  await tellOwnersRemoved(tx, list, m);
  await recordAudit(tx, { actor: 'bounces', action: 'member.bounce_remove', list, target: m.email, detail: { reason: m.unsubscribed_reason, warnings: m.bounce_warnings_sent } });
}
