import type pg from 'pg';
import type { ArchivePolicy, PostPolicy, SubscribePolicy } from '../list-policies.ts';
import type { ListRow } from './lists.ts';
import { withTransaction, type Queryable } from './pool.ts';

export type ListRole = 'owner' | 'moderator';

/** The strongest role any of these addresses (one person's) holds on a list: owner, moderator, or none. */
export async function roleOnList(db: Queryable, listId: number, emails: string[]): Promise<ListRole | null> {
  const { rows } = await db.query<{ role: ListRole }>(
    `select role from list_roles where list_id = $1 and email = any($2::text[]) order by role = 'owner' desc limit 1`,
    [listId, emails],
  );
  return rows[0]?.role ?? null;
}

export interface ListWithRole extends ListRow {
  role: ListRole | null;
  members: number;
  held: number;
  requests: number;
}

/** The lists a viewer may administer (all of them for a site administrator), with their role. */
export async function listsForStaff(db: Queryable, emails: string[], siteAdmin: boolean): Promise<ListWithRole[]> {
  const { rows } = await db.query<ListWithRole>(
    `select l.*, r.role,
            (select count(*) from members m where m.list_id = l.id and m.status in ('active', 'disabled'))::int as members,
            (select count(*) from held_messages h where h.list_id = l.id and h.state = 'held')::int as held,
            (select count(*) from subscription_requests s where s.list_id = l.id and s.state = 'approval')::int as requests
       from lists l
       left join lateral (select role from list_roles where list_id = l.id and email = any($1::text[])
                           order by role = 'owner' desc limit 1) r on true
      where $2 or r.role is not null
      order by l.address`,
    [emails, siteAdmin],
  );
  return rows;
}

export async function listRoles(db: Queryable, listId: number): Promise<{ email: string; role: ListRole }[]> {
  const { rows } = await db.query<{ email: string; role: ListRole }>(
    `select email, role from list_roles where list_id = $1 order by role, email`,
    [listId],
  );
  return rows;
}

export async function addListRole(db: Queryable, listId: number, email: string, role: ListRole): Promise<boolean> {
  const { rowCount } = await db.query(
    `insert into list_roles (list_id, email, role) values ($1, $2, $3) on conflict do nothing`,
    [listId, email, role],
  );
  return (rowCount ?? 0) > 0;
}

export async function removeListRole(db: Queryable, listId: number, email: string, role: ListRole): Promise<boolean> {
  const { rowCount } = await db.query(`delete from list_roles where list_id = $1 and email = $2 and role = $3`, [listId, email, role]);
  return (rowCount ?? 0) > 0;
}

/**
 * Locks the list's row until the transaction ends, so that changes to its roles made under it
 * take turns. NO KEY UPDATE: posts and members referencing the list are not held up.
 */
export async function lockListRoles(db: Queryable, listId: number): Promise<void> {
  await db.query(`select 1 from lists where id = $1 for no key update`, [listId]);
}

export async function countOwners(db: Queryable, listId: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`select count(*)::int as n from list_roles where list_id = $1 and role = 'owner'`, [listId]);
  return rows[0].n;
}

export interface CoreSettings {
  name: string;
  description: string;
  post_policy: PostPolicy;
  subscribe_policy: SubscribePolicy;
  archive: ArchivePolicy;
}

export async function updateCoreSettings(db: Queryable, listId: number, s: CoreSettings): Promise<void> {
  await db.query(
    `update lists set name = $2, description = $3, post_policy = $4, subscribe_policy = $5, archive = $6 where id = $1`,
    [listId, s.name, s.description, s.post_policy, s.subscribe_policy, s.archive],
  );
}

export interface DeletionImpact {
  members: number;
  messages: number;
  /** archived messages that belong to no other list: they are deleted with the list */
  onlyHere: number;
  roles: number;
}

export async function deletionImpact(db: Queryable, listId: number): Promise<DeletionImpact> {
  const { rows } = await db.query<DeletionImpact>(
    `select (select count(*) from members where list_id = $1 and status <> 'unsubscribed')::int as members,
            (select count(*) from list_messages where list_id = $1)::int as messages,
            (select count(*) from list_messages lm where lm.list_id = $1
               and not exists (select 1 from list_messages o where o.message_id = lm.message_id and o.list_id <> $1))::int as "onlyHere",
            (select count(*) from list_roles where list_id = $1)::int as roles`,
    [listId],
  );
  return rows[0];
}

/**
 * Deletes a list with its members, roles and whatever else references it, and the archived
 * messages that belonged to it alone (cross-posted messages stay in their other lists).
 */
export async function deleteList(pool: pg.Pool, listId: number): Promise<void> {
  await withTransaction(pool, (c) => deleteListIn(c, listId));
}

/**
 * deleteList inside the caller's transaction. The list's row is locked first (a post being
 * archived in it is waited for; one that comes later fails and is retried by its sender), then
 * the messages it alone has: the same message being archived for another list meanwhile is waited
 * for, and a message that another list has by then is kept. Read once without locks, such a
 * message was deleted with that list's copy of it, after its sender had been told 250.
 */
export async function deleteListIn(c: Queryable, listId: number): Promise<void> {
  await c.query('select 1 from lists where id = $1 for update', [listId]);
  const { rows } = await c.query<{ id: number }>(
    `select m.id from list_messages lm join messages m on m.id = lm.message_id where lm.list_id = $1
        and not exists (select 1 from list_messages o where o.message_id = lm.message_id and o.list_id <> $1)
        for update of m`,
    [listId],
  );
  await c.query('delete from lists where id = $1', [listId]);
  await c.query(
    `delete from messages m where m.id = any($1::bigint[]) and not exists (select 1 from list_messages o where o.message_id = m.id)`,
    [rows.map((r) => r.id)],
  );
}

/** Whether the account holds a role on any list through one of its verified addresses. */
export async function hasAnyListRole(db: Queryable, accountId: number): Promise<boolean> {
  const { rows } = await db.query<{ any: boolean }>(
    `select exists (select 1 from list_roles r join account_addresses aa on aa.email = r.email
                     where aa.account_id = $1 and aa.verified_at is not null) as any`, [accountId]);
  return rows[0].any;
}

export interface ListCounts {
  held: number;
  requests: number;
  messages: number;
  hidden: number;
  last_activity: Date | null;
}

export async function listCounts(db: Queryable, listId: number): Promise<ListCounts> {
  const { rows } = await db.query<ListCounts>(
    `select (select count(*) from held_messages where list_id = $1 and state = 'held')::int as held,
            (select count(*) from subscription_requests where list_id = $1 and state = 'approval')::int as requests,
            (select count(*) from list_messages where list_id = $1)::int as messages,
            (select count(*) from list_messages lm where lm.list_id = $1 and lm.hidden_at is not null)::int as hidden,
            (select max(date) from list_messages where list_id = $1) as last_activity`,
    [listId],
  );
  return rows[0];
}
