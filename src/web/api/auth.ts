/*
 * Who calls the REST API: a token sent as `Authorization: Bearer TOKEN`, nothing else. Cookies are
 * never read under /api (the session and CSRF middleware do not run there: web/app.ts mounts the
 * API before them), so a browser that is logged in to the panel cannot be made to call the API
 * by another site, and CSRF does not apply.
 *
 * Limits, in PostgreSQL so that every web process shares them (db/rate-limits.ts): a token makes
 * at most API_RATE_LIMIT requests a minute (429 with Retry-After past that); an address that sent
 * AUTH_FAILURES.perIp wrong tokens in a quarter of an hour gets 429 for every request until the
 * window ends, before any token is looked up. A missing header is not counted as a failure.
 */

import type { Request, RequestHandler, Response } from 'express';
import { scopeAllows, tokenActor, tokenFor } from '../../core/api-tokens.ts';
import { touchApiToken, type ApiScope, type ApiTokenRow } from '../../db/api-tokens.ts';
import { isReadOnlyDatabase } from '../../db/pg-errors.ts';
import { allowHit, clientKey, currentHits } from '../../db/rate-limits.ts';
import { log } from '../../log.ts';
import type { WebContext } from '../context.ts';
import { ApiRefusal } from './errors.ts';

const AUTH_FAILURES = { perIp: 30, windowSeconds: 15 * 60 };
const CHALLENGE = 'Bearer realm="listkeeper"';

export function bearerAuth(ctx: WebContext): RequestHandler {
  const db = ctx.db.pool;
  return async (req, res, next) => {
    const failKey = `api-auth-fail:ip:${clientKey(req.ip)}`;
    const [failures] = await currentHits(db, [failKey], AUTH_FAILURES.windowSeconds);
    if (failures >= AUTH_FAILURES.perIp) {
      throw new ApiRefusal(429, 'rate_limited', 'Too many requests with a wrong token from this address: try again in a quarter of an hour.', { 'Retry-After': String(AUTH_FAILURES.windowSeconds) });
    }
    const bearer = /^Bearer +(\S+) *$/i.exec(req.get('authorization') ?? '');
    if (!bearer) throw new ApiRefusal(401, 'unauthorized', 'This API needs a token: send "Authorization: Bearer TOKEN" (docs/api.md).', { 'WWW-Authenticate': CHALLENGE });
    const token = await tokenFor(db, bearer[1]);
    if (!token) {
      await allowHit(db, failKey, AUTH_FAILURES.perIp, AUTH_FAILURES.windowSeconds);
      log.warn({ ip: req.ip, url: req.originalUrl.slice(0, 300) }, 'api request with an unknown, revoked or lapsed token, or one whose maker is no longer a site administrator');
      throw new ApiRefusal(401, 'invalid_token', 'This token is not valid: it is mistyped, revoked or past its days, or the site administrator who made it no longer is one.', { 'WWW-Authenticate': `${CHALLENGE}, error="invalid_token"` });
    }
    if (!(await unlessReadOnly(allowHit(db, `api:token:${token.id}`, ctx.cfg.web.apiRateLimit, 60), true))) {
      throw new ApiRefusal(429, 'rate_limited', `This token made more than ${ctx.cfg.web.apiRateLimit} requests in a minute (API_RATE_LIMIT): slow down.`, { 'Retry-After': '60' });
    }
    await unlessReadOnly(touchApiToken(db, token.id), undefined);
    res.locals.apiToken = token;
    next();
  };
}

/**
 * A database that takes no writes (a failover under way, maintenance) can neither count a request
 * against its token's limit nor note the token's use: the request goes on with `meanwhile`, so that
 * the API's reads keep working as the pages do; a write is refused by the database itself (503).
 */
async function unlessReadOnly<T>(work: Promise<T>, meanwhile: T): Promise<T> {
  return work.catch((err: unknown) => {
    if (isReadOnlyDatabase(err)) return meanwhile;
    throw err;
  });
}

/** Refuses (403) a token whose scope does not include `scope`. */
export function need(scope: ApiScope): RequestHandler {
  return (_req, res, next) => {
    const token = tokenOf(res);
    if (!scopeAllows(token.scope, scope)) throw new ApiRefusal(403, 'insufficient_scope', `This needs a token with the ${scope} scope; this one has ${token.scope}.`);
    next();
  };
}

export function tokenOf(res: Response): ApiTokenRow {
  return res.locals.apiToken as ApiTokenRow;
}

/** The token, as the audit log and decided_by name it. */
export function apiActor(_req: Request, res: Response): string {
  return tokenActor(tokenOf(res));
}
