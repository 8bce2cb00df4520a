/*
 * A copy refused for good (a 5xx answer while sending) has follow-ups besides its result: a
 * member's copy refused is a bounce, a refused probe disables the member, a post's copies refused
 * for their size tell its owners and author. The statement that settles the row marks it with the
 * stage refused (db/outbox-refusals.ts); the follow-ups are recorded in one transaction with
 * clearing that mark. A worker killed between the two, a follow-up whose connection is lost, a
 * result whose commit went unheard: each leaves the mark, and the next pass (the worker's own, or
 * any worker's chores) records them. Never twice: only the transaction that clears a mark records.
 */

import type pg from 'pg';
import { refusedRows, takeRefusals, type RefusedRow } from '../db/outbox-refusals.ts';
import type { OutboxKind } from '../db/outbox.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { probeTokenOf } from '../mail/address.ts';
import { refusedForSize } from '../mail/bounce-rules.ts';
import { recordDeliveryFailure, recordProbeFailure } from './bounces.ts';
import { tellPostTooBigIn } from './notices.ts';
import type { CoreSettings } from './settings.ts';

type FollowUp = 'too-big' | 'probe' | 'bounce';

interface Refused {
  kind: OutboxKind;
  list_id: number | null;
  message_id: number | null;
  member_id: number | null;
  envelope_from: string;
}

/** Marked rows a pass takes at most; the next pass takes the rest. */
const PASS_ROWS = 500;

/** What a refusal at `stage` calls for, or null: the row is then not marked. */
export function followUpOf(row: Refused, stage: string, error: string): FollowUp | null {
  // 'none': nothing was sent (the message or list is gone).
  if (stage === 'none' || row.list_id === null) return null;
  // Too big is about the message (the list's headers made the copy pass a limit), never a
  // bounce of the member's, at whatever stage it was said.
  if (row.kind === 'post' && row.message_id !== null && refusedForSize(error)) return 'too-big';
  // A refused probe is a bounced probe (see core/bounces.ts); other notices bounce nobody.
  if (row.kind === 'notice') return probeTokenOf(row.envelope_from) ? 'probe' : null;
  // A refusal of a member's copy is a bounce like any other (5.7.x policy ones do not count;
  // nor do refusals of our sender at MAIL FROM or of the content after DATA).
  return row.member_id !== null ? 'bounce' : null;
}

/**
 * Records the follow-ups of refused rows still marked: those of `ids` (the rows a worker just
 * wrote, whatever its write returned), or the oldest of all (null: a pass of the chores). One
 * transaction per row, or per post for copies too big (one notice). `errors`: the replies as the
 * worker had them, where it has them (the row keeps 1,000 characters, or a fixed text the database
 * would take). A follow-up that fails stays marked and is logged; the next pass tries it again.
 * Returns how many rows' follow-ups were recorded.
 */
export async function recordRefusals(pool: pg.Pool, settings: Pick<CoreSettings, 'publicUrl'>, log: Logger, ids: number[] | null, errors = new Map<number, string>()): Promise<number> {
  if (ids?.length === 0) return 0;
  const groups = new Map<string, { followUp: FollowUp | null; rows: (RefusedRow & { error: string })[] }>();
  for (const row of await refusedRows(pool, ids, ids?.length ?? PASS_ROWS)) {
    const error = errors.get(row.id) ?? row.last_error ?? '';
    const followUp = followUpOf(row, row.bounce_stage, error);
    const key = followUp === 'too-big' ? `too-big:${row.list_id}:${row.message_id}` : `row:${row.id}`;
    const group = groups.get(key) ?? { followUp, rows: [] };
    group.rows.push({ ...row, error });
    groups.set(key, group);
  }
  let recorded = 0;
  for (const { followUp, rows } of groups.values()) {
    const first = log.child({ outboxId: rows[0].id });
    try {
      recorded += await withTransaction(pool, async (tx) => {
        const taken = new Set(await takeRefusals(tx, rows.map((r) => r.id)));
        const mine = rows.filter((r) => taken.has(r.id));
        if (mine.length > 0 && followUp) await record(tx, settings, first, followUp, mine[0]);
        return mine.length;
      });
    } catch (err) {
      first.error({ err, rows: rows.length }, 'could not record the bounce of a refused copy; it is tried again on the next pass');
    }
  }
  return recorded;
}

/** One refusal's follow-up, in the transaction that cleared its mark. */
async function record(tx: Queryable, settings: Pick<CoreSettings, 'publicUrl'>, log: Logger, followUp: FollowUp, row: RefusedRow & { error: string }) {
  const aboutRecipient = row.bounce_stage === 'RCPT TO';
  if (followUp === 'too-big') {
    if (await tellPostTooBigIn(tx, row.list_id!, row.message_id!, row.error)) {
      log.warn({ listId: row.list_id, messageId: row.message_id, error: row.error }, 'copies of a post were refused for their size: owners and author told');
    }
  } else if (followUp === 'probe') {
    await recordProbeFailure(tx, settings, probeTokenOf(row.envelope_from)!, row.list_id!, row.recipient, row.error, log, aboutRecipient);
  } else {
    await recordDeliveryFailure(tx, row.member_id, row.list_id!, row.recipient, row.error, log, aboutRecipient);
  }
}
