/*
 * A copy refused for good (a 5xx answer while sending) has follow-ups besides its result: a
 * member's copy refused is a bounce, a refused probe disables the member, a post's copies refused
 * for their size tell its owners and author. The statement that settles the row marks it with the
 * stage refused (db/outbox-refusals.ts); the follow-ups are recorded in one transaction with
 * clearing that mark. A worker killed between the two, a follow-up whose connection is lost, a
 * result whose commit went unheard: each leaves the mark, and the next pass (the worker's own, or
 * any worker's chores) records them. Never twice: only the transaction that clears a mark records.
 *
 * A follow-up that fails the same way each time (a constraint, a member or list in a state the code
 * does not expect, a bug) is not tried for ever: each failed try that is not transient is counted
 * on the row, the row is tried again a little later each time, rows tried least go first (so that
 * such rows never keep newer ones from being recorded), and after MAX_TRIES it is given up with one
 * error in the log, a row in refusals_given_up (`listkeeper doctor`) and a count in /metrics. The
 * copy's own result is never changed.
 */

import type pg from 'pg';
import { noteFailedTry, refusedRows, takeRefusals, type RefusedRow } from '../db/outbox-refusals.ts';
import { isTransientFailure } from '../db/pg-errors.ts';
import type { OutboxKind } from '../db/outbox.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { refusalsGivenUp } from '../metrics.ts';
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
/** Failed tries (not transient) after which a follow-up is given up. */
export const MAX_TRIES = 5;
/** A row whose follow-up failed n times is tried again n times this many minutes later (so about 10 minutes in all). */
const RETRY_MINUTES = 1;
/** Of a follow-up's error, what refusals_given_up keeps. */
const ERROR_CHARS = 1_000;

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
 * wrote, whatever its write returned), or up to PASS_ROWS of those due, tried least first, then
 * oldest (null: a pass of the chores). One transaction per row, or per post for copies too big
 * (one notice). `errors`: the replies as the worker had them, where it has them (the row keeps
 * 1,000 characters, or a fixed text the database would take). A follow-up that fails stays marked
 * and is tried again by a later pass, at most MAX_TRIES times (failedTry). Returns how many rows'
 * follow-ups were recorded.
 */
export async function recordRefusals(pool: pg.Pool, settings: Pick<CoreSettings, 'publicUrl'>, log: Logger, ids: number[] | null, errors = new Map<number, string>()): Promise<number> {
  if (ids?.length === 0) return 0;
  const groups = new Map<string, { followUp: FollowUp | null; rows: (RefusedRow & { error: string })[] }>();
  for (const row of await refusedRows(pool, ids, ids?.length ?? PASS_ROWS, RETRY_MINUTES)) {
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
      await failedTry(pool, first, followUp, rows, err);
    }
  }
  return recorded;
}

/**
 * A try at a follow-up failed and was rolled back. A transient failure (a connection lost, a
 * deadlock, a lock not got in time) says nothing of the row: it is not counted and the next pass
 * tries again. Any other is counted; the first is a warning, the last (MAX_TRIES) the one error.
 */
async function failedTry(pool: pg.Pool, log: Logger, followUp: FollowUp | null, rows: RefusedRow[], err: unknown): Promise<void> {
  const what = followUp ?? 'none';
  if (isTransientFailure(err)) {
    log.warn({ err, rows: rows.length, followUp: what }, 'could not record the follow-up of a refused copy (a transient failure); it is tried again on the next pass');
    return;
  }
  const error = (err instanceof Error ? err.message : String(err)).slice(0, ERROR_CHARS) || 'an error without a message';
  let counted;
  try {
    counted = await noteFailedTry(pool, rows.map((r) => r.id), what, error, MAX_TRIES);
  } catch (noteErr) {
    log.error({ err, noteErr, rows: rows.length, followUp: what }, 'could not record the follow-up of a refused copy, nor count the try; it is tried again on a later pass');
    return;
  }
  const givenUp = counted.filter((c) => c.given_up);
  const tries = Math.max(0, ...counted.map((c) => c.tries));
  if (givenUp.length > 0) {
    refusalsGivenUp.inc({ follow_up: what }, givenUp.length);
    log.error(
      { err, rows: givenUp.length, outboxIds: givenUp.map((c) => c.id), recipient: rows[0].recipient, followUp: what, tries },
      `the follow-up of a refused copy failed ${tries} times: given up (table refusals_given_up; listkeeper doctor)`,
    );
  } else if (tries === 1) {
    log.warn({ err, rows: rows.length, followUp: what }, `could not record the follow-up of a refused copy; it is tried again on later passes, at most ${MAX_TRIES} times`);
  } else {
    log.debug({ err, rows: rows.length, followUp: what, tries }, 'the follow-up of a refused copy failed again');
  }
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
