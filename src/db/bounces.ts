/*
 * Bounces and members' bounce scores (sql/0003_delivery.sql), and what follows a score that
 * reaches the threshold: the probe, the warnings of a disabled member, the removal
 * (sql/0030_bounce_probes.sql).
 */

import { PROBE_TOKEN } from '../mail/address.ts';
import type { MemberRow } from './members.ts';
import type { Queryable } from './pool.ts';

export type BounceKind = 'hard' | 'soft' | 'policy' | 'unknown';

export interface BounceRow {
  id: number;
  list_id: number | null;
  member_id: number | null;
  received_at: Date;
  source: 'dsn' | 'smtp';
  recipient: string | null;
  kind: BounceKind;
  category: string;
  status: string | null;
  diagnostic: string | null;
  counted: boolean;
  score_after: number | null;
  /** a bounce of a probe: it decides whether the member is disabled */
  probe: boolean;
}

export interface NewBounce {
  listId: number | null;
  memberId: number | null;
  source: 'dsn' | 'smtp';
  recipient: string | null;
  kind: BounceKind;
  category: string;
  status: string | null;
  diagnostic: string | null;
  counted: boolean;
  scoreAfter: number | null;
  probe?: boolean;
}

export async function insertBounce(db: Queryable, b: NewBounce): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `insert into bounces (list_id, member_id, source, recipient, kind, category, status, diagnostic, counted, score_after, probe)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id`,
    [b.listId, b.memberId, b.source, b.recipient, b.kind, b.category, b.status, b.diagnostic?.slice(0, 2000) ?? null, b.counted, b.scoreAfter, b.probe ?? false],
  );
  return rows[0].id;
}

/**
 * The kinds of bounce that moved a member's score in the last 24 hours, after locking the member
 * so that two bounces arriving together see each other (the second waits for the first's commit,
 * and its next statement reads it).
 */
export async function kindsCountedToday(db: Queryable, memberId: number): Promise<BounceKind[]> {
  await db.query(`select 1 from members where id = $1 for update`, [memberId]);
  const { rows } = await db.query<{ kind: BounceKind }>(
    `select distinct kind from bounces
      where member_id = $1 and counted and not probe and received_at > now() - interval '24 hours'`,
    [memberId],
  );
  return rows.map((r) => r.kind);
}

/**
 * Adds `weight` to a member's bounce score after letting the old score decay with the given
 * half-life since it last changed. Returns the new score and the list's threshold.
 */
export async function raiseBounceScore(db: Queryable, memberId: number, weight: number, halfLifeDays: number): Promise<{ score: number; threshold: number; status: string } | null> {
  const { rows } = await db.query<{ score: number; threshold: number; status: string }>(
    `update members m set
        bounce_score = (m.bounce_score * power(0.5, extract(epoch from now() - coalesce(m.bounce_updated_at, now())) / 86400.0 / $3))::real + $2,
        bounce_updated_at = now(), updated_at = now()
       from lists l where l.id = m.list_id and m.id = $1
     returning m.bounce_score as score, l.bounce_threshold as threshold, m.status`,
    [memberId, weight, halfLifeDays],
  );
  return rows[0] ?? null;
}

/** Lets every score decay (periodic maintenance); scores that fall under 0.05 become 0. */
export async function decayBounceScores(db: Queryable, halfLifeDays: number): Promise<number> {
  const { rowCount } = await db.query(
    // Computed from the row being updated, not from a subquery's snapshot: a bounce counted by
    // another transaction while this runs is waited for and kept (PostgreSQL re-reads the row and
    // re-checks the condition), where a value read before it would overwrite its weight.
    `update members m set
        bounce_score = (select case when d.v < 0.05 then 0 else d.v end from (select
          (m.bounce_score * power(0.5, extract(epoch from now() - coalesce(m.bounce_updated_at, now())) / 86400.0 / $1))::real as v) d),
        bounce_updated_at = now()
      where m.bounce_score > 0 and m.bounce_updated_at < now() - interval '1 hour'`,
    [halfLifeDays],
  );
  return rowCount ?? 0;
}

/** Deletes up to `limit` bounce records older than `days` (scores live on members, not here). */
export async function pruneBounces(db: Queryable, days: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `delete from bounces where id in (
       select id from bounces where received_at < now() - make_interval(days => $1)
        order by received_at limit $2 for update skip locked)`,
    [days, limit],
  );
  return rowCount ?? 0;
}

