/* Held posts (sql/0003_delivery.sql): kept out of the archive until a moderator approves them. */

import type { PostChecks } from '../mail/post-checks.ts';
import type { Queryable } from './pool.ts';

export type HeldState = 'held' | 'approved' | 'rejected' | 'discarded';

export interface HeldRow {
  id: number;
  list_id: number;
  message_id: string;
  raw: Buffer;
  size: number;
  from_email: string;
  from_name: string;
  subject: string;
  envelope_from: string | null;
  reason: string;
  rule: string;
  received_at: Date;
  state: HeldState;
  decided_at: Date | null;
  decided_by: string | null;
  decision_reason: string | null;
  notified_at: Date | null;
  /** what the arrival checks found (mail/post-checks.ts) */
  checks: PostChecks | null;
  /** SHA-256 of the token that moderates this post by mail (core/moderation-mail.ts), once announced */
  mail_token_hash: string | null;
}

export interface NewHeld {
  listId: number;
  messageId: string;
  raw: Buffer;
  fromEmail: string;
  fromName: string;
  subject: string;
  envelopeFrom: string | null;
  reason: string;
  rule: string;
  /** already decided by a rule (discarded), or waiting for a moderator (held) */
  state: 'held' | 'discarded';
  checks?: PostChecks;
}

/** Stores a held (or rule-discarded) post. Null when the same Message-ID is already held on the list. */
export async function insertHeld(db: Queryable, h: NewHeld): Promise<number | null> {
  const { rows } = await db.query<{ id: number }>(
    `insert into held_messages (list_id, message_id, raw, size, from_email, from_name, subject, envelope_from, reason, rule,
                                state, decided_at, decided_by, checks)
     values ($1, $2, $3::bytea, length($3::bytea), $4, $5, $6, $7, $8, $9, $10::text,
             case when $10::text = 'held' then null else now() end, case when $10::text = 'held' then null else 'rule:' || $9::text end, $11::jsonb)
     on conflict (list_id, message_id) where state = 'held' do nothing
     returning id`,
    [h.listId, h.messageId, h.raw, h.fromEmail, h.fromName, h.subject, h.envelopeFrom, h.reason, h.rule, h.state, h.checks && Object.keys(h.checks).length > 0 ? JSON.stringify(h.checks) : null],
  );
  return rows[0]?.id ?? null;
}

export interface HeldListRow {
  id: number;
  message_id: string;
  from_email: string;
  from_name: string;
  subject: string;
  reason: string;
  received_at: Date;
  size: number;
}

export async function pendingHeld(db: Queryable, listId: number): Promise<HeldListRow[]> {
  const { rows } = await db.query<HeldListRow>(
    `select id, message_id, from_email, from_name, subject, reason, received_at, size
       from held_messages where list_id = $1 and state = 'held' order by received_at, id`,
    [listId],
  );
  return rows;
}

/** One page of a list's queue, oldest first, and how many posts it holds in all. */
export async function heldPage(db: Queryable, listId: number, limit: number, offset: number): Promise<{ rows: HeldListRow[]; total: number }> {
  const [page, count] = await Promise.all([
    db.query<HeldListRow>(
      `select id, message_id, from_email, from_name, subject, reason, received_at, size
         from held_messages where list_id = $1 and state = 'held' order by received_at, id limit $2 offset $3`,
      [listId, limit, offset],
    ),
    db.query<{ n: number }>(`select count(*)::int as n from held_messages where list_id = $1 and state = 'held'`, [listId]),
  ]);
  return { rows: page.rows, total: count.rows[0].n };
}

/**
 * Posts still held for a list after id `afterId`, in arrival order (the REST API's pages: a page
 * boundary stays put while posts before it are decided).
 */
export async function heldAfter(db: Queryable, listId: number, afterId: number, limit: number): Promise<HeldListRow[]> {
  const { rows } = await db.query<HeldListRow>(
    `select id, message_id, from_email, from_name, subject, reason, received_at, size
       from held_messages where list_id = $1 and state = 'held' and id > $2 order by id limit $3`,
    [listId, afterId, limit],
  );
  return rows;
}

