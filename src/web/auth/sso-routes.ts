/*
 * Single sign-on (docs/single-sign-on.md), off until configured:
 *
 *   GET  /login/oidc             redirect to the OpenID provider (OIDC_ISSUER)
 *   GET  /login/oidc/callback    the provider's answer: state, code, then the ID token's nonce
 *   POST /login/ldap             user name and password, checked by a bind to LDAP_URL
 *
 * Both end as every login does (login-page.ts): a fresh session of the account of the verified
 * address (core/sso-accounts.ts). The OpenID login is started by a link, not a form: the page's
 * CSP allows forms to post to this site only, and browsers apply form-action to the redirect too.
 * Between the redirect and the callback the browser keeps the login's state, nonce and PKCE
 * verifier in a cookie of its own (HttpOnly, SameSite=Lax so that it comes back with the
 * provider's top-level redirect, for ten minutes, only sent to /login/oidc).
 *
 * A refused callback or directory login is answered on the login page with a 4xx (503 when the
 * provider or directory does not answer) and a warning in the log; none of it starts a session.
 * LDAP attempts count against the same limits as passwords (login-limits.ts), per user name.
 */

import { Router, type Request, type Response } from 'express';
import { LdapLogin, ldapLoginName } from '../../auth/ldap.ts';
import { OidcLogin, type PendingLogin } from '../../auth/oidc.ts';
import { accountForSso, type SsoIdentity } from '../../core/sso-accounts.ts';
import { allowHit, clientKey } from '../../db/rate-limits.ts';
import { isAppError } from '../../errors.ts';
import { log } from '../../log.ts';
import { normalizeEmail } from '../../mail/address.ts';
import type { WebContext } from '../context.ts';
import { cookieName, cookieOptions, cookies, secureCookies } from '../cookies.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { field, query } from '../admin/form.ts';
import { safeNext } from './guards.ts';
import { LOGIN_LIMIT, LoginLimits } from './login-limits.ts';
import { landingAfterLogin, loginPageVars, loginSession } from './login-page.ts';

// __Host-lk_oidc over https (cookies.ts): a login started by someone else (their state and code)
// cannot be planted from a sibling host to log this browser into their account. The prefix
// needs path /, and the cookie lives ten minutes at most.
const PENDING_COOKIE = 'lk_oidc';
const PENDING_MAX_AGE_MS = 10 * 60 * 1000;

type Pending = PendingLogin & { next: string };

function readPending(req: Request, secure: boolean): Pending | null {
  const raw = cookies(req)[cookieName(PENDING_COOKIE, secure)];
  if (!raw || raw.length > 2000) return null;
  try {
    const v = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Record<string, unknown>;
    const ok = ['state', 'nonce', 'verifier', 'next'].every((k) => typeof v[k] === 'string');
    return ok ? { state: String(v.state), nonce: String(v.nonce), verifier: String(v.verifier), next: safeNext(v.next, '') } : null;
  } catch {
    return null;
  }
}

