/*
 * Addresses stored with a domain in A-labels (`bob@xn--bcher-kva.example`) before normalizeEmail
 * gave every mailbox its U-label spelling, for the address-spellings conversion job (sql/0074,
 * src/core/conversions/address-spellings.ts): where they are, and the statements that give them the
 * canonical spelling, merging a row into the one of the other spelling where both exist. Every
 * statement finds rows by the exact stored spelling, as the search for them matched it, so that a
 * spelling the job has handled is never found again.
 */

import type { Queryable } from './pool.ts';

export type SpellingTable = 'members' | 'subscription_requests' | 'list_roles' | 'sender_rules' | 'accounts' | 'login_tokens' | 'held_messages' | 'bounces' | 'lists';

// A label of the domain (after the last '@') that starts with xn--. Stored addresses are lower case.
const A_LABEL = `'[@.]xn--[^@]*$'`;

const FOUND = `
  select 'members' as tbl, email from members where email ~ ${A_LABEL}
  union select 'subscription_requests', email from subscription_requests where email ~ ${A_LABEL}
  union select 'list_roles', email from list_roles where email ~ ${A_LABEL}
  union select 'sender_rules', email from sender_rules where email ~ ${A_LABEL}
  union select 'accounts', email from accounts where email ~ ${A_LABEL}
  union select 'accounts', email from account_addresses where email ~ ${A_LABEL}
  union select 'login_tokens', email from login_tokens where email ~ ${A_LABEL}
  union select 'held_messages', from_email from held_messages where from_email ~ ${A_LABEL}
  union select 'bounces', recipient from bounces where recipient ~ ${A_LABEL}
  union select 'lists', reply_to_address from lists where reply_to_address ~ ${A_LABEL}`;

// Spellings the job already left as they are (no valid A-label) are not looked at again.
const NOT_LEFT = `not exists (select 1 from address_spellings s where s.tbl = f.tbl and s.email = f.email and s.canonical is null)`;

/** Up to `limit` stored spellings with an A-label the job has yet to handle, by table. One pass over each table. */
export async function spellingsToConvert(db: Queryable, limit: number): Promise<{ tbl: SpellingTable; email: string }[]> {
  const { rows } = await db.query<{ tbl: SpellingTable; email: string }>(
    `select tbl, email from (${FOUND}) f where ${NOT_LEFT} order by tbl, email limit $1`,
    [limit],
  );
  return rows;
}

export async function countSpellingsToConvert(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`select count(*)::int as n from (${FOUND}) f where ${NOT_LEFT}`);
  return rows[0].n;
}

/** The job's report for one spelling (canonical null: left as it is). */
export async function recordSpelling(db: Queryable, tbl: SpellingTable, email: string, canonical: string | null, outcome: string, rowsChanged: number): Promise<void> {
  await db.query(
    `insert into address_spellings (tbl, email, canonical, outcome, rows_changed) values ($1, $2, $3, $4, $5)
     on conflict (tbl, email) do update
       set canonical = excluded.canonical, outcome = excluded.outcome,
           rows_changed = address_spellings.rows_changed + excluded.rows_changed, decided_at = now()`,
    [tbl, email, canonical, outcome, rowsChanged],
  );
}

/** Rows where the address is only a record (a request, a link, a held post's sender, a bounce, a list's Reply-To): respelled, none merged. */
const RESPELL: Record<'subscription_requests' | 'login_tokens' | 'held_messages' | 'bounces' | 'lists', string> = {
  subscription_requests: 'update subscription_requests set email = $2 where email = $1',
  login_tokens: 'update login_tokens set email = $2 where email = $1',
  held_messages: 'update held_messages set from_email = $2 where from_email = $1',
  bounces: 'update bounces set recipient = $2 where recipient = $1',
  lists: 'update lists set reply_to_address = $2 where reply_to_address = $1',
};

export async function respell(db: Queryable, tbl: keyof typeof RESPELL, spelling: string, canonical: string): Promise<number> {
  const { rowCount } = await db.query(RESPELL[tbl], [spelling, canonical]);
  return rowCount ?? 0;
}

export interface SpelledMember {
  id: number;
  list_id: number;
  list_address: string;
  email: string;
  name: string | null;
  mode: string;
  status: 'active' | 'pending' | 'disabled' | 'unsubscribed';
  created_at: Date;
}

