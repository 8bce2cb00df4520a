/*
 * Copies refused for good whose follow-ups (a bounce, a probe's disable, a too-big notice:
 * core/refusals.ts) are still to be recorded. markFailed marks the row with the SMTP stage that
 * was refused (outbox.bounce_stage, sql/0092) in the statement that settles it; the transaction
 * that records the follow-ups clears the mark.
 */

import type { OutboxKind } from './outbox.ts';
import type { Queryable } from './pool.ts';

export interface RefusedRow {
  id: number;
  kind: OutboxKind;
  list_id: number | null;
  message_id: number | null;
  member_id: number | null;
  recipient: string;
  envelope_from: string;
  last_error: string | null;
  /** the SMTP command that was refused */
  bounce_stage: string;
}

/** Marked rows: those of `ids`, or (null) the oldest `limit` of all (outbox_bounce_pending). */
export async function refusedRows(db: Queryable, ids: number[] | null, limit: number): Promise<RefusedRow[]> {
  const { rows } = await db.query<RefusedRow>(
    `select id, kind, list_id, message_id, member_id, recipient, envelope_from, last_error, bounce_stage
       from outbox where bounce_stage is not null and ($1::bigint[] is null or id = any($1::bigint[]))
      order by id limit $2`,
    [ids, limit],
  );
  return rows;
}

/**
 * Clears the marks of those of `ids` still marked, in the caller's transaction, which then records
 * their follow-ups; returns their ids. A row another transaction holds (recording it now, or one
 * whose process died and whose backend has not yet noticed) is skipped: it stays marked if that
 * transaction does not commit, for a later pass.
 */
export async function takeRefusals(tx: Queryable, ids: number[]): Promise<number[]> {
  const { rows } = await tx.query<{ id: number }>(
    `with c as (select id from outbox where id = any($1::bigint[]) and bounce_stage is not null for update skip locked)
     update outbox o set bounce_stage = null from c where o.id = c.id returning o.id`,
    [ids],
  );
  return rows.map((r) => r.id);
}
