/* Tokens of the REST API (sql/0053_api_tokens.sql): stored as the SHA-256 of the secret only. */

import type { Queryable } from './pool.ts';

/** What a token may do; each includes the ones before it. */
export const API_SCOPES = ['read', 'moderate', 'admin'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export interface ApiTokenRow {
  id: number;
  name: string;
  scope: ApiScope;
  created_by: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
}

const COLUMNS = 'id, name, scope, created_by, created_at, last_used_at, revoked_at, revoked_by';

export async function insertApiToken(db: Queryable, t: { name: string; scope: ApiScope; tokenHash: string; createdBy: string }): Promise<ApiTokenRow> {
  const { rows } = await db.query<ApiTokenRow>(
    `insert into api_tokens (name, scope, token_hash, created_by) values ($1, $2, $3, $4) returning ${COLUMNS}`,
    [t.name, t.scope, t.tokenHash, t.createdBy],
  );
  return rows[0];
}

/** The live (not revoked) token with this hash, or null. */
export async function activeApiToken(db: Queryable, tokenHash: string): Promise<ApiTokenRow | null> {
  const { rows } = await db.query<ApiTokenRow>(`select ${COLUMNS} from api_tokens where token_hash = $1 and revoked_at is null`, [tokenHash]);
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

/** Every token, newest first, revoked ones included (they say when and by whom). */
export async function allApiTokens(db: Queryable): Promise<ApiTokenRow[]> {
  const { rows } = await db.query<ApiTokenRow>(`select ${COLUMNS} from api_tokens order by id desc`);
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
