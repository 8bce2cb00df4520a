import { hashToken, newToken } from '../auth/credentials.ts';
import type { Queryable } from './pool.ts';

export interface AccountRow {
  id: number;
  email: string;
  password_hash: string | null;
  is_site_admin: boolean;
  /** the single sign-on whose admin group made the account a site administrator (sql/0054); null: the command line */
  site_admin_via: 'oidc' | 'ldap' | null;
  created_at: Date;
  last_login_at: Date | null;
}

/** The account one of whose verified addresses this is (its primary or another); unverified ones name none. */
export async function findAccountByEmail(db: Queryable, email: string): Promise<AccountRow | null> {
  const { rows } = await db.query<AccountRow>(
    `select a.* from account_addresses aa join accounts a on a.id = aa.account_id
      where aa.email = $1 and aa.verified_at is not null`,
    [email],
  );
  return rows[0] ?? null;
}

export async function findAccount(db: Queryable, id: number): Promise<AccountRow | null> {
  const { rows } = await db.query<AccountRow>('select * from accounts where id = $1', [id]);
  return rows[0] ?? null;
}

/**
 * Creates the account, or updates an existing one (the one holding `email` among its verified
 * addresses): a given password hash replaces the old one, and site-administrator rights are only
 * ever added here, never taken away; given here, they are no longer a provider's to take back
 * (site_admin_via). A new account's address becomes its verified primary one (the trigger of
 * sql/0049).
 */
export async function upsertAccount(
  db: Queryable,
  email: string,
  opts: { passwordHash?: string | null; siteAdmin?: boolean } = {},
): Promise<{ account: AccountRow; created: boolean }> {
  const holder = await findAccountByEmail(db, email);
  if (holder) {
    const { rows } = await db.query<AccountRow>(
      `update accounts set password_hash = coalesce($2, password_hash), is_site_admin = is_site_admin or $3,
              site_admin_via = case when $3 then null else site_admin_via end
        where id = $1 returning *`,
      [holder.id, opts.passwordHash ?? null, opts.siteAdmin ?? false],
    );
    return { account: rows[0], created: false };
  }
  const { rows } = await db.query<AccountRow & { created: boolean }>(
    `insert into accounts (email, password_hash, is_site_admin) values ($1, $2, $3)
     on conflict (email) do update
       set password_hash = coalesce(excluded.password_hash, accounts.password_hash),
           is_site_admin = accounts.is_site_admin or excluded.is_site_admin,
           site_admin_via = case when excluded.is_site_admin then null else accounts.site_admin_via end
     returning *, (xmax = 0) as created`,
    [email, opts.passwordHash ?? null, opts.siteAdmin ?? false],
  );
  const { created, ...account } = rows[0];
  return { account, created };
}

/**
 * What a single sign-on's admin group says at a login: in it, the account becomes a site
 * administrator recorded as given by `via` (unless it already is one); out of it, the rights
 * `via` gave are taken back, and those given otherwise stay. Returns the change, if any.
 */
export async function applySsoSiteAdmin(db: Queryable, accountId: number, via: 'oidc' | 'ldap', inGroup: boolean): Promise<'granted' | 'revoked' | null> {
  const { rows } = await db.query<{ change: 'granted' | 'revoked' }>(
    `update accounts set is_site_admin = $3, site_admin_via = case when $3 then $2 else null end
      where id = $1 and (($3 and not is_site_admin) or (not $3 and is_site_admin and site_admin_via = $2))
      returning case when $3 then 'granted' else 'revoked' end as change`,
    [accountId, via, inGroup],
  );
  return rows[0]?.change ?? null;
}

/** A site administrator as `admin ls` shows one. */
export interface SiteAdmin {
  email: string;
  /** who made it one: `cli` (the command line or the panel), or the single sign-on whose admin group did */
  via: 'cli' | 'oidc' | 'ldap';
  has_password: boolean;
  created_at: Date;
  last_login_at: Date | null;
}

export async function siteAdmins(db: Queryable): Promise<SiteAdmin[]> {
  const { rows } = await db.query<SiteAdmin>(
    `select email, coalesce(site_admin_via, 'cli') as via, password_hash is not null as has_password, created_at, last_login_at
       from accounts where is_site_admin order by email`,
  );
  return rows;
}

