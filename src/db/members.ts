import type { DeliveryMode, DigestFormat, MemberStatus } from '../list-policies.ts';
import type { Queryable } from './pool.ts';

export interface MemberRow {
  id: number;
  list_id: number;
  email: string;
  name: string | null;
  mode: DeliveryMode;
  status: MemberStatus;
  bounce_score: number;
  token: string;
  created_at: Date;
  updated_at: Date;
  // sql/0003_delivery.sql
  digest_format: DigestFormat;
  bounce_updated_at: Date | null;
  disabled_at: Date | null;
  disabled_reason: string | null;
  // sql/0030_bounce_probes.sql
  bounce_probe_token: string | null;
  bounce_probe_sent_at: Date | null;
  bounce_warnings_sent: number;
  bounce_warned_at: Date | null;
  unsubscribed_reason: string | null;
  // sql/0048_nomail_until.sql: a vacation, `nomail` until then, and the mode to go back to
  nomail_until: Date | null;
  mode_before_nomail: DeliveryMode | null;
  // sql/0105_member_import_mode.sql: what the last import-mailman gave it (null: none did)
  import_mode: DeliveryMode | null;
  import_digest_format: DigestFormat | null;
}

export type AddOutcome = 'added' | 'reactivated' | 'updated' | 'unchanged';

/**
 * Adds an active member (an administrator's add: no confirmation). An existing row is
 * reactivated, or has its mode or (when one is given) its name changed; the outcome says which.
 * The mode given has no end date: a running pause ends here (addMembers sets a new one when
 * asked); an unsubscribe already ended any (sql/0064).
 * 'added' is what this statement inserted (xmax = 0: a new row, not an updated one), not an
 * address missing from its snapshot: two adds at once (an admin's and a confirmation) both
 * found none, both said 'added', and the member was welcomed twice. Likewise 'reactivated' is
 * read from the row as it is once locked, in a statement of its own: read in the upsert's
 * snapshot, a row another add had just made active again still looked unsubscribed.
 */
export async function addMember(db: Queryable, listId: number, email: string, mode: DeliveryMode, name: string | null = null): Promise<AddOutcome> {
  const before = await db.query<{ status: string }>('select status from members where list_id = $1 and email = $2 for update', [listId, email]);
  const { rows } = await db.query<{ outcome: AddOutcome }>(
    `with up as (
       insert into members (list_id, email, mode, name) values ($1, $2, $3, $4)
       on conflict (list_id, email) do update
         set status = 'active', mode = excluded.mode, name = coalesce(excluded.name, members.name), unsubscribed_reason = null,
             nomail_until = null, mode_before_nomail = null, updated_at = now()
         where members.status <> 'active' or members.mode <> excluded.mode or members.nomail_until is not null
            or (excluded.name is not null and excluded.name is distinct from members.name)
       returning xmax = 0 as inserted)
     select case when not exists (select 1 from up) then 'unchanged'
                 when (select inserted from up) then 'added'
                 when $5::text <> 'active' then 'reactivated'
                 else 'updated' end as outcome`,
    [listId, email, mode, name, before.rows[0]?.status ?? null],
  );
  return rows[0].outcome;
}

/** Which of `emails` are active members of the list (an add changes at most their mode or name). */
export async function activeMembers(db: Queryable, listId: number, emails: string[]): Promise<string[]> {
  const { rows } = await db.query<{ email: string }>(`select email from members where list_id = $1 and email = any($2::text[]) and status = 'active'`, [listId, emails]);
  return rows.map((r) => r.email);
}

/** Marks a member unsubscribed (the row stays, for history and bounce records). */
export async function removeMember(db: Queryable, listId: number, email: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `update members set status = 'unsubscribed', updated_at = now()
      where list_id = $1 and email = $2 and status <> 'unsubscribed'`,
    [listId, email],
  );
  return (rowCount ?? 0) > 0;
}

export type RosterEntry = {
  email: string;
  name: string | null;
  mode: DeliveryMode;
  status: MemberStatus;
  bounce_score: number;
  /** the day delivery resumes (YYYY-MM-DD, UTC) when `nomail` is a vacation */
  nomail_until: string | null;
};

/**
 * A list's members as `listkeeper members` shows them: everyone with a member row, and as
 * `pending` the addresses whose subscription waits for their confirmation (not yet expired) or
 * for an owner's approval. Those live in subscription_requests until they are decided; a pending
 * request of a former member shows instead of their `unsubscribed` row.
 */
export async function memberRoster(db: Queryable, listId: number): Promise<RosterEntry[]> {
  const { rows } = await db.query<RosterEntry>(
    `with pending as (
       select distinct on (email) email, name, mode from subscription_requests
        where list_id = $1 and action = 'subscribe' and (state = 'approval' or (state = 'confirm' and expires_at > now()))
        order by email, created_at desc)
     select m.email, m.name, m.mode, m.status, m.bounce_score, to_char(m.nomail_until at time zone 'UTC', 'YYYY-MM-DD') as nomail_until from members m
      where m.list_id = $1 and not (m.status = 'unsubscribed' and m.email in (select email from pending))
     union all
     select p.email, p.name, p.mode, 'pending', 0, null from pending p
      where not exists (select 1 from members m where m.list_id = $1 and m.email = p.email and m.status <> 'unsubscribed')
     order by email`,
    [listId],
  );
  return rows;
}