/** A member's recent bounces, newest first (web panel: bounce details). */
export async function memberBounces(db: Queryable, memberId: number, limit = 50): Promise<BounceRow[]> {
  const { rows } = await db.query<BounceRow>(
    'select * from bounces where member_id = $1 order by received_at desc, id desc limit $2',
    [memberId, limit],
  );
  return rows;
}

// ---- Probes, warnings, removal ----

/** A probe's token, as its VERP address carries it (src/mail/address.ts PROBE_TOKEN). */
const NEW_PROBE_TOKEN = `'probe-' || replace(gen_random_uuid()::text, '-', '')`;

/**
 * Starts a probe for an active member who has none outstanding: the new probe token, or null
 * (not active, or a probe already on its way: one at a time).
 */
export async function startProbe(db: Queryable, memberId: number): Promise<string | null> {
  const { rows } = await db.query<{ token: string }>(
    `update members set bounce_probe_token = ${NEW_PROBE_TOKEN}, bounce_probe_sent_at = now(), updated_at = now()
      where id = $1 and status = 'active' and bounce_probe_token is null
     returning bounce_probe_token as token`,
    [memberId],
  );
  return rows[0]?.token ?? null;
}

export async function findMemberByProbeToken(db: Queryable, token: string): Promise<MemberRow | null> {
  if (!PROBE_TOKEN.test(token)) return null;
  const { rows } = await db.query<MemberRow>('select * from members where bounce_probe_token = $1', [token]);
  return rows[0] ?? null;
}

/**
 * Forgets up to `limit` probes sent more than `days` ago that nobody bounced: mail reaches the
 * member after all, so the score that led to the probe is cleared too. One statement with row
 * locks skipped, so workers running it together each take other rows.
 */
export async function expireProbes(db: Queryable, days: number, limit: number): Promise<Pick<MemberRow, 'id' | 'list_id' | 'email' | 'status'>[]> {
  const { rows } = await db.query<Pick<MemberRow, 'id' | 'list_id' | 'email' | 'status'>>(
    `with due as (
       select id from members where bounce_probe_sent_at < now() - make_interval(days => $1)
        order by bounce_probe_sent_at limit $2 for update skip locked)
     update members m set bounce_probe_token = null, bounce_probe_sent_at = null,
            bounce_score = case when m.status = 'active' then 0 else m.bounce_score end,
            bounce_updated_at = now(), updated_at = now()
       from due where m.id = due.id
     returning m.id, m.list_id, m.email, m.status`,
    [days, limit],
  );
  return rows;
}

/**
 * Claims up to `limit` disabled members due for their next warning (fewer sent than the list's
 * bounce_warnings, the last one bounce_warning_interval_days ago) and counts the warning as sent:
 * the caller queues it in the same transaction. Rows another worker holds are skipped, and a row
 * it has just warned no longer qualifies, so no warning goes out twice.
 */
export async function claimDueWarnings(db: Queryable, limit: number): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>(
    `with due as (
       select m.id from members m join lists l on l.id = m.list_id
        where m.status = 'disabled' and m.bounce_warned_at is not null
          and m.bounce_warnings_sent < l.bounce_warnings
          and m.bounce_warned_at <= now() - make_interval(days => l.bounce_warning_interval_days)
        order by m.bounce_warned_at limit $1 for update of m skip locked)
     update members m set bounce_warnings_sent = m.bounce_warnings_sent + 1, bounce_warned_at = now(), updated_at = now()
       from due where m.id = due.id
     returning m.*`,
    [limit],
  );
  return rows;
}

/**
 * Claims up to `limit` disabled members whose last warning went unanswered for an interval (or
 * at once when the list sends no warnings) and unsubscribes them, with the reason.
 */
export async function claimDueRemovals(db: Queryable, limit: number): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>(
    `with due as (
       select m.id from members m join lists l on l.id = m.list_id
        where m.status = 'disabled' and m.bounce_warned_at is not null
          and m.bounce_warnings_sent >= l.bounce_warnings
          and (l.bounce_warnings = 0 or m.bounce_warned_at <= now() - make_interval(days => l.bounce_warning_interval_days))
        order by m.bounce_warned_at limit $1 for update of m skip locked)
     update members m set status = 'unsubscribed', updated_at = now(),
            unsubscribed_reason = left('bounces: ' || coalesce(m.disabled_reason, 'delivery kept failing'), 500)
       from due where m.id = due.id
     returning m.*`,
    [limit],
  );
  return rows;
}
