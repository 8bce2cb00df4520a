/*
 * Logging in and out: password (argon2), or a one-time link by mail; password reset by mail.
 * No answer tells whether an account exists: wrong address and wrong password read the same and
 * cost the same argon2 work, and "a link is on its way" is said for any address; the link itself
 * is made and mailed after the answer is sent, so known and unknown addresses take the same time.
 *
 * Password attempts are limited in PostgreSQL (login-limits.ts) so that guessing is slow, but a
 * stranger's failures never lock the owner out.
 *
 * PASSWORD_LOGIN=off takes away the password form and resets; MAGIC_LINK_LOGIN=off the mailed
 * links (their routes answer 404). Single sign-on (OpenID Connect, LDAP) is in sso-routes.ts.
 *
 * Any verified address of an account logs into it (password or link); an address added to an
 * account but not verified yet is no way into that account (findAccountByEmail, upsertAccount).
 */

import { Router, type NextFunction, type Request, type Response } from 'express';
import { savePassword } from '../../core/account-password.ts';
import {
  consumeLoginToken, findAccountByEmail, issueLoginToken, knownAddress, peekLoginToken, upsertAccount, voidLoginTokens,
} from '../../db/accounts.ts';
import { hashPassword, hashToken, looksLikeToken, passwordProblem } from '../../auth/credentials.ts';
import { isSiteListAddress } from '../../db/lists.ts';
import { allowHit, clearHits, clientKey } from '../../db/rate-limits.ts';
import { normalizeEmail } from '../../mail/address.ts';
import { absoluteUrl, loginLinkUrl, passwordResetUrl } from '../../mail/urls.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { endSession, flash } from '../session.ts';
import { field, query } from '../admin/form.ts';
import { safeNext } from './guards.ts';
import { sendNotice } from '../../core/notices.ts';
import { afterResponse } from '../after-response.ts';
import { checkAccountPassword } from './login-limits.ts';
import { loginPageVars, loginSession, landingAfterLogin } from './login-page.ts';

const LINK_LIMIT = { perIp: 20, perEmail: 3, windowSeconds: 60 * 60 };
const LINK_TTL = 60 * 60;
const RESET_TTL = 60 * 60;

