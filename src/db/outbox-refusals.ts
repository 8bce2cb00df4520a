/*
 * Copies refused for good whose follow-ups (a bounce, a probe's disable, a too-big notice:
 * core/refusals.ts) are still to be recorded. markFailed marks the row with the SMTP stage that
 * was refused (outbox.bounce_stage, sql/0092) in the statement that settles it; the transaction
 * that records the follow-ups clears the mark. A follow-up that fails, not transiently, is counted
 * on the row (bounce_tries, sql/0096); past a few tries it is given up: the mark is cleared and the
 * row noted in refusals_given_up.
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
  /** failed tries at its follow-ups so far */
  bounce_tries: number;
}

/**
 * Marked rows: those of `ids`, or (null) `limit` of all that are due, tried least first, then
 * oldest (outbox_bounce_pending_tries): a row whose follow-up failed `n` times is due `n` x
 * `retryMinutes` after its last try, and never keeps a row not yet tried from being taken.
 */
export async function refusedRows(db: Queryable, ids: number[] | null, limit: number, retryMinutes: number): Promise<RefusedRow[]> {
  const { rows } = await db.query<RefusedRow>(
    `select id, kind, list_id, message_id, member_id, recipient, envelope_from, last_error, bounce_stage, bounce_tries
       from outbox
      where bounce_stage is not null
        and ($1::bigint[] is not null and id = any($1::bigint[])
             or $1::bigint[] is null and (bounce_tried_at is null or bounce_tried_at <= now() - make_interval(mins => bounce_tries * $3::int)))
      order by bounce_tries, id limit $2`,
    [ids, limit, retryMinutes],
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

export interface FailedTry {
  id: number;
  /** failed tries so far, this one included */
  tries: number;
  /** whether this was the last: the mark is cleared and the row is in refusals_given_up */
  given_up: boolean;
}

/**
 * Counts a failed try at the follow-up of those of `ids` still marked, after its transaction was
 * rolled back. At `maxTries` the follow-up is given up: the mark is cleared, so no pass takes the
 * row again, and the row is noted in refusals_given_up with `error`. A row another transaction
 * holds is skipped: it is being recorded.
 */
export async function noteFailedTry(db: Queryable, ids: number[], followUp: string, error: string, maxTries: number): Promise<FailedTry[]> {
  const { rows } = await db.query<FailedTry>(
    `with old as (select id, bounce_stage from outbox where id = any($1::bigint[]) and bounce_stage is not null for update skip locked),
     t as (update outbox o set bounce_tries = o.bounce_tries + 1, bounce_tried_at = now(),
                 bounce_stage = case when o.bounce_tries + 1 >= $4 then null else o.bounce_stage end
             from old where o.id = old.id
           returning o.id, o.list_id, o.member_id, o.recipient, old.bounce_stage as stage, o.bounce_tries as tries, o.bounce_stage is null as given_up),
     g as (insert into refusals_given_up (outbox_id, list_id, member_id, recipient, stage, follow_up, error, tries)
           select id, list_id, member_id, recipient, stage, $2, $3, tries from t where given_up
           on conflict (outbox_id) do update set stage = excluded.stage, follow_up = excluded.follow_up, error = excluded.error,
                                                 tries = excluded.tries, given_up_at = excluded.given_up_at)
     select id, tries, given_up from t order by id`,
    [ids, followUp, error, maxTries],
  );
  return rows;
}

export interface GivenUp {
  count: number;
  last: { outbox_id: number; recipient: string; follow_up: string; error: string; tries: number; given_up_at: Date } | null;
}

/** The follow-ups given up (for `listkeeper doctor`): how many, and the last one. */
export async function givenUpRefusals(db: Queryable): Promise<GivenUp> {
  const { rows } = await db.query<GivenUp['last'] & { count: number }>(
    `select outbox_id, recipient, follow_up, error, tries, given_up_at, count(*) over ()::int as count
       from refusals_given_up order by given_up_at desc, outbox_id desc limit 1`,
  );
  if (rows.length === 0) return { count: 0, last: null };
  const { count, ...last } = rows[0];
  return { count, last };
}

/** Forgets follow-ups given up more than `keepDays` ago, as finished outbox rows are. */
export async function pruneGivenUpRefusals(db: Queryable, keepDays: number): Promise<number> {
  const { rowCount } = await db.query(`delete from refusals_given_up where given_up_at < now() - make_interval(days => $1)`, [keepDays]);
  return rowCount ?? 0;
}
