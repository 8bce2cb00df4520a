/*
 * Self-service for anyone logged in: their addresses (addresses.ts), subscriptions, delivery mode,
 * password, sessions. Setting a password where there was none needs a recent login
 * (reauthenticate.ts); changing one needs the current one.
 */

import { Router } from 'express';
import { savePassword } from '../../core/account-password.ts';
import { findAccount } from '../../db/accounts.ts';
import { hashPassword, passwordProblem } from '../../auth/credentials.ts';
import { listsForStaff } from '../../db/list-admin.ts';
import { subscriptionsOf } from '../../db/member-admin.ts';
import { changeOwnSubscription, switchOwnSubscription } from '../../core/members.ts';
import { accountAddresses } from '../../db/account-addresses.ts';
import { parseResumeDate, resumeDay } from '../../core/vacation.ts';
import { deleteAccountSessions, RECENT_LOGIN_MINUTES } from '../../db/sessions.ts';
import { NotFound } from '../../errors.ts';
import { DELIVERY_MODES, DIGEST_FORMATS } from '../../list-policies.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { currentSessionHash, flash, loggedInRecently } from '../session.ts';
import { email as emailField, field, oneOf, positiveInt } from '../admin/form.ts';
import { requireLogin } from '../auth/guards.ts';
import { checkAccountPassword } from '../auth/login-limits.ts';
import { reauthenticateUrl } from '../../mail/urls.ts';
import { confirmPage } from '../admin/confirm.ts';
import { addressesRouter } from './addresses.ts';
import { reauthenticateRouter } from './reauthenticate.ts';


export function accountRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  r.use(addressesRouter(ctx));
  r.use(reauthenticateRouter(ctx));

  r.get('/account', requireLogin, async (req, res) => {
    const viewer = req.viewer!;
    const [subscriptions, account, staffLists, addresses] = await Promise.all([
      subscriptionsOf(db, viewer.emails),
      findAccount(db, viewer.accountId),
      listsForStaff(db, viewer.emails, false),
      accountAddresses(db, viewer.accountId),
    ]);
    const tomorrow = resumeDay(new Date(Date.now() + 86_400_000));
    render(ctx.views, req, res, 'account/index.njk', {
      title: 'Your account',
      subscriptions: subscriptions.map((s) => ({ ...s, until_day: s.nomail_until ? resumeDay(s.nomail_until) : '', others: viewer.emails.filter((e) => e !== s.email) })),
      addresses, tomorrow, hasPassword: !!account?.password_hash, passwordLogin: ctx.cfg.login.password, staffLists, modes: DELIVERY_MODES,
      recentLoginMinutes: RECENT_LOGIN_MINUTES,
    });
  });

  r.post('/account/subscriptions/:id', requireLogin, requireCsrf, async (req, res) => {
    const viewer = req.viewer!;
    const id = positiveInt(String(req.params.id), 0);
    const action = oneOf('action', field(req, 'action'), ['mode', 'unsubscribe', 'reenable', 'address'] as const);
    let message: string;
    if (action === 'mode') {
      const mode = oneOf('Delivery', field(req, 'mode'), DELIVERY_MODES);
      const format = field(req, 'digest_format') ? oneOf('Digest format', field(req, 'digest_format'), DIGEST_FORMATS) : null;
      // The date box stays filled when another mode is picked: it counts only with "no mail".
      const until = mode === 'nomail' && field(req, 'until') ? parseResumeDate(field(req, 'until')) : null;
      const list = await changeOwnSubscription(db, id, viewer, { mode, digestFormat: format, until });
      message = until ? `${list.address}: delivery is paused until ${resumeDay(until)}, then resumes by itself.`
        : `${list.address}: delivery is now "${mode}"${mode === 'digest' && format ? ` (${format === 'plain' ? 'plain text' : 'MIME'} digests)` : ''}.`;
    } else if (action === 'unsubscribe') {
      if (field(req, 'confirm') !== '1') {
        // Only one's own current subscriptions; a second click after leaving just says so. Someone
        // else's id is answered as an id nobody has: the answer tells nothing of who holds which.
        const sub = (await subscriptionsOf(db, viewer.emails)).find((s) => Number(s.id) === id);
        if (!sub) {
          flash(ctx, res, 'You are not subscribed there (any more).', 'error');
          return res.redirect(303, '/account');
        }
        return confirmPage(ctx, req, res, {
          title: `Leave ${sub.list_address}?`, heading: `Leave ${sub.list_name} (${sub.list_address})?`,
          consequence: `You stop getting its mail at once. To come back you subscribe again and confirm by mail.`,
          items: [], count: 1, more: 0, button: 'Unsubscribe', action: `/account/subscriptions/${id}`, cancel: '/account', hidden: [['action', 'unsubscribe']],
        }, 'account/confirm.njk');
      }
      message = `You have left ${(await changeOwnSubscription(db, id, viewer, 'unsubscribe')).address}.`;
    } else if (action === 'address') {
      const to = emailField('Address', field(req, 'email', 254));
      message = `${(await switchOwnSubscription(db, id, viewer, to)).address} now sends to ${to}.`;
    } else {
      message = `Delivery from ${(await changeOwnSubscription(db, id, viewer, 'reenable')).address} is on again.`;
    }
    flash(ctx, res, message);
    res.redirect(303, '/account');
  });

  // PASSWORD_LOGIN=off: no password to set (it could not be used), and the form is not shown.
  if (ctx.cfg.login.password) r.post('/account/password', requireLogin, requireCsrf, async (req, res) => {
    const viewer = req.viewer!;
    const account = await findAccount(db, viewer.accountId);
    if (!account) throw new NotFound('No such account.');
    const current = field(req, 'current', 1000);
    const password = field(req, 'password', 1000);
    if (account.password_hash) {
      // The current password is the proof that it is the account's owner, however old the session.
      const check = await checkAccountPassword(db, req.ip, account, current);
      if (check !== 'right') {
        flash(ctx, res, check === 'limited' ? 'Too many attempts. Wait a quarter of an hour; nothing changed.' : 'Your current password was not right; nothing changed.', 'error');
        return res.redirect(303, '/account');
      }
    } else if (!loggedInRecently(req)) {
      // No password to ask for: a password set from a stolen session would let its thief in for
      // good, so a login of the last minutes is the proof (account/reauthenticate.ts).
      return res.redirect(303, reauthenticateUrl());
    }
    const problem = passwordProblem(password) ?? (password !== field(req, 'confirm', 1000) ? 'The two new passwords differ.' : null);
    if (problem) {
      flash(ctx, res, problem, 'error');
      return res.redirect(303, '/account');
    }
    await savePassword(db, { accountId: account.id, email: account.email }, await hashPassword(password), {
      change: account.password_hash ? 'changed' : 'set', keepSession: currentSessionHash(req), replacing: account.password_hash, settings: ctx.cfg,
    });
    flash(ctx, res, 'Password saved. Your other sessions were logged out.');
    res.redirect(303, '/account');
  });

  r.post('/account/sessions/end-others', requireLogin, requireCsrf, async (req, res) => {
    await deleteAccountSessions(db, req.viewer!.accountId, currentSessionHash(req));
    flash(ctx, res, 'Logged out everywhere else.');
    res.redirect(303, '/account');
  });

  return r;
}