/** Locks every site administrator's row (until the caller's transaction ends) and returns their ids. */
export async function lockSiteAdmins(tx: Queryable): Promise<number[]> {
  const { rows } = await tx.query<{ id: number }>('select id from accounts where is_site_admin order by id for update');
  return rows.map((r) => r.id);
}

/** Takes the account's site-administrator rights, whoever gave them. */
export async function dropSiteAdmin(db: Queryable, accountId: number): Promise<void> {
  await db.query('update accounts set is_site_admin = false, site_admin_via = null where id = $1', [accountId]);
}

export async function setPasswordHash(db: Queryable, accountId: number, hash: string): Promise<void> {
  await db.query('update accounts set password_hash = $2 where id = $1', [accountId, hash]);
}

/** Replaces the password hash only if it still is `expected` (null: none set); false when it is not. */
export async function replacePasswordHash(db: Queryable, accountId: number, hash: string, expected: string | null): Promise<boolean> {
  const { rowCount } = await db.query('update accounts set password_hash = $2 where id = $1 and password_hash is not distinct from $3', [accountId, hash, expected]);
  return (rowCount ?? 0) > 0;
}

export async function recordLogin(db: Queryable, accountId: number): Promise<void> {
  await db.query('update accounts set last_login_at = now() where id = $1', [accountId]);
}

/** Whether anyone may receive a login link for this address: a verified address of an account, a current subscription, a role. */
export async function knownAddress(db: Queryable, email: string): Promise<boolean> {
  const { rows } = await db.query<{ known: boolean }>(
    `select exists (select 1 from account_addresses where email = $1 and verified_at is not null)
         or exists (select 1 from members where email = $1 and status in ('active', 'disabled', 'pending'))
         or exists (select 1 from list_roles where email = $1) as known`,
    [email],
  );
  return rows[0].known;
}

/** What a mailed link is for: logging in, choosing a new password, verifying an added address. */
export type TokenPurpose = 'login' | 'reset' | 'verify';

/** What a usable token stands for: the address it was mailed to; for 'verify', the account that asked. */
export interface TokenTarget {
  email: string;
  account_id: number | null;
}

/** Hashed one-time tokens for mailed links; a 'verify' token names the account it adds the address to. */
export async function createLoginToken(db: Queryable, tokenHash: string, email: string, purpose: TokenPurpose, ttlSeconds: number, accountId: number | null = null): Promise<void> {
  await db.query(
    `insert into login_tokens (token_hash, email, purpose, expires_at, account_id) values ($1, $2, $3, now() + make_interval(secs => $4), $5)`,
    [tokenHash, email, purpose, ttlSeconds, accountId],
  );
}

/** A token that is still usable (not expired, not used), without using it. */
export async function peekLoginToken(db: Queryable, tokenHash: string, purpose: TokenPurpose): Promise<TokenTarget | null> {
  const { rows } = await db.query<TokenTarget>(
    `select email, account_id from login_tokens where token_hash = $1 and purpose = $2 and used_at is null and expires_at > now()`,
    [tokenHash, purpose],
  );
  return rows[0] ?? null;
}

/** Uses a token once: the first caller gets its address, every later one null. */
export async function consumeLoginToken(db: Queryable, tokenHash: string, purpose: TokenPurpose): Promise<TokenTarget | null> {
  const { rows } = await db.query<TokenTarget>(
    `update login_tokens set used_at = now()
      where token_hash = $1 and purpose = $2 and used_at is null and expires_at > now()
      returning email, account_id`,
    [tokenHash, purpose],
  );
  return rows[0] ?? null;
}

/** Voids the other outstanding links of an address once one was used (a reset invalidates old ones). */
export async function voidLoginTokens(db: Queryable, email: string, purpose: 'login' | 'reset'): Promise<void> {
  await db.query('update login_tokens set used_at = now() where email = $1 and purpose = $2 and used_at is null', [email, purpose]);
}

export async function pruneLoginTokens(db: Queryable): Promise<number> {
  const { rowCount } = await db.query(`delete from login_tokens where expires_at < now() - interval '1 day'`);
  return rowCount ?? 0;
}

/** Makes a one-time link token for an address; only its hash is stored. */
export async function issueLoginToken(db: Queryable, email: string, purpose: TokenPurpose, ttlSeconds: number, accountId: number | null = null): Promise<string> {
  const token = newToken();
  await pruneLoginTokens(db);
  await createLoginToken(db, hashToken(token), email, purpose, ttlSeconds, accountId);
  return token;
}
