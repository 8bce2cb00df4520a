/* The read-only member list of /lists/LIST/members, and what a viewer is to the list. */

import type { Queryable } from './pool.ts';

/** What a logged-in person (by any of their verified addresses) is to a list: one of its owners or moderators, a member, or nothing. */
export type Standing = 'staff' | 'member' | null;

export async function standingOnList(db: Queryable, listId: number, emails: string[]): Promise<Standing> {
  const { rows } = await db.query<{ staff: boolean; member: boolean }>(
    `select exists (select 1 from list_roles where list_id = $1 and email = any($2::text[])) as staff,
            exists (select 1 from members where list_id = $1 and email = any($2::text[]) and status in ('active', 'disabled')) as member`,
    [listId, emails],
  );
  return rows[0].staff ? 'staff' : rows[0].member ? 'member' : null;
}

/** Who is on the list (delivery on or disabled by bounces), by address; no modes or statuses. */
export async function visibleRoster(db: Queryable, listId: number): Promise<{ email: string; name: string | null }[]> {
  const { rows } = await db.query<{ email: string; name: string | null }>(
    `select email, name from members where list_id = $1 and status in ('active', 'disabled') order by email`, [listId]);
  return rows;
}
