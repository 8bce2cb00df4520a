/*
 * Tokens of the REST API (sql/0053_api_tokens.sql): stored as the SHA-256 of the secret only. A
 * token made by an account works while that account is a site administrator; one made on the
 * command line is the operator's; either may lapse (sql/0083).
 */

import type { Queryable } from './pool.ts';

/** What a token may do; each includes the ones before it. */
export const API_SCOPES = ['read', 'moderate', 'admin'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export interface ApiTokenRow {
  id: number;
  name: string;
  scope: ApiScope;
  created_by: string;
  /** the account that made it (the panel): it works while that account is a site administrator; null: the command line's, the operator's */
  created_by_account: number | null;
  created_at: Date;
  /** when it stops working; null: never */
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
}

/** Whether a token works, and if not why: revoked, lapsed, or its maker is no (longer a) site administrator. */
export type ApiTokenState = 'live' | 'revoked' | 'expired' | 'maker_not_admin';

const COLUMNS = 'id, name, scope, created_by, created_by_account, created_at, expires_at, last_used_at, revoked_at, revoked_by';

/** The state of the token `t`, in SQL: the one place that says whether a token works. */
const STATE = `case when t.revoked_at is not null then 'revoked'
                    when t.expires_at <= now() then 'expired'
                    when t.created_by_account is not null
                     and not exists (select 1 from accounts a where a.id = t.created_by_account and a.is_site_admin) then 'maker_not_admin'
                    else 'live' end`;

/** A new token; `days`: it lapses that many days of 24 hours from now by the database's clock (null: never). */
export async function insertApiToken(db: Queryable, t: { name: string; scope: ApiScope; tokenHash: string; createdBy: string; createdByAccount: number | null; days: number | null }): Promise<ApiTokenRow> {
  const { rows } = await db.query<ApiTokenRow>(
    `insert into api_tokens (name, scope, token_hash, created_by, created_by_account, expires_at)
     values ($1, $2, $3, $4, $5, now() + make_interval(hours => 24 * $6::int)) returning ${COLUMNS}`,
    [t.name, t.scope, t.tokenHash, t.createdBy, t.createdByAccount, t.days],
  );
  return rows[0];
}

/** The token with this hash if it works now (live: not revoked, not lapsed, its maker a site administrator), or null. */
export async function activeApiToken(db: Queryable, tokenHash: string): Promise<ApiTokenRow | null> {
  const { rows } = await db.query<ApiTokenRow>(`select ${COLUMNS} from api_tokens t where t.token_hash = $1 and ${STATE} = 'live'`, [tokenHash]);
  return rows[0] ?? null;
}

/**
 * Records a use. At most one write a minute per token: a busy script would otherwise turn every
 * read into an UPDATE of the same row.
 */
export async function touchApiToken(db: Queryable, id: number): Promise<void> {
  await db.query(
    `update api_tokens set last_used_at = now() where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')`,
    [id],
  );
}

/** Every token, newest first, with its state: revoked ones included (they say when and by whom). */
export async function allApiTokens(db: Queryable): Promise<(ApiTokenRow & { state: ApiTokenState })[]> {
  const { rows } = await db.query<ApiTokenRow & { state: ApiTokenState }>(`select ${COLUMNS}, ${STATE} as state from api_tokens t order by id desc`);
  return rows;
}

export async function apiTokenById(db: Queryable, id: number): Promise<ApiTokenRow | null> {
  const { rows } = await db.query<ApiTokenRow>(`select ${COLUMNS} from api_tokens where id = $1`, [id]);
  return rows[0] ?? null;
}

/** Revokes a live token; null when there is no such token or it was already revoked. */
export async function revokeApiToken(db: Queryable, id: number, by: string): Promise<ApiTokenRow | null> {
  const { rows } = await db.query<ApiTokenRow>(
    `update api_tokens set revoked_at = now(), revoked_by = $2 where id = $1 and revoked_at is null returning ${COLUMNS}`,
    [id, by],
  );
  return rows[0] ?? null;
}

/** How many tokens made by this account (in the panel) work now (STATE: live). */
export async function liveTokensMadeBy(db: Queryable, accountId: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`select count(*)::int as n from api_tokens t where t.created_by_account = $1 and ${STATE} = 'live'`, [accountId]);
  return rows[0].n;
}
