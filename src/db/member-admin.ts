import type { DeliveryMode, MemberStatus } from '../list-policies.ts';
import type { MemberRow } from './members.ts';
import type { Queryable } from './pool.ts';

export interface MemberFilter {
  /** part of the address or name */
  q?: string | null;
  mode?: DeliveryMode | null;
  status?: MemberStatus | null;
}

function likePattern(q: string | null | undefined): string | null {
  const t = q?.trim();
  return t ? `%${t.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
}

/**
 * A list's roster as the panel shows it, the same as `listkeeper members` (db/members.ts
 * memberRoster): every member row, and as `pending` the addresses whose subscription waits for
 * their confirmation (not expired) or an owner's approval, which live in subscription_requests
 * until decided; a pending request of a former member shows instead of their `unsubscribed` row.
 * `request` marks those pending entries (they have no member page and no bulk actions).
 */
const ROSTER = `
  with pending as (
    select distinct on (email) email, name, mode, created_at from subscription_requests
     where list_id = $1 and action = 'subscribe' and (state = 'approval' or (state = 'confirm' and expires_at > now()))
     order by email, created_at desc),
  roster as (
    select m.email, m.name, m.mode, m.status, m.bounce_score, m.created_at, false as request,
           to_char(m.nomail_until at time zone 'UTC', 'YYYY-MM-DD') as nomail_until from members m
     where m.list_id = $1 and not (m.status = 'unsubscribed' and m.email in (select email from pending))
    union all
    select p.email, p.name, p.mode, 'pending', 0, p.created_at, true, null from pending p
     where not exists (select 1 from members m where m.list_id = $1 and m.email = p.email and m.status <> 'unsubscribed'))`;

/** One line of the panel's roster (ROSTER). */
export interface RosterLine {
  email: string;
  name: string | null;
  mode: DeliveryMode;
  status: MemberStatus;
  bounce_score: number;
  created_at: Date;
  /** a subscription request waiting for confirmation or approval, not a member row */
  request: boolean;
  /** the day delivery resumes (YYYY-MM-DD, UTC) when `nomail` is a vacation */
  nomail_until: string | null;
}

/** One page of a list's roster matching a filter, and how many match in all. */
export async function searchMembers(db: Queryable, listId: number, f: MemberFilter, limit: number, offset: number): Promise<{ rows: RosterLine[]; total: number }> {
  const { rows } = await db.query<RosterLine & { total: number }>(
    `${ROSTER}
     select r.*, count(*) over ()::int as total from roster r
      where ($2::text is null or r.email ilike $2 or coalesce(r.name, '') ilike $2)
        and ($3::text is null or r.mode = $3)
        and ($4::text is null or r.status = $4)
      order by r.email
      limit $5 offset $6`,
    [listId, likePattern(f.q), f.mode ?? null, f.status ?? null, limit, offset],
  );
  return { rows: rows.map(({ total: _t, ...m }) => m), total: rows[0]?.total ?? 0 };
}

export async function memberCounts(db: Queryable, listId: number): Promise<Record<MemberStatus, number>> {
  const { rows } = await db.query<{ status: MemberStatus; n: number }>(
    `${ROSTER} select status, count(*)::int as n from roster group by status`,
    [listId],
  );
  const out: Record<MemberStatus, number> = { active: 0, pending: 0, disabled: 0, unsubscribed: 0 };
  for (const r of rows) out[r.status] = r.n;
  return out;
}

/** Roster lines after `afterEmail` in address order: the CSV export pages through a list this way. */
export async function memberBatch(db: Queryable, listId: number, f: MemberFilter, afterEmail: string, limit: number): Promise<RosterLine[]> {
  const { rows } = await db.query<RosterLine>(
    `${ROSTER}
     select r.* from roster r
      where r.email > $2
        and ($3::text is null or r.email ilike $3 or coalesce(r.name, '') ilike $3)
        and ($4::text is null or r.mode = $4)
        and ($5::text is null or r.status = $5)
      order by r.email limit $6`,
    [listId, afterEmail, likePattern(f.q), f.mode ?? null, f.status ?? null, limit],
  );
  return rows;
}

/** Every subscription of one person's addresses, with its list (a member's own page). */
export interface Subscription extends MemberRow {
  list_address: string;
  list_name: string;
  list_description: string;
}

export async function subscriptionsOf(db: Queryable, emails: string[]): Promise<Subscription[]> {
  const { rows } = await db.query<Subscription>(
    `select m.*, l.address as list_address, l.name as list_name, l.description as list_description
       from members m join lists l on l.id = m.list_id
      where m.email = any($1::text[]) and m.status <> 'unsubscribed'
      order by l.address, m.email`,
    [emails],
  );
  return rows;
}

/** Bulk removal in one statement (members become 'unsubscribed'; rows stay for history); the addresses it changed. */
export async function removeMembers(db: Queryable, listId: number, emails: string[]): Promise<string[]> {
  const { rows } = await db.query<{ email: string }>(
    `update members set status = 'unsubscribed', updated_at = now() where list_id = $1 and email = any($2::text[]) and status <> 'unsubscribed'
     returning email`,
    [listId, emails],
  );
  return rows.map((r) => r.email);
}

/** Audit entries about one address on one list. */
export async function memberAudit(db: Queryable, listId: number, email: string, limit = 20) {
  const { rows } = await db.query<{ id: number; at: Date; actor: string; action: string; detail: Record<string, unknown> }>(
    `select id, at, actor, action, detail from audit_log where list_id = $1 and target = $2 order by id desc limit $3`,
    [listId, email, limit],
  );
  return rows;
}