/** Every list's member rows under either spelling, locked, by list. */
export async function membersSpelled(db: Queryable, spelling: string, canonical: string): Promise<SpelledMember[]> {
  const { rows } = await db.query<SpelledMember>(
    `select m.id, m.list_id, l.address as list_address, m.email, m.name, m.mode, m.status, m.created_at
       from members m join lists l on l.id = m.list_id
      where m.email in ($1, $2) order by m.list_id, m.id for update of m`,
    [spelling, canonical],
  );
  return rows;
}

/**
 * One list's two rows of one mailbox become `keep`: the other's bounces are moved to it (its
 * history stays with the member) and its name fills a missing one; then it is deleted, and `keep`
 * gets the canonical spelling.
 */
export async function mergeMember(db: Queryable, keepId: number, dropId: number, canonical: string): Promise<void> {
  await db.query('update bounces set member_id = $1 where member_id = $2', [keepId, dropId]);
  // The dropped row's token (and any it had kept) stays good for the kept row: mail sent before
  // carries it in its unsubscribe link and return address (sql/0076).
  await db.query('update member_token_aliases set member_id = $1 where member_id = $2', [keepId, dropId]);
  await db.query('insert into member_token_aliases (token, member_id) select token, $1 from members where id = $2 on conflict (token) do nothing', [keepId, dropId]);
  const { rows } = await db.query<{ name: string | null }>('delete from members where id = $1 returning name', [dropId]);
  await db.query('update members set email = $2, name = coalesce(name, $3), updated_at = now() where id = $1', [keepId, canonical, rows[0]?.name ?? null]);
}

export async function respellMember(db: Queryable, id: number, canonical: string): Promise<void> {
  await db.query('update members set email = $2, updated_at = now() where id = $1', [id, canonical]);
}

/**
 * A role (owner, moderator) under the A-label spelling: respelled, or deleted where the list gives
 * the same role to the canonical spelling already. Returns the roles deleted as duplicates.
 */
export async function respellRoles(db: Queryable, spelling: string, canonical: string): Promise<{ respelled: number; merged: { list_id: number; list_address: string; role: string }[] }> {
  const { rowCount } = await db.query(
    `update list_roles r set email = $2 where email = $1
        and not exists (select 1 from list_roles o where o.list_id = r.list_id and o.role = r.role and o.email = $2)`,
    [spelling, canonical],
  );
  const { rows } = await db.query<{ list_id: number; list_address: string; role: string }>(
    `with gone as (delete from list_roles where email = $1 returning list_id, role)
     select g.list_id, l.address as list_address, g.role from gone g join lists l on l.id = g.list_id order by g.list_id, g.role`,
    [spelling],
  );
  return { respelled: rowCount ?? 0, merged: rows };
}

export interface SpelledRule {
  list_id: number;
  list_address: string;
  email: string;
  kind: 'allow' | 'ban';
  expires_at: Date | null;
  created_by: string;
  created_at: Date;
}

/** Every list's sender rules under either spelling (an address or '@domain'), locked, by list. */
export async function rulesSpelled(db: Queryable, spelling: string, canonical: string): Promise<SpelledRule[]> {
  const { rows } = await db.query<SpelledRule>(
    `select r.list_id, l.address as list_address, r.email, r.kind, r.expires_at, r.created_by, r.created_at
       from sender_rules r join lists l on l.id = r.list_id
      where r.email in ($1, $2) order by r.list_id, r.email for update of r`,
    [spelling, canonical],
  );
  return rows;
}

/** One list's rule under `keep`'s spelling stays (respelled); the one under the other goes. */
export async function mergeRule(db: Queryable, listId: number, keep: string, drop: string, canonical: string): Promise<void> {
  await db.query('delete from sender_rules where list_id = $1 and email = $2', [listId, drop]);
  if (keep !== canonical) await respellRule(db, listId, keep, canonical);
}

export async function respellRule(db: Queryable, listId: number, spelling: string, canonical: string): Promise<void> {
  await db.query('update sender_rules set email = $3 where list_id = $1 and email = $2', [listId, spelling, canonical]);
}