/** Those of `ids` still held for this list (ids of other lists or already decided are left out). */
export async function heldAmong(db: Queryable, listId: number, ids: number[]): Promise<HeldListRow[]> {
  const { rows } = await db.query<HeldListRow>(
    `select id, message_id, from_email, from_name, subject, reason, received_at, size
       from held_messages where list_id = $1 and state = 'held' and id = any($2::bigint[]) order by received_at, id`,
    [listId, ids],
  );
  return rows;
}

// An address matches itself; '@domain' matches every address whose part after the last '@' is
// that domain, as the sender rules match it (sender-rules.ts).
const FROM_SENDER = `case when starts_with($2::text, '@') then right(lower(from_email), length($2::text)) = $2::text else lower(from_email) = $2::text end`;

/** How many posts of a list from an address or '@domain' are held, and the oldest `limit` of them. */
export async function heldFromSender(db: Queryable, listId: number, sender: string, limit: number): Promise<{ rows: HeldListRow[]; total: number }> {
  const [page, count] = await Promise.all([
    db.query<HeldListRow>(
      `select id, message_id, from_email, from_name, subject, reason, received_at, size
         from held_messages where list_id = $1 and state = 'held' and ${FROM_SENDER} order by received_at, id limit $3`,
      [listId, sender, limit],
    ),
    db.query<{ n: number }>(`select count(*)::int as n from held_messages where list_id = $1 and state = 'held' and ${FROM_SENDER}`, [listId, sender]),
  ]);
  return { rows: page.rows, total: count.rows[0].n };
}

/** Discards every post of a list still held from an address or '@domain'; returns those it discarded. */
export async function discardHeldFromSender(db: Queryable, listId: number, sender: string, by: string, reason: string | null): Promise<HeldListRow[]> {
  const { rows } = await db.query<HeldListRow>(
    `update held_messages set state = 'discarded', decided_at = now(), decided_by = $3, decision_reason = $4
      where list_id = $1 and state = 'held' and ${FROM_SENDER}
      returning id, message_id, from_email, from_name, subject, reason, received_at, size`,
    [listId, sender, by, reason],
  );
  return rows.sort((a, b) => a.id - b.id);
}

export async function heldById(db: Queryable, id: number, opts: { forUpdate?: boolean } = {}): Promise<HeldRow | null> {
  const { rows } = await db.query<HeldRow>(
    `select * from held_messages where id = $1 ${opts.forUpdate ? 'for update' : ''}`,
    [id],
  );
  return rows[0] ?? null;
}

/** Whether the post waiting for a moderator under this Message-ID is the same message as `raw`. */
export async function heldSameContent(db: Queryable, listId: number, messageId: string, raw: Buffer): Promise<boolean> {
  const { rows } = await db.query<{ same: boolean }>(
    `select message_same_content(raw, $3, false) as same from held_messages where list_id = $1 and message_id = $2 and state = 'held'`,
    [listId, messageId, raw],
  );
  return rows[0]?.same ?? false;
}

