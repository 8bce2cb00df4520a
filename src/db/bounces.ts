/* Bounces and members' bounce scores (sql/0003_delivery.sql). */

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
}

export async function insertBounce(db: Queryable, b: NewBounce): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `insert into bounces (list_id, member_id, source, recipient, kind, category, status, diagnostic, counted, score_after)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id`,
    [b.listId, b.memberId, b.source, b.recipient, b.kind, b.category, b.status, b.diagnostic?.slice(0, 2000) ?? null, b.counted, b.scoreAfter],
  );
  return rows[0].id;
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
    `update members set
        bounce_score = case when s.v < 0.05 then 0 else s.v end, bounce_updated_at = now()
       from (select id, (bounce_score * power(0.5, extract(epoch from now() - coalesce(bounce_updated_at, now())) / 86400.0 / $1))::real as v
               from members where bounce_score > 0 and bounce_updated_at < now() - interval '1 hour') s
      where members.id = s.id`,
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
