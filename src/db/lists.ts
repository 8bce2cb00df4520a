import { Conflict, InvalidInput, NotFound } from '../errors.ts';
import { roleCandidates, splitAddress, type Role } from '../mail/address.ts';
import type { Queryable } from './pool.ts';

export type PostPolicy = 'open' | 'members' | 'moderated';
export type SubscribePolicy = 'open' | 'confirm' | 'approve';
export type ArchivePolicy = 'public' | 'members' | 'private';

export interface ListRow {
  id: number;
  address: string;
  local_part: string;
  domain: string;
  name: string;
  description: string;
  post_policy: PostPolicy;
  subscribe_policy: SubscribePolicy;
  archive: ArchivePolicy;
  created_at: Date;
}

export interface NewList {
  address: string;
  name: string;
  description: string;
  postPolicy: PostPolicy;
  subscribePolicy: SubscribePolicy;
  archive: ArchivePolicy;
  owners: string[];
}

export async function createList(db: Queryable, list: NewList): Promise<ListRow> {
  const parts = splitAddress(list.address)!;
  const { rows } = await db.query<ListRow>(
    `with l as (
       insert into lists (address, local_part, domain, name, description, post_policy, subscribe_policy, archive)
       values ($1, $2, $3, $4, $5, $6, $7, $8)
       on conflict do nothing returning *),
     o as (insert into list_roles (list_id, email, role) select l.id, unnest($9::text[]), 'owner' from l)
     select * from l`,
    [list.address, parts.local, parts.domain, list.name, list.description, list.postPolicy, list.subscribePolicy, list.archive, list.owners],
  );
  if (!rows[0]) throw new Conflict(`list ${list.address} already exists`, 'list_exists');
  return rows[0];
}

/** A list by full address, or by local part when that is unique (DESIGN §4). */
export async function findList(db: Queryable, ref: string): Promise<ListRow> {
  const key = ref.trim().toLowerCase();
  if (!key) throw new InvalidInput('no list given');
  const { rows } = await db.query<ListRow>(
    `select * from lists where address = $1 or ($2 and local_part = $1) order by id limit 2`,
    [key, !key.includes('@')],
  );
  if (rows.length === 0) throw new NotFound(`no list ${ref}`, 'no_such_list');
  if (rows.length > 1) throw new InvalidInput(`"${ref}" names more than one list: give the full address (${rows.map((r) => r.address).join(', ')})`, 'ambiguous_list');
  return rows[0];
}

export async function allLists(db: Queryable): Promise<ListRow[]> {
  const { rows } = await db.query<ListRow>('select * from lists order by address');
  return rows;
}

export interface ListStats {
  members: number;
  messages: number;
  last_activity: Date | null;
}

export async function listStats(db: Queryable, listId: number): Promise<ListStats> {
  const { rows } = await db.query<ListStats>(
    `select (select count(*) from members where list_id = $1 and status in ('active', 'disabled'))::int as members,
            (select count(*) from list_messages where list_id = $1)::int as messages,
            (select max(date) from list_messages where list_id = $1) as last_activity`,
    [listId],
  );
  return rows[0];
}

export async function listOwners(db: Queryable, listId: number): Promise<string[]> {
  const { rows } = await db.query<{ email: string }>(
    `select email from list_roles where list_id = $1 and role = 'owner' order by email`, [listId]);
  return rows.map((r) => r.email);
}

export interface ResolvedRecipient {
  list: ListRow;
  role: Role;
  token?: string;
}

/** What an RCPT TO address means: a list and one of its roles, or null when it is no address of ours. */
export async function resolveRecipient(db: Queryable, address: string): Promise<ResolvedRecipient | null> {
  const parts = splitAddress(address);
  if (!parts) return null;
  const candidates = roleCandidates(parts.local);
  if (candidates.length === 0) return null;
  const { rows } = await db.query<ListRow>(
    'select * from lists where domain = $1 and local_part = any($2::text[])',
    [parts.domain, candidates.map((c) => c.localPart)],
  );
  for (const c of candidates) {
    const list = rows.find((r) => r.local_part === c.localPart);
    if (list) return { list, role: c.role, token: c.token };
  }
  return null;
}
