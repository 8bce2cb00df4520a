/*
 * Read-your-writes with a read replica (DATABASE_READ_URL). A replica replays the primary's
 * changes a moment behind, so a browser that has just changed something (a reply from the web,
 * a setting, a moderation: any POST) could load the next page from the replica and find its change
 * missing. For FRESH_MS after a POST, that browser's requests read from the primary
 * (db/read-pool.ts), told by a short-lived cookie. Without a replica this does nothing.
 *
 * The cookie holds a time that another web process, maybe on another machine, compares: so it is
 * the database's time (db/database-clock.ts, measured every CLOCK_CHECK_MS), not this machine's.
 * With a machine's own, a process 5 minutes ahead of the one that set the cookie found it expired,
 * and one behind found it too far in the future: the browser read the replica, its change missing.
 */

import type { RequestHandler } from 'express';
import { DatabaseClock } from '../db/database-clock.ts';
import { within } from '../deadline.ts';
import { readFromPrimary } from '../db/read-pool.ts';
import type { WebContext } from './context.ts';
import { cookieName, cookieOptions, cookies, secureCookies } from './cookies.ts';

const COOKIE = 'lk_fresh';
/** longer than a replica on the same network lags, short enough to leave the primary alone */
export const FRESH_MS = 10_000;

/** how often the skew to the database's clock is measured again (a clock drifts, or jumps) */
const CLOCK_CHECK_MS = 30_000;

export function freshReads(ctx: WebContext): RequestHandler {
  if (!ctx.cfg.databaseReadUrl) return (_req, _res, next) => next();
  const secure = secureCookies(ctx.cfg.publicUrl);
  const cookie = cookieName(COOKIE, secure);
  const clock = new DatabaseClock();
  let measured: Promise<unknown> | null = null;
  let measuredAt = -Infinity;
  return (req, res, next) => {
    if (performance.now() - measuredAt >= CLOCK_CHECK_MS) {
      measuredAt = performance.now();
      // The first request waits for it (a second at most); later ones use the last skew while it is
      // read again. A failure leaves the last skew (0 at first).
      const reading = within(clock.measure(ctx.db.pool), 1_000, "the database's clock").catch(() => undefined);
      measured ??= reading;
    }
    measured!.then(() => decide(req, res, next)).catch(next);
  };

  function decide(...[req, res, next]: Parameters<RequestHandler>) {
    const now = clock.now().getTime();
    if (req.method === 'POST') {
      res.cookie(cookie, String(now + FRESH_MS), { ...cookieOptions(secure), maxAge: FRESH_MS });
      return readFromPrimary(next);
    }
    // A value from the future is not believed past FRESH_MS: the cookie can ask for little.
    const until = Number(cookies(req)[cookie]);
    if (Number.isFinite(until) && until > now && until <= now + FRESH_MS) return readFromPrimary(next);
    next();
  }
}