export function authRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const page = (req: Request, res: Response, template: string, vars: Record<string, unknown> = {}, status = 200) =>
    render(ctx.views, req, res, `auth/${template}`, template === 'login.njk' ? { ...loginPageVars(ctx.cfg), ...vars } : vars, status);
  const { password: passwordLogin, magicLink } = ctx.cfg.login;
  const defaultNext = (req: Request) => safeNext(req.body?.next ?? query(req, 'next'), '');

  r.get('/login', (req, res) => {
    if (req.viewer) return res.redirect(303, safeNext(query(req, 'next'), req.viewer.isSiteAdmin || res.locals.viewerIsModerator ? '/admin/' : '/account'));
    page(req, res, 'login.njk', { title: 'Log in', next: defaultNext(req), email: query(req, 'email', 254) });
  });

  if (passwordLogin) {
    r.post('/login', requireCsrf, async (req, res) => {
      const email = normalizeEmail(field(req, 'email', 254)) ?? field(req, 'email', 254).toLowerCase();
      const password = field(req, 'password', 1000);
      const next = defaultNext(req);
      const account = email ? await findAccountByEmail(db, email) : null;
      // An unknown address is checked as an account without a password: the same limits, the same time.
      const check = await checkAccountPassword(db, req.ip, { email, password_hash: account?.password_hash ?? null }, password);
      if (check === 'limited') {
        return page(req, res, 'login.njk', { title: 'Log in', next, email, error: 'Too many login attempts. Wait a quarter of an hour, or ask for a login link by mail.' }, 429);
      }
      if (!account || check !== 'right') {
        return page(req, res, 'login.njk', { title: 'Log in', next, email, error: 'That address and password do not match an account.' }, 401);
      }
      await loginAs(req, res, account.id, email);
      res.redirect(303, next || (await landingAfterLogin(db, account)));
    });
  }

  const loginAs = (req: Request, res: Response, accountId: number, email: string) => loginSession(ctx, req, res, accountId, email);

  /** Sends a link by mail when the address is known and not over its limit; says the same either way. */
  async function mailLink(req: Request, res: Response, purpose: 'login' | 'reset') {
    const email = normalizeEmail(field(req, 'email', 254));
    const next = defaultNext(req);
    const title = 'Check your mail';
    if (!email) {
      return page(req, res, purpose === 'login' ? 'login.njk' : 'reset-request.njk', { title: 'Log in', next, error: 'Enter your e-mail address.' }, 400);
    }
    if (!(await allowHit(db, `maillink:ip:${clientKey(req.ip)}`, LINK_LIMIT.perIp, LINK_LIMIT.windowSeconds))) {
      return page(req, res, 'sent.njk', { title, email, limited: true }, 429);
    }
    // Over the per-address limit, nothing more is sent, and the page does not say so: otherwise
    // the form could be used to flood someone's mailbox.
    const underLimit = await allowHit(db, `maillink:${purpose}:${email}`, LINK_LIMIT.perEmail, LINK_LIMIT.windowSeconds);
    page(req, res, 'sent.njk', { title, email, purpose });
    // Up to here known and unknown addresses took the same path; whether the address is known,
    // and the token and mail if it is, come after the answer has gone.
    if (underLimit) afterResponse(res, `${purpose} link`, () => mailLinkIfKnown(email, purpose, next));
  }

  async function mailLinkIfKnown(email: string, purpose: 'login' | 'reset', next: string) {
    const known = purpose === 'login' ? await knownAddress(db, email) : (await findAccountByEmail(db, email)) !== null;
    // Not in the stranger-mail budget (core/stranger-mail.ts): these go only to addresses the site
    // knows, each is a working way in for their owner, and their own limit (LINK_LIMIT, an hour)
    // keeps one in the mailbox; a stranger who spent a day's budget would lock the owner out.
    // A list's own address (one subscribed to another list, say) is no one's mailbox: the link
    // would wait in that list's moderation queue, and be published if approved.
    if (!known || (await isSiteListAddress(db, email))) return;
    const token = await issueLoginToken(db, email, purpose, purpose === 'login' ? LINK_TTL : RESET_TTL);
    const link = absoluteUrl(ctx.cfg.publicUrl, purpose === 'login' ? loginLinkUrl(token, next) : passwordResetUrl(token, next));
    await sendNotice(db, {
      site: ctx.cfg,
      to: email,
      subject: purpose === 'login' ? 'Your login link' : 'Choose a new password',
      text: purpose === 'login'
        ? `Someone (probably you) asked to log in to ${ctx.cfg.publicUrl} as ${email}.\n\nOpen this link within an hour to log in:\n\n  ${link}\n\nIt works once. If you did not ask for it, ignore this message.\n`
        : `Someone (probably you) asked to reset the password of ${email} on ${ctx.cfg.publicUrl}.\n\nOpen this link within an hour to choose a new password:\n\n  ${link}\n\nIt works once. If you did not ask for it, ignore this message: your password stays as it is.\n`,
    });
  }

  if (magicLink) r.post('/login/link', requireCsrf, (req, res) => mailLink(req, res, 'login'));

  // Opening the link shows a button; only the POST logs in, so mail scanners that fetch links
  // do not use up the token.
  if (magicLink) r.get('/login/link/:token', async (req, res) => {
    const token = String(req.params.token);
    const found = looksLikeToken(token) ? await peekLoginToken(db, hashToken(token), 'login') : null;
    if (!found) return page(req, res, 'expired.njk', { title: 'Link expired' }, 410);
    page(req, res, 'link.njk', { title: 'Log in', email: found.email, token, next: safeNext(query(req, 'next'), '') });
  });

  if (magicLink) r.post('/login/link/:token', requireCsrf, async (req, res) => {
    const token = String(req.params.token);
    const found = looksLikeToken(token) ? await consumeLoginToken(db, hashToken(token), 'login') : null;
    if (!found) return page(req, res, 'expired.njk', { title: 'Link expired' }, 410);
    const { account } = await upsertAccount(db, found.email);
    await loginAs(req, res, account.id, found.email);
    res.redirect(303, defaultNext(req) || (await landingAfterLogin(db, account)));
  });

  if (passwordLogin) r.get('/login/reset', (req, res) => page(req, res, 'reset-request.njk', { title: 'Reset your password', email: query(req, 'email', 254) }));
  if (passwordLogin) r.post('/login/reset', requireCsrf, (req, res) => mailLink(req, res, 'reset'));

  if (passwordLogin) r.get('/login/reset/:token', async (req, res) => {
    const token = String(req.params.token);
    const found = looksLikeToken(token) ? await peekLoginToken(db, hashToken(token), 'reset') : null;
    if (!found) return page(req, res, 'expired.njk', { title: 'Link expired' }, 410);
    page(req, res, 'reset.njk', { title: 'Choose a new password', email: found.email, token });
  });

  if (passwordLogin) r.post('/login/reset/:token', requireCsrf, async (req, res) => {
    const token = String(req.params.token);
    const password = field(req, 'password', 1000);
    const valid = looksLikeToken(token) ? await peekLoginToken(db, hashToken(token), 'reset') : null;
    if (!valid) return page(req, res, 'expired.njk', { title: 'Link expired' }, 410);
    const problem = passwordProblem(password) ?? (password !== field(req, 'confirm', 1000) ? 'The two passwords differ.' : null);
    if (problem) return page(req, res, 'reset.njk', { title: 'Choose a new password', email: valid.email, token, error: problem }, 400);
    const used = await consumeLoginToken(db, hashToken(token), 'reset');
    const account = used ? await findAccountByEmail(db, used.email) : null;
    if (!used || !account) return page(req, res, 'expired.njk', { title: 'Link expired' }, 410);
    // Over the hash read here: of two reset links used at once, the second is told, not saved.
    await savePassword(db, { accountId: account.id, email: account.email }, await hashPassword(password), { change: 'reset', keepSession: null, replacing: account.password_hash, settings: ctx.cfg });
    await voidLoginTokens(db, used.email, 'reset');
    // The address's owner proved it: failures from anywhere no longer count against it.
    await clearHits(db, `login:fail:${used.email}`);
    await loginAs(req, res, account.id, used.email);
    flash(ctx, res, 'Your password has been changed; other sessions were logged out.');
    res.redirect(303, '/account');
  });

  // Checked only for a live session: the form's token is the session's (csrf.ts), so a page left
  // open after its session ended (logged out in another tab or elsewhere, expired) would get a 403
  // for a logout that has nothing left to do. Without a session it only clears the cookie.
  const logoutCsrf = (req: Request, res: Response, next: NextFunction) => (req.viewer ? requireCsrf(req, res, next) : next());
  r.post('/logout', logoutCsrf, async (req, res) => {
    await endSession(ctx, req, res);
    res.redirect(303, '/');
  });

  return r;
}