export async function findMember(db: Queryable, listId: number, email: string): Promise<MemberRow | null> {
  const { rows } = await db.query<MemberRow>('select * from members where list_id = $1 and email = $2', [listId, email]);
  return rows[0] ?? null;
}

/**
 * One person's rows on a list, by all their addresses (`emails`, the preferred first): active
 * ones first, then in the order of `emails`.
 */
export async function membershipsOn(db: Queryable, listId: number, emails: string[]): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>(
    `select * from members where list_id = $1 and email = any($2::text[])
      order by status = 'active' desc, array_position($2::text[], email)`,
    [listId, emails],
  );
  return rows;
}

// ---- Delivery ----

/** The member a token names: its own, or one a merged row had (sql/0076), which mail sent before carries. */
export async function findMemberByToken(db: Queryable, token: string): Promise<MemberRow | null> {
  if (!/^[a-z0-9]{8,64}$/.test(token)) return null;
  const { rows } = await db.query<MemberRow>(
    `select * from members where token = $1
     union all
     select m.* from member_token_aliases a join members m on m.id = a.member_id where a.token = $1
     limit 1`,
    [token],
  );
  return rows[0] ?? null;
}

/** Changes how a member receives the list (each, digest, nomail); a plain `nomail` has no end, so it ends a vacation too. */
export async function setMemberMode(db: Queryable, listId: number, email: string, mode: DeliveryMode): Promise<boolean> {
  const { rowCount } = await db.query(
    `update members set mode = $3, nomail_until = null, mode_before_nomail = null, updated_at = now()
      where list_id = $1 and email = $2 and (mode <> $3 or nomail_until is not null)`,
    [listId, email, mode],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Pauses delivery until `until` (a vacation): mode `nomail`, remembering the mode to go back to,
 * which is `before` when given (the caller read it before another change), else the member's
 * current mode, else the one remembered by a vacation already running. Whether anything changed.
 */
export async function pauseMember(db: Queryable, listId: number, email: string, until: Date, before: DeliveryMode | null = null): Promise<boolean> {
  const { rowCount } = await db.query(
    `update members
        set mode_before_nomail = coalesce($4, case when mode <> 'nomail' then mode else mode_before_nomail end),
            mode = 'nomail', nomail_until = $3, updated_at = now()
      where list_id = $1 and email = $2
        and (mode <> 'nomail' or nomail_until is distinct from $3 or ($4::text is not null and mode_before_nomail is distinct from $4))`,
    [listId, email, until, before],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Ends the vacations that are due: each claimed member goes back to the mode it had (`each` when
 * none was remembered; the trigger of sql/0048 clears the date). Claimed with SKIP LOCKED, so two
 * workers at once never take the same row; returns the members as they are now, with the date
 * that ended.
 */
export async function claimEndedVacations(db: Queryable, limit: number): Promise<(MemberRow & { ended_until: Date })[]> {
  const { rows } = await db.query<MemberRow & { ended_until: Date }>(
    `with due as (
       select id, nomail_until from members
        where nomail_until <= now() and mode = 'nomail'
        order by nomail_until limit $1
        for update skip locked)
     update members m set mode = coalesce(m.mode_before_nomail, 'each'), updated_at = now()
       from due where m.id = due.id
     returning m.*, due.nomail_until as ended_until`,
    [limit],
  );
  return rows;
}

/**
 * The mode an open-ended `nomail` member goes back to (`each` is kept as null, as a pause with no
 * mode remembered): what an import writes for a Mailman digest member whose delivery is off. A
 * member on a vacation, or receiving mail, is left alone. Whether anything changed.
 */
export async function setModeBeforeNomail(db: Queryable, listId: number, email: string, mode: 'each' | 'digest'): Promise<boolean> {
  const { rowCount } = await db.query(
    `update members set mode_before_nomail = nullif($3, 'each'), updated_at = now()
      where list_id = $1 and email = $2 and mode = 'nomail' and nomail_until is null
        and mode_before_nomail is distinct from nullif($3, 'each')`,
    [listId, email, mode],
  );
  return (rowCount ?? 0) > 0;
}

/** Sets a member's name, and nothing else (an add also sets the mode); false when it had it. */
export async function setMemberName(db: Queryable, listId: number, email: string, name: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `update members set name = $3, updated_at = now() where list_id = $1 and email = $2 and name is distinct from $3`,
    [listId, email, name],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Remembers the mode and digest format an import gave a member (a format it did not give leaves
 * the one remembered), so that the next import can tell them from a change made here since.
 */
export async function recordImportedMode(db: Queryable, listId: number, email: string, mode: DeliveryMode, digestFormat: DigestFormat | null): Promise<void> {
  await db.query(
    `update members set import_mode = $3, import_digest_format = coalesce($4, import_digest_format)
      where list_id = $1 and email = $2 and (import_mode is distinct from $3 or import_digest_format is distinct from coalesce($4, import_digest_format))`,
    [listId, email, mode, digestFormat],
  );
}

export async function setDigestFormat(db: Queryable, listId: number, email: string, format: DigestFormat): Promise<boolean> {
  const { rowCount } = await db.query(
    `update members set digest_format = $3, updated_at = now() where list_id = $1 and email = $2`,
    [listId, email, format],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Moves a subscription to another address of the same person: the row keeps its id, mode and
 * history. A leftover unsubscribed row of that address on the list gives way (the pair is
 * unique). Bounces counted against the old address do not follow it: the new one was just verified.
 * Nor do its tokens: the mail sent to the old address carries them (/u/TOKEN, LIST-bounces+TOKEN@),
 * and whoever reads that mailbox now must not see, unsubscribe or bounce the new address with them.
 */
export async function moveMemberAddress(db: Queryable, memberId: number, listId: number, email: string): Promise<void> {
  await db.query(`delete from members where list_id = $1 and email = $2 and status = 'unsubscribed' and id <> $3`, [listId, email, memberId]);
  await db.query('delete from member_token_aliases where member_id = $1', [memberId]);
  const { rows } = await db.query<{ token: string }>(
    `update members set email = $2, token = replace(gen_random_uuid()::text, '-', ''),
            bounce_score = 0, bounce_updated_at = now(), bounce_probe_token = null, bounce_probe_sent_at = null,
            status = case when status = 'disabled' then 'active' else status end, disabled_at = null, disabled_reason = null, updated_at = now()
      where id = $1 returning token`,
    [memberId, email],
  );
  if (rows[0]) await moveQueuedCopies(db, memberId, email, rows[0].token);
}

/**
 * The member's copies still waiting in the queue (a retry can wait days) follow the subscription
 * to its new address, with its new token in the envelope (VERP) and in the links rendered at
 * sending: the old mailbox may be someone else's by now. A post the new address already has a
 * copy of (it was on the list before) is not sent twice. Copies being sent right now go as they are.
 */
async function moveQueuedCopies(db: Queryable, memberId: number, email: string, token: string): Promise<void> {
  await db.query(
    `update outbox o set state = 'cancelled', last_error = 'not sent: the member moved to an address that has its own copy'
      where o.member_id = $1 and o.state = 'queued' and o.kind = 'post'
        and exists (select 1 from outbox x where x.list_id = o.list_id and x.message_id = o.message_id and x.recipient = $2)`,
    [memberId, email],
  );
  await db.query(
    `update outbox o set recipient = $2, domain = split_part($2, '@', 2), member_token = $3,
            envelope_from = coalesce(replace(o.envelope_from, o.member_token || '@', $3 || '@'), o.envelope_from)
      where o.member_id = $1 and o.state = 'queued' and o.kind in ('post', 'digest')`,
    [memberId, email, token],
  );
}

/** Turns delivery back on for a member disabled by bounces: status active, bounce score 0, no probe. */
export async function reenableMember(db: Queryable, listId: number, email: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `update members set status = 'active', bounce_score = 0, bounce_updated_at = now(), disabled_at = null,
            disabled_reason = null, bounce_probe_token = null, bounce_probe_sent_at = null, updated_at = now()
      where list_id = $1 and email = $2 and status in ('active', 'disabled')`,
    [listId, email],
  );
  return (rowCount ?? 0) > 0;
}

/** Marks a member unsubscribed by their token (one-click links); the member row, or null. */
export async function unsubscribeByToken(db: Queryable, token: string): Promise<MemberRow | null> {
  const { rows } = await db.query<MemberRow>(
    `update members set status = 'unsubscribed', updated_at = now()
      where (token = $1 or id = (select member_id from member_token_aliases where token = $1)) and status <> 'unsubscribed' returning *`,
    [token],
  );
  return rows[0] ?? null;
}

/**
 * Disables an active member with a reason (a bounced probe: only while `probeToken` is still the
 * member's outstanding probe). The notice that tells them is their first warning, when the list
 * sends warnings at all. The member row after, or null when nothing changed.
 */
export async function disableMember(db: Queryable, memberId: number, reason: string, probeToken: string | null = null): Promise<MemberRow | null> {
  const { rows } = await db.query<MemberRow>(
    `update members m set status = 'disabled', disabled_at = now(), disabled_reason = $2,
            bounce_probe_token = null, bounce_probe_sent_at = null,
            bounce_warnings_sent = least(l.bounce_warnings, 1), bounce_warned_at = now(), updated_at = now()
       from lists l
      where l.id = m.list_id and m.id = $1 and m.status = 'active' and ($3::text is null or m.bounce_probe_token = $3)
     returning m.*`,
    [memberId, reason, probeToken],
  );
  return rows[0] ?? null;
}

export async function findMemberById(db: Queryable, id: number): Promise<MemberRow | null> {
  const { rows } = await db.query<MemberRow>('select * from members where id = $1', [id]);
  return rows[0] ?? null;
}
