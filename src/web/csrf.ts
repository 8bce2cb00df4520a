/*
 * CSRF protection for every form: a double-submit token. A random value lives in a SameSite=Strict
 * cookie and must come back in the form's `_csrf` field (or the X-CSRF-Token header). Stateless, so
 * any number of web instances accept each other's forms. Forms get the token via csrfToken().
 */

import crypto from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { cookieOptions, cookies } from './cookies.ts';

const COOKIE = 'lk_csrf';

export function csrfToken(req: Request, res: Response): string {
  let token = cookies(req)[COOKIE];
  if (!token || !/^[A-Za-z0-9_-]{32,64}$/.test(token)) {
    token = crypto.randomBytes(24).toString('base64url');
    cookies(req)[COOKIE] = token;
    // Secure like the session cookie (PUBLIC_URL is https, see session.ts), or when this very
    // request came over TLS.
    res.cookie(COOKIE, token, cookieOptions(req.secure || res.locals.secureCookies === true, 'strict'));
  }
  return token;
}

/** Rejects state-changing requests whose token does not match (403). */
export function requireCsrf(req: Request, res: Response, next: NextFunction) {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
  const expected = cookies(req)[COOKIE];
  const given = (req.body && typeof req.body._csrf === 'string' ? req.body._csrf : undefined) ?? req.get('x-csrf-token');
  if (expected && given && sameBytes(expected, given)) return next();
  res.status(403).type('text/plain').send('This form has expired or was not sent from this site (CSRF check failed). Go back, reload the page and try again.\n');
}

/** Compared as bytes: strings of one length may differ in bytes ("é"), and timingSafeEqual throws then. */
function sameBytes(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}
