/*
 * Accounts and their addresses under the A-label spelling of a mailbox, for the address-spellings
 * conversion job (sql/0074): two accounts that hold the two spellings of one mailbox become one,
 * and the addresses get the canonical spelling. A verified address belongs to one account only
 * (sql/0049), which is why the accounts are merged before the addresses are respelled.
 */

import type { Queryable } from './pool.ts';

export interface OwningAccount {
  id: number;
  email: string;
  has_password: boolean;
  is_site_admin: boolean;
  created_at: Date;
}

/** The accounts whose primary or a verified address is either spelling, oldest first, locked. */
export async function accountsOwning(db: Queryable, spelling: string, canonical: string): Promise<OwningAccount[]> {
  const { rows } = await db.query<OwningAccount>(
    `select a.id, a.email, a.password_hash is not null as has_password, a.is_site_admin, a.created_at
       from accounts a
      where a.email in ($1, $2)
         or exists (select 1 from account_addresses aa where aa.account_id = a.id and aa.email in ($1, $2) and aa.verified_at is not null)
      order by a.created_at, a.id for update`,
    [spelling, canonical],
  );
  return rows;
}

/**
 * Account `dropId` becomes part of `keepId`, then is deleted: its addresses (verified where
 * either account had them verified), its sessions, links in flight and API tokens, its password
 * if the kept account has none, and site administration if it had it. Returns the addresses it brought.
 */
export async function mergeAccount(db: Queryable, keepId: number, dropId: number): Promise<string[]> {
  // An address both accounts have: the kept row stays, verified if either was. Its twin goes first,
  // for a verified address is one account's only.
  const { rows: twins } = await db.query<{ email: string; verified_at: Date | null }>(
    `delete from account_addresses d where d.account_id = $2
        and exists (select 1 from account_addresses k where k.account_id = $1 and k.email = d.email)
      returning d.email, d.verified_at`,
    [keepId, dropId],
  );
  await db.query(
    `update account_addresses k set verified_at = coalesce(k.verified_at, t.verified_at)
       from unnest($2::text[], $3::timestamptz[]) t(email, verified_at)
      where k.account_id = $1 and k.email = t.email`,
    [keepId, twins.map((t) => t.email), twins.map((t) => t.verified_at)],
  );
  const { rows: moved } = await db.query<{ email: string }>('update account_addresses set account_id = $1 where account_id = $2 returning email', [keepId, dropId]);
  await db.query('update sessions set account_id = $1 where account_id = $2', [keepId, dropId]);
  await db.query('update login_tokens set account_id = $1 where account_id = $2', [keepId, dropId]);
  // Its API tokens too: they work while their maker is a site administrator (sql/0083), as the
  // kept account is when either was.
  await db.query('update api_tokens set created_by_account = $1 where created_by_account = $2', [keepId, dropId]);
  await db.query(
    `update accounts k set password_hash = coalesce(k.password_hash, d.password_hash),
            is_site_admin = k.is_site_admin or d.is_site_admin,
            site_admin_via = case when k.is_site_admin then k.site_admin_via else d.site_admin_via end,
            last_login_at = greatest(k.last_login_at, d.last_login_at)
       from accounts d where k.id = $1 and d.id = $2`,
    [keepId, dropId],
  );
  await db.query('delete from accounts where id = $1', [dropId]);
  return [...twins.map((t) => t.email), ...moved.map((m) => m.email)].sort();
}

/**
 * Every account's address under the A-label spelling gets the canonical one (kept verified if it
 * was), a primary one included; returns the rows respelled. Only one account may hold either
 * spelling verified by then (accountsOwning, mergeAccount).
 */
export async function respellAccountAddresses(db: Queryable, spelling: string, canonical: string): Promise<number> {
  await db.query(
    `insert into account_addresses (account_id, email, verified_at, created_at)
     select account_id, $2, verified_at, created_at from account_addresses where email = $1
     on conflict (account_id, email) do update
       set verified_at = coalesce(account_addresses.verified_at, excluded.verified_at),
           created_at = least(account_addresses.created_at, excluded.created_at)`,
    [spelling, canonical],
  );
  // The primary address: accounts_primary_is_verified (sql/0049) keeps its row verified.
  const primary = await db.query('update accounts set email = $2 where email = $1', [spelling, canonical]);
  const { rowCount } = await db.query('delete from account_addresses where email = $1', [spelling]);
  return (primary.rowCount ?? 0) + (rowCount ?? 0);
}
