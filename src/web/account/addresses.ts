/*
 * /account/addresses: the account's addresses (core/account-addresses.ts). Add one (a link is
 * mailed to it), follow that link (a button, so mail scanners that fetch links do not use it up;
 * only in a session of the account that asked), make a verified one primary, remove one (after a
 * confirmation page). Every form is CSRF-checked. Adding, making primary and removing need a
 * recent login (requireRecentLogin, reauthenticate.ts): each is a step towards keeping the
 * account from its owner.
 */

import { Router, type Request, type Response } from 'express';
import { accountAddresses } from '../../db/account-addresses.ts';
import { subscriptionsOf } from '../../db/member-admin.ts';
import { addAddress, followVerifyLink, makePrimaryAddress, peekVerifyLink, removeAccountAddress, type VerifyLinkOutcome } from '../../core/account-addresses.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { currentSessionHash, flash } from '../session.ts';
import { email as emailField, field } from '../admin/form.ts';
import { requireLogin, requireRecentLogin } from '../auth/guards.ts';
import { confirmPage } from '../admin/confirm.ts';

/** What a followed link that did not verify anything says, and its status. */
const REFUSALS: Record<Exclude<VerifyLinkOutcome, 'verified' | 'already'>, { status: number; heading: string; text: (email: string | null) => string }> = {
  expired: { status: 410, heading: 'This link has expired', text: () => 'Links that confirm an address work once, for a day. Add the address again on your account page to get a new one.' },
  foreign: { status: 403, heading: 'This link is for another account', text: (e) => `The link that confirms ${e} was asked for by another account. Log in as that account to use it. Nothing changed.` },
  taken: { status: 409, heading: 'This address belongs to another account', text: (e) => `${e} is already a verified address of another account on this site, so it cannot be added to yours. Nothing changed.` },
  withdrawn: { status: 410, heading: 'This address was removed', text: (e) => `${e} was removed from your account after this link was sent. Add it again to get a new link.` },
};

export function addressesRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const verifyPage = (req: Request, res: Response, vars: Record<string, unknown>, status = 200) =>
    render(ctx.views, req, res, 'account/verify.njk', { title: 'Confirm an address', ...vars }, status);

  r.post('/account/addresses', requireLogin, requireCsrf, requireRecentLogin, async (req, res) => {
    const { outcome, email } = await addAddress(db, req.viewer!, field(req, 'email', 254), ctx.cfg);
    flash(ctx, res, outcome === 'yours'
      ? `${email} is already one of your addresses.`
      : `A link is on its way to ${email}. Open it within a day, logged in as you are now, to confirm the address.`);
    res.redirect(303, '/account');
  });

  r.post('/account/addresses/primary', requireLogin, requireCsrf, requireRecentLogin, async (req, res) => {
    const email = emailField('Address', field(req, 'email', 254));
    await makePrimaryAddress(db, req.viewer!, email, ctx.cfg);
    flash(ctx, res, `${email} is now your primary address: log in with it, and the site writes to it.`);
    res.redirect(303, '/account');
  });

  r.post('/account/addresses/remove', requireLogin, requireCsrf, requireRecentLogin, async (req, res) => {
    const viewer = req.viewer!;
    const email = emailField('Address', field(req, 'email', 254));
    if (field(req, 'confirm') !== '1') {
      const known = (await accountAddresses(db, viewer.accountId)).find((a) => a.email === email);
      if (!known) {
        flash(ctx, res, `${email} is not one of your addresses (any more).`, 'error');
        return res.redirect(303, '/account');
      }
      const subscribed = known.verified_at ? (await subscriptionsOf(db, [email])).map((s) => s.list_address) : [];
      return confirmPage(ctx, req, res, {
        title: `Remove ${email}?`, heading: `Remove ${email} from your account?`,
        consequence: subscribed.length
          ? `You can no longer log in with it, nor manage its subscriptions here. It stays subscribed to the lists below: switch them to another address first, or leave them, if that is not what you want.`
          : `You can no longer log in with it. You can add it again later (a new link is mailed to it).`,
        items: subscribed.slice(0, 20), count: subscribed.length, more: Math.max(0, subscribed.length - 20),
        button: 'Remove address', action: '/account/addresses/remove', cancel: '/account', hidden: [['email', email]],
      }, 'account/confirm.njk');
    }
    // This session stays, even when it was logged in with the address removed.
    const ended = await removeAccountAddress(db, viewer, email, ctx.cfg, currentSessionHash(req));
    if (ended === null) flash(ctx, res, `${email} is not one of your addresses (any more).`, 'error');
    else flash(ctx, res, `${email} is no longer one of your addresses.${ended ? ` ${ended === 1 ? 'A session' : `${ended} sessions`} logged in with it ${ended === 1 ? 'was' : 'were'} logged out.` : ''}`);
    res.redirect(303, '/account');
  });

  // The mailed link: logged out, it leads to the login page and back here.
  r.get('/account/addresses/verify/:token', requireLogin, async (req, res) => {
    const token = String(req.params.token);
    const { outcome, email } = await peekVerifyLink(db, req.viewer!, token);
    if (outcome !== 'ok') {
      const refusal = REFUSALS[outcome];
      return verifyPage(req, res, { heading: refusal.heading, message: refusal.text(email) }, refusal.status);
    }
    verifyPage(req, res, { heading: 'Confirm an address', email, token });
  });

  r.post('/account/addresses/verify/:token', requireLogin, requireCsrf, async (req, res) => {
    const { outcome, email } = await followVerifyLink(db, req.viewer!, String(req.params.token), ctx.cfg);
    if (outcome === 'verified' || outcome === 'already') {
      flash(ctx, res, outcome === 'verified' ? `${email} is now one of your verified addresses.` : `${email} was already verified.`);
      return res.redirect(303, '/account');
    }
    const refusal = REFUSALS[outcome];
    verifyPage(req, res, { heading: refusal.heading, message: refusal.text(email) }, refusal.status);
  });

  return r;
}
