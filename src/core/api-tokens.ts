/*
 * Tokens of the REST API (docs/api.md), made by site administrators in the panel or with
 * `listkeeper token create`. A token made in the panel is its maker's: it works only while that
 * account exists and is a site administrator, so taking the rights away (or the account) takes its
 * tokens too. One made on the command line is the operator's, who has the server. Either may be
 * made to lapse after some days. A token is `lkt_` and 43 base64url characters: 256 random bits, shown
 * once. Only its SHA-256 is stored: a secret of 256 random bits cannot be guessed or brute-forced
 * from its hash, so the slow hashes passwords need (argon2) would only make every API call slower.
 * The `lkt_` prefix lets secret scanners and people recognise a leaked token.
 * Creating and revoking are audited in their transaction.
 */

import type pg from 'pg';
import { hashToken, newToken } from '../auth/credentials.ts';
import { recordAudit } from '../db/audit.ts';
import { activeApiToken, API_SCOPES, apiTokenById, insertApiToken, revokeApiToken as markRevoked, type ApiScope, type ApiTokenRow } from '../db/api-tokens.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { InvalidInput, NotFound } from '../errors.ts';

const PREFIX = 'lkt_';
const SHAPE = /^lkt_[A-Za-z0-9_-]{43}$/;

/** Whether `have` allows what `need` asks: read ⊂ moderate ⊂ admin. */
export function scopeAllows(have: ApiScope, need: ApiScope): boolean {
  return API_SCOPES.indexOf(have) >= API_SCOPES.indexOf(need);
}

/** Who acted, in the audit log and decided_by: the token's name and id. */
export function tokenActor(t: Pick<ApiTokenRow, 'id' | 'name'>): string {
  return `api:${t.name}#${t.id}`;
}

export function parseScope(value: string): ApiScope {
  if (!(API_SCOPES as readonly string[]).includes(value)) throw new InvalidInput(`scope must be one of ${API_SCOPES.join(', ')} (got "${value}")`, 'invalid_scope');
  return value as ApiScope;
}

/** A name to tell tokens apart: letters, digits and . _ - @ and spaces, up to 80. */
export function parseTokenName(value: string | undefined): string {
  const name = (value ?? '').trim() || 'api';
  if (!/^[\w.@ -]{1,80}$/.test(name)) throw new InvalidInput('a token name is 1 to 80 letters, digits, spaces and . _ - @', 'invalid_name');
  return name;
}

/**
 * Makes a token; the secret is in the answer only, never stored. `account`: the site
 * administrator's account that makes it in the panel (the token works while it is one); null or
 * absent: the operator's, on the command line. `days`: it lapses after that many (counted by the
 * database's clock, which judges it: docs/architecture.md, "One clock").
 */
export async function createApiToken(pool: pg.Pool, opts: { scope: ApiScope; name?: string; actor: string; account?: number | null; days?: number | null }): Promise<{ token: string; row: ApiTokenRow }> {
  const name = parseTokenName(opts.name);
  const token = `${PREFIX}${newToken()}`;
  return withTransaction(pool, async (tx) => {
    const row = await insertApiToken(tx, { name, scope: opts.scope, tokenHash: hashToken(token), createdBy: opts.actor, createdByAccount: opts.account ?? null, days: opts.days ?? null });
    await recordAudit(tx, { actor: opts.actor, action: 'token.create', target: tokenActor(row), detail: { scope: row.scope, ...(row.expires_at ? { expires: row.expires_at.toISOString() } : {}) } });
    return { token, row };
  });
}

/** Revokes a token at once: its next request is refused (401). */
export async function revokeApiToken(pool: pg.Pool, id: number, opts: { actor: string }): Promise<ApiTokenRow> {
  return withTransaction(pool, async (tx) => {
    const row = await markRevoked(tx, id, opts.actor);
    if (!row) {
      const existing = await apiTokenById(tx, id);
      throw new NotFound(existing ? `token ${id} was already revoked` : `no token ${id}`, 'no_such_token');
    }
    await recordAudit(tx, { actor: opts.actor, action: 'token.revoke', target: tokenActor(row), detail: { scope: row.scope } });
    return row;
  });
}

/** The token a secret belongs to if it works now (activeApiToken), or null; a value not shaped like a token is not looked up. */
export async function tokenFor(db: Queryable, secret: string): Promise<ApiTokenRow | null> {
  if (!SHAPE.test(secret)) return null;
  return activeApiToken(db, hashToken(secret));
}
