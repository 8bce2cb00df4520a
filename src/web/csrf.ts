/*
 * CSRF protection for every form. A logged-in visitor's token is derived from their session id
 * (which lives in an HttpOnly cookie and is stored only hashed): a cookie planted from another
 * host (a sibling subdomain can set cookies for the parent domain) cannot produce it, and it ends
 * with the session. An anonymous visitor (login, subscribe) gets a double-submit token: a random
 * value in a SameSite=Strict cookie, `__Host-lk_csrf` over https (cookies.ts: only this host can
 * set it). The token comes back in the form's `_csrf` field (or the X-CSRF-Token header).
 * Stateless either way, so any number of web instances accept each other's forms. Forms get the
 * token via csrfToken().
 */

import crypto from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { cookieName, cookieOptions, cookies } from './cookies.ts';
import { sessionIdOf } from './session.ts';

/** `__Host-lk_csrf` over https (cookies.ts, cookieName) */
const COOKIE = 'lk_csrf';
const ANONYMOUS_TOKEN = /^[A-Za-z0-9_-]{32,64}$/;

/** The token of a logged-in session: a hash of its id, under a label of its own (the sessions table holds another hash of it). */
export function sessionCsrfToken(sessionId: string): string {
  return crypto.createHash('sha256').update(`listkeeper csrf\0${sessionId}`).digest('base64url');
}

function secureRequest(req: Request, res: Response): boolean {
  return req.secure || res.locals.secureCookies === true;
}

export function csrfToken(req: Request, res: Response): string {
  const session = sessionIdOf(req);
  if (session) return sessionCsrfToken(session);
  const secure = secureRequest(req, res);
  const name = cookieName(COOKIE, secure);
  let token = cookies(req)[name];
  if (!token || !ANONYMOUS_TOKEN.test(token)) {
    token = crypto.randomBytes(24).toString('base64url');
    cookies(req)[name] = token;
    // Secure like the session cookie (PUBLIC_URL is https, see session.ts), or when this very
    // request came over TLS.
    res.cookie(name, token, cookieOptions(secure, 'strict'));
    res.locals.csrfCookieSet = true; // the page differs from any the client has (conditional.ts)
  }
  return token;
}

/** Whether a state-changing request carries the token of this visitor (session or cookie). */
export function csrfValid(req: Request, res: Response): boolean {
  const session = sessionIdOf(req);
  const expected = session ? sessionCsrfToken(session) : cookies(req)[cookieName(COOKIE, secureRequest(req, res))];
  const given = (req.body && typeof req.body._csrf === 'string' ? req.body._csrf : undefined) ?? req.get('x-csrf-token');
  return Boolean(expected && given && sameBytes(expected, given));
}

/** Rejects state-changing requests whose token does not match (403). */
export function requireCsrf(req: Request, res: Response, next: NextFunction) {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
  if (csrfValid(req, res)) return next();
  res.status(403).type('text/plain').send('This form has expired or was not sent from this site (CSRF check failed). Go back, reload the page and try again.\n');
}

/** Compared as bytes: strings of one length may differ in bytes ("é"), and timingSafeEqual throws then. */
function sameBytes(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}
