/*
 * Sessions stored in PostgreSQL (so any web instance serves any visitor). The cookie carries a
 * random id; the table holds its SHA-256 only. Cookies are HttpOnly, SameSite=Lax, and Secure when
 * PUBLIC_URL is https. Also carries one-shot "flash" notices across a redirect.
 */

import type { Request, RequestHandler, Response } from 'express';
import { hashToken as hashSecret, looksLikeToken, newToken } from '../auth/credentials.ts';
import { isReadOnlyDatabase } from '../db/pg-errors.ts';
import { createSession, deleteSession, pruneSessions, sessionAccount, touchSession } from '../db/sessions.ts';
import { log } from '../log.ts';
import type { WebContext } from './context.ts';
import { cookieName, cookieOptions, cookies, secureCookies } from './cookies.ts';

// Both named with cookieName(): __Host-lk_session over https.
const SESSION_COOKIE = 'lk_session';
const FLASH_COOKIE = 'lk_flash';
const MAX_AGE_MS = 90 * 24 * 3600 * 1000;

export function sessionMiddleware(ctx: WebContext): RequestHandler {
  const secure = secureCookies(ctx.cfg.publicUrl);
  const sessionCookie = cookieName(SESSION_COOKIE, secure);
  const flashCookie = cookieName(FLASH_COOKIE, secure);
  return async (req, res, next) => {
    req.viewer = null;
    res.locals.viewerIsModerator = false;
    // Read by csrf.ts too, so that every cookie we set follows the same rule.
    res.locals.secureCookies = secure;
    const jar = cookies(req);
    const flash = jar[flashCookie];
    if (flash) {
      const [kind, ...text] = flash.split(':');
      res.locals.flash = { kind: kind === 'error' ? 'error' : 'flash', text: text.join(':').slice(0, 500) };
      res.clearCookie(flashCookie, cookieOptions(secure));
    }
    const id = jar[sessionCookie];
    if (!id) return next();
    try {
      const found = looksLikeToken(id) ? await sessionAccount(ctx.db.pool, hashSecret(id)) : null;
      if (!found) {
        res.clearCookie(sessionCookie, cookieOptions(secure));
        return next();
      }
      req.viewer = { accountId: found.account_id, email: found.email, emails: found.emails, isSiteAdmin: found.is_site_admin };
      res.locals.sessionId = id;
      res.locals.recentLogin = found.recent_login;
      res.locals.loginEmail = found.login_email;
      res.locals.viewerIsModerator = found.has_list_role;
      if (found.stale) await touchSession(ctx.db.pool, hashSecret(id)).catch((err) => keepReadingWithout(err));
      next();
    } catch (err) {
      next(err);
    }
  };
}

/**
 * A session's touch (its sliding expiry) is a write: a database that takes none (a standby, or
 * default_transaction_read_only) must not keep its logged-in readers from reading. The session
 * stays stale, and is touched on a later page.
 */
function keepReadingWithout(err: unknown): void {
  if (!isReadOnlyDatabase(err)) throw err;
  log.debug({ error: (err as Error).message }, 'session not touched: the database takes no writes');
}

/**
 * Logs the browser in as an account: a fresh id (never reuse one from before the login).
 * `loginEmail`: the address it logged in with (its sessions end when that address is removed).
 */
export async function startSession(ctx: WebContext, req: Request, res: Response, accountId: number, loginEmail: string | null): Promise<string> {
  await endSession(ctx, req, res);
  // Logins are rare enough to carry the clean-up of expired sessions (an indexed delete).
  await pruneSessions(ctx.db.pool);
  const id = newToken();
  await createSession(ctx.db.pool, hashSecret(id), accountId, req.ip ?? null, req.get('user-agent') ?? null, loginEmail);
  const secure = secureCookies(ctx.cfg.publicUrl);
  res.cookie(cookieName(SESSION_COOKIE, secure), id, { ...cookieOptions(secure), maxAge: MAX_AGE_MS });
  return hashSecret(id);
}

export async function endSession(ctx: WebContext, req: Request, res: Response): Promise<void> {
  const secure = secureCookies(ctx.cfg.publicUrl);
  const id = cookies(req)[cookieName(SESSION_COOKIE, secure)];
  if (id && looksLikeToken(id)) await deleteSession(ctx.db.pool, hashSecret(id));
  if (id) res.clearCookie(cookieName(SESSION_COOKIE, secure), cookieOptions(secure));
}

/** The id of the session this request was found logged in with (null when anonymous): csrf.ts derives its token from it. */
export function sessionIdOf(req: Request): string | null {
  return req.viewer && typeof req.res?.locals.sessionId === 'string' ? req.res.locals.sessionId : null;
}

/**
 * Whether this request's session was opened by a login less than RECENT_LOGIN_MINUTES ago: what
 * changing the account's addresses or password asks for (auth/guards.ts requireRecentLogin).
 */
export function loggedInRecently(req: Request): boolean {
  return sessionIdOf(req) !== null && req.res?.locals.recentLogin === true;
}

/** The hash of the current session id, to keep this session when logging out the others. */
export function currentSessionHash(req: Request): string | null {
  const id = sessionIdOf(req);
  return id && looksLikeToken(id) ? hashSecret(id) : null;
}

/** A notice shown once on the next page (after a redirect). */
export function flash(ctx: WebContext, res: Response, text: string, kind: 'flash' | 'error' = 'flash'): void {
  const secure = secureCookies(ctx.cfg.publicUrl);
  res.cookie(cookieName(FLASH_COOKIE, secure), `${kind}:${text.slice(0, 500)}`, cookieOptions(secure));
}