/** Records a moderator's decision on a held post (only while it is still held). */
export async function decideHeld(db: Queryable, id: number, state: Exclude<HeldState, 'held'>, by: string, reason: string | null): Promise<boolean> {
  const { rowCount } = await db.query(
    `update held_messages set state = $2, decided_at = now(), decided_by = $3, decision_reason = $4
      where id = $1 and state = 'held'`,
    [id, state, by, reason],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Takes the right to notify a list's owners now: true for at most one caller per interval, so a
 * flood of held posts gives one notice per interval, not one per post. The UPDATE runs only when
 * the interval has passed: every UPDATE of lists wakes the ingest listeners' recipient caches.
 * A list row locked by someone else (a digest being built holds it for its whole transaction)
 * gives false at once: the post that is being held must not wait for a digest, and its notice
 * goes with the delivery worker's next chores (listsAwaitingHeldNotice).
 */
export async function claimHeldNotice(db: Queryable, listId: number): Promise<boolean> {
  const due = await db.query(
    `select 1 from lists where id = $1 and (held_notified_at is null or held_notified_at <= now() - make_interval(mins => held_notice_minutes))`,
    [listId],
  );
  if (due.rows.length === 0) return false;
  const { rowCount } = await db.query(
    `update lists set held_notified_at = now()
      where id = (select id from lists where id = $1 for no key update skip locked)
        and (held_notified_at is null or held_notified_at <= now() - make_interval(mins => held_notice_minutes))`,
    [listId],
  );
  return (rowCount ?? 0) > 0;
}

/** Held posts the owners have not been told about yet; marks them told. */
export async function takeUnnotifiedHeld(db: Queryable, listId: number): Promise<HeldListRow[]> {
  const { rows } = await db.query<HeldListRow>(
    `update held_messages set notified_at = now()
      where list_id = $1 and state = 'held' and notified_at is null
      returning id, message_id, from_email, from_name, subject, reason, received_at, size`,
    [listId],
  );
  return rows.sort((a, b) => a.id - b.id);
}

/** Gives held posts their moderation-by-mail tokens (their hashes), in the order of `ids`. */
export async function setHeldMailTokens(db: Queryable, ids: number[], tokenHashes: string[]): Promise<void> {
  await db.query(
    `update held_messages h set mail_token_hash = t.hash
       from unnest($1::bigint[], $2::text[]) as t(id, hash) where h.id = t.id`,
    [ids, tokenHashes],
  );
}

/** The held post (any state) a moderation-by-mail token was given to, on one list. */
export async function heldByMailToken(db: Queryable, listId: number, tokenHash: string): Promise<HeldRow | null> {
  const { rows } = await db.query<HeldRow>(
    'select * from held_messages where list_id = $1 and mail_token_hash = $2',
    [listId, tokenHash],
  );
  return rows[0] ?? null;
}

/** Lists that have held posts nobody was told about and whose notice interval has passed. */
export async function listsAwaitingHeldNotice(db: Queryable): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `select l.id from lists l
      where (l.held_notified_at is null or l.held_notified_at <= now() - make_interval(mins => l.held_notice_minutes))
        and exists (select 1 from held_messages h where h.list_id = l.id and h.state = 'held' and h.notified_at is null)`,
  );
  return rows.map((r) => r.id);
}

/** The record of a held post that expired unmoderated. */
export interface ExpiredHeld {
  id: number;
  list_id: number;
  from_email: string;
  subject: string;
  received_at: Date;
}

/**
 * Held posts nobody decided on within `days` are discarded by 'expiry' (Mailman's
 * max_days_to_hold): the row stays, decided, until pruneDecidedHeld removes it like any other
 * decision. Up to `limit` at a time; SKIP LOCKED leaves a post a moderator is deciding alone.
 */
export async function expireHeld(db: Queryable, days: number, limit: number): Promise<ExpiredHeld[]> {
  const { rows } = await db.query<ExpiredHeld>(
    `update held_messages set state = 'discarded', decided_at = now(), decided_by = 'expiry',
            decision_reason = 'not moderated within ' || $1::int || ' days'
      where id in (select id from held_messages where state = 'held' and received_at < now() - make_interval(days => $1)
                    order by received_at limit $2 for update skip locked)
      returning id, list_id, from_email, subject, received_at`,
    [days, limit],
  );
  return rows.sort((a, b) => a.id - b.id);
}

/** Deletes up to `limit` decided posts (approved, rejected, discarded) decided more than `days` ago. */
export async function pruneDecidedHeld(db: Queryable, days: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `delete from held_messages where id in (
       select id from held_messages where state <> 'held' and decided_at < now() - make_interval(days => $1)
        order by decided_at limit $2 for update skip locked)`,
    [days, limit],
  );
  return rowCount ?? 0;
}
