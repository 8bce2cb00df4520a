import type { Queryable } from './pool.ts';

/** What the session middleware needs about the person behind a session cookie. */
export interface SessionAccount {
  account_id: number;
  email: string;
  /** every verified address of the account, the primary first */
  emails: string[];
  is_site_admin: boolean;
  /** owner or moderator of at least one list */
  has_list_role: boolean;
  /** the session was last touched long enough ago to refresh its expiry */
  stale: boolean;
  /** the session was opened by a login less than RECENT_LOGIN_MINUTES ago */
  recent_login: boolean;
  /** the address it was logged in with (sql/0082), null when none was */
  login_email: string | null;
}

/** Sessions last 14 days after the last visit, and never more than 90 days after the login. */
const IDLE_DAYS = 14;
const ABSOLUTE_DAYS = 90;
/**
 * How long after a login a session may change the account's addresses and password
 * (web/account/reauthenticate.ts): past it, the person logs in again, which a cookie alone cannot do.
 */
export const RECENT_LOGIN_MINUTES = 15;

/** A new session; `loginEmail` is the address it was logged in with, null when none was (sql/0082). */
export async function createSession(db: Queryable, idHash: string, accountId: number, ip: string | null, userAgent: string | null, loginEmail: string | null = null): Promise<void> {
  await db.query(
    `insert into sessions (id_hash, account_id, expires_at, ip, user_agent, login_email)
     values ($1, $2, now() + make_interval(days => $3), $4, left($5, 300), $6)`,
    [idHash, accountId, IDLE_DAYS, ip, userAgent, loginEmail],
  );
}

export async function sessionAccount(db: Queryable, idHash: string): Promise<SessionAccount | null> {
  const { rows } = await db.query<SessionAccount>(
    `select a.id as account_id, a.email, a.is_site_admin, v.emails,
            exists (select 1 from list_roles r where r.email = any(v.emails)) as has_list_role,
            s.last_seen_at < now() - interval '5 minutes' as stale,
            s.created_at > now() - make_interval(mins => $2) as recent_login, s.login_email
       from sessions s join accounts a on a.id = s.account_id
            cross join lateral (select array(select aa.email from account_addresses aa
                                              where aa.account_id = a.id and aa.verified_at is not null
                                              order by aa.email <> a.email, aa.email) as emails) v
      where s.id_hash = $1 and s.expires_at > now()`,
    [idHash, RECENT_LOGIN_MINUTES],
  );
  return rows[0] ?? null;
}

/** Slides the idle expiry forward, capped by the absolute lifetime. */
export async function touchSession(db: Queryable, idHash: string): Promise<void> {
  await db.query(
    `update sessions set last_seen_at = now(),
            expires_at = least(created_at + make_interval(days => $3), now() + make_interval(days => $2))
      where id_hash = $1`,
    [idHash, IDLE_DAYS, ABSOLUTE_DAYS],
  );
}

export async function deleteSession(db: Queryable, idHash: string): Promise<void> {
  await db.query('delete from sessions where id_hash = $1', [idHash]);
}

/** Logs an account out everywhere (after a password change or reset), except the session kept. */
export async function deleteAccountSessions(db: Queryable, accountId: number, keepIdHash: string | null = null): Promise<void> {
  await db.query('delete from sessions where account_id = $1 and id_hash is distinct from $2', [accountId, keepIdHash]);
}

/**
 * Ends the account's sessions that were logged in with `email` (an address it no longer has),
 * except the session kept; how many it ended.
 */
export async function deleteSessionsLoggedInWith(db: Queryable, accountId: number, email: string, keepIdHash: string | null): Promise<number> {
  const { rowCount } = await db.query(
    'delete from sessions where account_id = $1 and login_email = $2 and id_hash is distinct from $3',
    [accountId, email, keepIdHash],
  );
  return rowCount ?? 0;
}

export async function pruneSessions(db: Queryable): Promise<number> {
  const { rowCount } = await db.query('delete from sessions where expires_at < now()');
  return rowCount ?? 0;
}
