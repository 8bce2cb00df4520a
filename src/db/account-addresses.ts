/*
 * An account's addresses (sql/0049): verified ones, one of them primary (accounts.email), and
 * added ones waiting for their mailed link. A verified address belongs to one account only.
 */

import { isUniqueViolation } from './pg-errors.ts';
import type { Queryable } from './pool.ts';

export interface AccountAddress {
  email: string;
  verified_at: Date | null;
  created_at: Date;
  primary: boolean;
}

/** The account's addresses: the primary first, then verified ones, then those awaiting their link. */
export async function accountAddresses(db: Queryable, accountId: number): Promise<AccountAddress[]> {
  const { rows } = await db.query<AccountAddress>(
    `select aa.email, aa.verified_at, aa.created_at, aa.email = a.email as primary
       from account_addresses aa join accounts a on a.id = aa.account_id
      where aa.account_id = $1
      order by aa.email = a.email desc, aa.verified_at is null, aa.email`,
    [accountId],
  );
  return rows;
}

/**
 * Records an address the account asked to add, unverified; an address it already has stays as it
 * is. Whether another account holds it is not looked at: the answer must not depend on it.
 */
export async function addPendingAddress(db: Queryable, accountId: number, email: string): Promise<AccountAddress | null> {
  await db.query(
    `insert into account_addresses (account_id, email) values ($1, $2) on conflict (account_id, email) do nothing`,
    [accountId, email],
  );
  return (await accountAddresses(db, accountId)).find((a) => a.email === email) ?? null;
}

export type VerifyOutcome = 'verified' | 'already' | 'taken' | 'withdrawn';

/**
 * Marks an address verified for the account that asked: 'taken' when another account has it
 * verified (nothing changes), 'withdrawn' when the account removed it since.
 */
export async function verifyAddress(db: Queryable, accountId: number, email: string): Promise<VerifyOutcome> {
  const { rows } = await db.query<{ account_id: number; verified: boolean }>(
    `select account_id, verified_at is not null as verified from account_addresses
      where email = $2 and (account_id = $1 or verified_at is not null)`,
    [accountId, email],
  );
  if (rows.some((r) => r.account_id !== accountId && r.verified)) return 'taken';
  const own = rows.find((r) => r.account_id === accountId);
  if (!own) return 'withdrawn';
  if (own.verified) return 'already';
  try {
    const { rowCount } = await db.query(
      `update account_addresses set verified_at = now() where account_id = $1 and email = $2 and verified_at is null`,
      [accountId, email],
    );
    return rowCount ? 'verified' : 'already';
  } catch (err) {
    // Verified by another account between the look and the update.
    if (isUniqueViolation(err)) return 'taken';
    throw err;
  }
}

/**
 * Locks the account's row for the rest of the transaction: a removal and a change of the primary
 * address take turns. Without it, a removal waiting on "make y primary" re-checked only y's row,
 * not the account's new primary, and deleted it: the account was left with no address to find it by.
 */
async function lockAccount(db: Queryable, accountId: number): Promise<void> {
  await db.query('select 1 from accounts where id = $1 for update', [accountId]);
}

/**
 * Removes one of the account's addresses, never its primary one: whether it was verified, or null
 * when there was none to remove. In a transaction (the lock).
 */
export async function removeAddress(db: Queryable, accountId: number, email: string): Promise<{ verified: boolean } | null> {
  await lockAccount(db, accountId);
  const { rows } = await db.query<{ verified: boolean }>(
    `delete from account_addresses aa using accounts a
      where a.id = aa.account_id and aa.account_id = $1 and aa.email = $2 and aa.email <> a.email
      returning aa.verified_at is not null as verified`,
    [accountId, email],
  );
  return rows[0] ?? null;
}

/** Makes a verified address of the account its primary one; whether it did. In a transaction (the lock). */
export async function setPrimaryAddress(db: Queryable, accountId: number, email: string): Promise<boolean> {
  await lockAccount(db, accountId);
  const { rowCount } = await db.query(
    `update accounts set email = $2
      where id = $1 and email <> $2
        and exists (select 1 from account_addresses where account_id = $1 and email = $2 and verified_at is not null)`,
    [accountId, email],
  );
  return (rowCount ?? 0) > 0;
}
