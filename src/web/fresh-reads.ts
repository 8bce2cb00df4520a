/*
 * Read-your-writes with a read replica (DATABASE_READ_URL). A replica replays the primary's
 * changes a moment behind, so a browser that has just changed something (a reply from the web,
 * a setting, a moderation: any POST) could load the next page from the replica and find its change
 * missing. For FRESH_MS after a POST, that browser's requests read from the primary
 * (db/read-pool.ts), told by a short-lived cookie. Without a replica this does nothing.
 */

import type { RequestHandler } from 'express';
import { readFromPrimary } from '../db/read-pool.ts';
import type { WebContext } from './context.ts';
import { cookieName, cookieOptions, cookies, secureCookies } from './cookies.ts';

const COOKIE = 'lk_fresh';
/** longer than a replica on the same network lags, short enough to leave the primary alone */
export const FRESH_MS = 10_000;

export function freshReads(ctx: WebContext): RequestHandler {
  if (!ctx.cfg.databaseReadUrl) return (_req, _res, next) => next();
  const secure = secureCookies(ctx.cfg.publicUrl);
  const cookie = cookieName(COOKIE, secure);
  return (req, res, next) => {
    const now = Date.now();
    if (req.method === 'POST') {
      res.cookie(cookie, String(now + FRESH_MS), { ...cookieOptions(secure), maxAge: FRESH_MS });
      return readFromPrimary(next);
    }
    // A value from the future is not believed past FRESH_MS: the cookie can ask for little.
    const until = Number(cookies(req)[cookie]);
    if (Number.isFinite(until) && until > now && until <= now + FRESH_MS) return readFromPrimary(next);
    next();
  };
}
