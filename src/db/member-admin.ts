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

/** One page of a list's members matching a filter, and how many match in all. */
export async function searchMembers(db: Queryable, listId: number, f: MemberFilter, limit: number, offset: number): Promise<{ rows: MemberRow[]; total: number }> {
  const { rows } = await db.query<MemberRow & { total: number }>(
    `select m.*, count(*) over ()::int as total from members m
      where m.list_id = $1
        and ($2::text is null or m.email ilike $2 or coalesce(m.name, '') ilike $2)
        and ($3::text is null or m.mode = $3)
        and ($4::text is null or m.status = $4)
      order by m.email
      limit $5 offset $6`,
    [listId, likePattern(f.q), f.mode ?? null, f.status ?? null, limit, offset],
  );
  return { rows: rows.map(({ total: _t, ...m }) => m), total: rows[0]?.total ?? 0 };
}

export async function memberCounts(db: Queryable, listId: number): Promise<Record<MemberStatus, number>> {
  const { rows } = await db.query<{ status: MemberStatus; n: number }>(
    `select status, count(*)::int as n from members where list_id = $1 group by status`,
    [listId],
  );
  const out: Record<MemberStatus, number> = { active: 0, pending: 0, disabled: 0, unsubscribed: 0 };
  for (const r of rows) out[r.status] = r.n;
  return out;
}

/** Members after `afterEmail` in address order: the CSV export pages through a list this way. */
export async function memberBatch(db: Queryable, listId: number, f: MemberFilter, afterEmail: string, limit: number): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>(
    `select * from members m
      where m.list_id = $1 and m.email > $2
        and ($3::text is null or m.email ilike $3 or coalesce(m.name, '') ilike $3)
        and ($4::text is null or m.mode = $4)
        and ($5::text is null or m.status = $5)
      order by m.email limit $6`,
    [listId, afterEmail, likePattern(f.q), f.mode ?? null, f.status ?? null, limit],
  );
  return rows;
}

/** Every subscription of one address, with its list (a member's own page). */
export interface Subscription extends MemberRow {
  list_address: string;
  list_name: string;
  list_description: string;
}

export async function subscriptionsOf(db: Queryable, email: string): Promise<Subscription[]> {
  const { rows } = await db.query<Subscription>(
    `select m.*, l.address as list_address, l.name as list_name, l.description as list_description
       from members m join lists l on l.id = m.list_id
      where m.email = $1 and m.status <> 'unsubscribed'
      order by l.address`,
    [email],
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
