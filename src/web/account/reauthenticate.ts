/*
 * /account/reauthenticate: logging in again before a change that would let a stolen session keep
 * the account, or a list, for good (django-allauth's reauthentication, GitHub's sudo mode). Adding,
 * removing or making primary an address, setting a first password, adding or removing a list's
 * owners and moderators, and making an API token need a session opened by a login less than
 * RECENT_LOGIN_MINUTES ago (auth/guards.ts requireRecentLoginThen); changing a password asks for
 * the current one instead. An older session is sent here, the change is not made, and the fresh
 * login returns to the page it came from (`?next=`).
 *
 * Logging in again is the proof, whichever way the site offers: the account's password (checked
 * under the login's limits), a login link mailed to the account's primary address, or single
 * sign-on. Each ends this session and starts a fresh one, as any login does. A cookie alone
 * gives none of them: the thief of a session does not know the password and does not read the
 * primary address's mail, and cannot add an address of their own to log in by, for that needs a
 * recent login too.
 */

import { Router, type Request, type Response } from 'express';
import { findAccount, issueLoginToken } from '../../db/accounts.ts';
import { allowHit } from '../../db/rate-limits.ts';
import { RECENT_LOGIN_MINUTES } from '../../db/sessions.ts';
import { sendNotice } from '../../core/notices.ts';
import { NotFound } from '../../errors.ts';
import { absoluteUrl, loginLinkUrl, reauthenticateUrl } from '../../mail/urls.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash, loggedInRecently } from '../session.ts';
import { field } from '../admin/form.ts';
import { requireLogin, safeNext } from '../auth/guards.ts';
import { checkAccountPassword } from '../auth/login-limits.ts';
import { loginSession } from '../auth/login-page.ts';

/** As login links: an hour, and 3 an hour per address (the same counter as /login/link's). */
const LINK_TTL = 60 * 60;
const LINK_LIMIT = { perEmail: 3, windowSeconds: 60 * 60 };

export function reauthenticateRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const { password: passwordLogin, magicLink, oidc, ldap } = ctx.cfg.login;
  // Counted from the login, not from this answer: a session already inside the window has less left.
  const confirmed = `Thank you. For ${RECENT_LOGIN_MINUTES} minutes after your login you can make the changes that ask for a recent one.`;
  // Where the fresh login returns: the page whose change asked for it, or the account page.
  // Never this page itself: a fresh session would be sent round to it for good.
  const returnTo = (value: unknown) => {
    const then = safeNext(value, '/account');
    return then.startsWith(reauthenticateUrl()) ? '/account' : then;
  };
  // This page again, to come back to after a login elsewhere (a mailed link, single sign-on).
  const hereThen = (then: string) => reauthenticateUrl(then === '/account' ? null : then);

  async function page(req: Request, res: Response, then: string, vars: Record<string, unknown> = {}, status = 200) {
    const account = await findAccount(db, req.viewer!.accountId);
    if (!account) throw new NotFound('No such account.');
    render(ctx.views, req, res, 'account/reauthenticate.njk', {
      title: 'Log in again',
      minutes: RECENT_LOGIN_MINUTES,
      methods: { password: passwordLogin && !!account.password_hash, magicLink, oidc: oidc ? oidc.label : null, ldap: ldap ? ldap.label : null },
      then,
      next: hereThen(then),
      ...vars,
    }, status);
  }

  r.get('/account/reauthenticate', requireLogin, async (req, res) => {
    const then = returnTo(req.query.next);
    // Where a fresh login lands (the mailed link's and single sign-on's return path).
    if (loggedInRecently(req)) {
      flash(ctx, res, confirmed);
      return res.redirect(303, then);
    }
    await page(req, res, then);
  });

  if (passwordLogin) r.post('/account/reauthenticate', requireLogin, requireCsrf, async (req, res) => {
    const then = returnTo(field(req, 'next', 1000));
    const account = await findAccount(db, req.viewer!.accountId);
    if (!account?.password_hash) return page(req, res, then, { error: 'This account has no password: log in again another way.' }, 400);
    const check = await checkAccountPassword(db, req.ip, account, field(req, 'password', 1000));
    if (check !== 'right') {
      const error = check === 'limited' ? 'Too many attempts. Wait a quarter of an hour, or use a login link.' : 'That password is not right.';
      return page(req, res, then, { error }, check === 'limited' ? 429 : 401);
    }
    // The same person's session, renewed: it keeps the address it was logged in with, so that
    // removing that address still ends it (sql/0082).
    await loginSession(ctx, req, res, account.id, (res.locals.loginEmail as string | null | undefined) ?? null);
    flash(ctx, res, confirmed);
    res.redirect(303, then);
  });

  // To the primary address only: the one address a thief of the session cannot have put there.
  if (magicLink) r.post('/account/reauthenticate/link', requireLogin, requireCsrf, async (req, res) => {
    const then = returnTo(field(req, 'next', 1000));
    const email = req.viewer!.email;
    if (!(await allowHit(db, `maillink:login:${email}`, LINK_LIMIT.perEmail, LINK_LIMIT.windowSeconds))) {
      return page(req, res, then, { error: `Three links went to ${email} in the last hour: use one of them, or wait an hour.` }, 429);
    }
    const token = await issueLoginToken(db, email, 'login', LINK_TTL);
    const link = absoluteUrl(ctx.cfg.publicUrl, loginLinkUrl(token, hereThen(then)));
    await sendNotice(db, {
      site: ctx.cfg,
      to: email,
      subject: 'Log in again to change your account',
      text: `Someone (probably you) logged in to ${ctx.cfg.publicUrl} as ${email} asked to log in again, to make a change that needs a recent login (the account's addresses or password, a list's owners or moderators, an API token).\n\n`
        + `Open this link within an hour to log in:\n\n  ${link}\n\nIt works once. `
        + `If you did not ask for it, do not open it: someone else may be using your session. Log in yourself and choose "Log out everywhere else" on your account page.\n`,
    });
    await page(req, res, then, { sent: email });
  });

  return r;
}
