import type { Queryable } from './pool.ts';

export type DeliveryMode = 'each' | 'digest' | 'nomail';
export type MemberStatus = 'active' | 'pending' | 'disabled' | 'unsubscribed';

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
}

export type AddOutcome = 'added' | 'reactivated' | 'updated' | 'unchanged';

/**
 * Adds an active member (an administrator's add: no confirmation). An existing row is
 * reactivated, or has its mode changed; the outcome says which.
 */
export async function addMember(db: Queryable, listId: number, email: string, mode: DeliveryMode, name: string | null = null): Promise<AddOutcome> {
  const { rows } = await db.query<{ outcome: AddOutcome }>(
    `with before as (select status, mode from members where list_id = $1 and email = $2),
     up as (
       insert into members (list_id, email, mode, name) values ($1, $2, $3, $4)
       on conflict (list_id, email) do update
         set status = 'active', mode = excluded.mode, name = coalesce(excluded.name, members.name), updated_at = now()
         where members.status <> 'active' or members.mode <> excluded.mode
       returning 1)
     select case when not exists (select 1 from before) then 'added'
                 when (select status from before) <> 'active' then 'reactivated'
                 when exists (select 1 from up) then 'updated'
                 else 'unchanged' end as outcome`,
    [listId, email, mode, name],
  );
  return rows[0].outcome;
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

export async function listMembers(db: Queryable, listId: number): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>('select * from members where list_id = $1 order by email', [listId]);
  return rows;
}

export async function findMember(db: Queryable, listId: number, email: string): Promise<MemberRow | null> {
  const { rows } = await db.query<MemberRow>('select * from members where list_id = $1 and email = $2', [listId, email]);
  return rows[0] ?? null;
}