export function ssoRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const { oidc: oidcCfg, ldap: ldapCfg } = ctx.cfg.login;
  const oidc = oidcCfg ? new OidcLogin(oidcCfg) : null;
  const ldap = ldapCfg ? new LdapLogin(ldapCfg) : null;
  // Read at each request: tests (and `serve` on port 0) learn PUBLIC_URL after the app is built.
  const redirectUri = () => `${ctx.cfg.publicUrl}/login/oidc/callback`;
  const pendingOptions = () => cookieOptions(secureCookies(ctx.cfg.publicUrl));
  const pendingCookie = () => cookieName(PENDING_COOKIE, secureCookies(ctx.cfg.publicUrl));

  const loginPage = (req: Request, res: Response, status: number, error: string, vars: Record<string, unknown> = {}) =>
    render(ctx.views, req, res, 'auth/login.njk', { ...loginPageVars(ctx.cfg), title: 'Log in', next: '', ...vars, error }, status);

  /** An error of ours (a refusal, the provider not answering) shown on the login page and logged; anything else goes on. */
  function refused(req: Request, res: Response, method: string, err: unknown, vars: Record<string, unknown> = {}) {
    if (!isAppError(err)) throw err;
    const cause = err.cause instanceof Error ? err.cause.message : undefined;
    log.warn({ method, code: err.code, ip: req.ip, reason: err.message, cause }, 'single sign-on refused');
    return loginPage(req, res, err.status, err.message, vars);
  }

  async function logIn(req: Request, res: Response, identity: SsoIdentity, next: string) {
    const { account, created } = await accountForSso(db, identity);
    // The address the provider vouched for, as accountForSso found the account by it.
    await loginSession(ctx, req, res, account.id, normalizeEmail(identity.email));
    log.info({ method: identity.method, accountId: account.id, created, admin: identity.admin }, 'single sign-on');
    res.redirect(303, next || (await landingAfterLogin(db, account)));
  }

  if (oidc) {
    r.get('/login/oidc', async (req, res) => {
      const next = safeNext(query(req, 'next'), '');
      try {
        const { url, pending } = await oidc.start(redirectUri());
        const value = Buffer.from(JSON.stringify({ ...pending, next })).toString('base64url');
        res.cookie(pendingCookie(), value, { ...pendingOptions(), maxAge: PENDING_MAX_AGE_MS });
        res.redirect(303, url);
      } catch (err) {
        refused(req, res, 'oidc', err, { next });
      }
    });

    r.get('/login/oidc/callback', async (req, res) => {
      // Each callback may cost a request to the provider: strangers get the login form's per-IP limit.
      if (!(await allowHit(db, `login:ip:${clientKey(req.ip)}`, LOGIN_LIMIT.perIp, LOGIN_LIMIT.windowSeconds))) {
        return loginPage(req, res, 429, 'Too many login attempts. Wait a quarter of an hour.');
      }
      const pending = readPending(req, secureCookies(ctx.cfg.publicUrl));
      res.clearCookie(pendingCookie(), pendingOptions());
      if (!pending) {
        log.warn({ method: 'oidc', code: 'oidc_no_pending', ip: req.ip }, 'single sign-on refused');
        return loginPage(req, res, 400, 'This login was not started in this browser, or took longer than ten minutes. Start again.');
      }
      const params = new URLSearchParams(req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '');
      let identity: SsoIdentity;
      try {
        const found = await oidc.finish(params, pending, redirectUri());
        identity = { method: 'oidc', subject: `${oidc.issuer} ${found.subject}`, email: found.email, admin: found.admin };
      } catch (err) {
        return refused(req, res, 'oidc', err, { next: pending.next });
      }
      try {
        await logIn(req, res, identity, pending.next);
      } catch (err) {
        refused(req, res, 'oidc', err, { next: pending.next });
      }
    });
  }

  if (ldap) {
    r.post('/login/ldap', requireCsrf, async (req, res) => {
      const user = field(req, 'user', 256);
      // Not trimmed: a directory password is whatever the directory holds.
      const body = req.body as Record<string, unknown> | undefined;
      const password = typeof body?.password === 'string' ? body.password.slice(0, 1000) : '';
      const next = safeNext(field(req, 'next', 1000), '');
      const vars = { next, user };
      // Counted under the name the directory will match, not as typed (other spellings reach the same entry).
      const limits = new LoginLimits(db, req.ip, `ldap:${ldapLoginName(user)}`);
      if (!(await limits.allowed())) {
        return loginPage(req, res, 429, 'Too many login attempts. Wait a quarter of an hour.', vars);
      }
      let found;
      try {
        found = await ldap.authenticate(user, password);
      } catch (err) {
        return refused(req, res, 'ldap', err, vars);
      }
      if (!found) {
        await limits.failed();
        log.warn({ method: 'ldap', code: 'ldap_credentials', ip: req.ip }, 'single sign-on refused');
        return loginPage(req, res, 401, 'That user name and password do not match a directory account.', vars);
      }
      await limits.succeeded();
      try {
        await logIn(req, res, { method: 'ldap', subject: found.dn, email: found.email, admin: found.admin }, next);
      } catch (err) {
        refused(req, res, 'ldap', err, vars);
      }
    });
  }

  return r;
}
