/*
 * Links from mail: `/u/TOKEN` (RFC 8058 one-click unsubscribe: GET shows a page, POST with
 * List-Unsubscribe=One-Click acts at once, without cookies or CSRF, as mail providers send it)
 * and `/confirm/TOKEN` (double opt-in: GET shows a button, POST confirms, with CSRF).
 */

import { Router, type Request, type Response } from 'express';
import { hashToken } from '../auth/credentials.ts';
import { AppError, NotFound } from '../errors.ts';
import { getListById } from '../db/lists.ts';
import { findMemberByToken } from '../db/members.ts';
import { requestByToken } from '../db/subscription-requests.ts';
import { log } from '../log.ts';
import { confirm, reenableByLink, unsubscribeByLink } from '../core/subscriptions.ts';
import type { WebContext } from './context.ts';
import { requireCsrf } from './csrf.ts';
import { render } from './render.ts';

export function subscriptionRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/u/:token', async (req, res) => {
    const member = await findMemberByToken(db, String(req.params.token));
    if (!member) throw new NotFound('This unsubscribe link is not valid.', 'unknown_token');
    const list = await getListById(db, member.list_id);
    res.set('Cache-Control', 'no-store');
    render(ctx.views, req, res, 'subscription/unsubscribe.njk', { title: `Unsubscribe from ${list.name}`, list, member, token: member.token });
  });

  // RFC 8058: the mail provider POSTs "List-Unsubscribe=One-Click" with no cookies. No CSRF
  // token is possible here; the unguessable token in the URL is the authorisation.
  r.post('/u/:token', async (req, res) => {
    if (!(await isOneClick(req))) {
      return plain(ctx, res, 400, 'subscription/result.njk', { title: 'Bad request', message: 'This address only accepts "List-Unsubscribe=One-Click".' });
    }
    const done = await unsubscribeByLink(db, String(req.params.token));
    if (!done) return plain(ctx, res, 404, 'subscription/result.njk', { title: 'Not found', message: 'This unsubscribe link is not valid.' });
    const { member, list: { address } } = done;
    if (done.changed) log.info({ list: address, via: 'one-click' }, 'member unsubscribed');
    plain(ctx, res, 200, 'subscription/result.njk', {
      title: 'Unsubscribed',
      message: `${member.email} is unsubscribed from ${address}. You will receive no more mail from this list.`,
    });
  });

  r.post('/u/:token/reenable', requireCsrf, async (req, res) => {
    const done = await reenableByLink(db, String(req.params.token));
    if (!done) throw new NotFound('This link is not valid.', 'unknown_token');
    const { member, list: { address } } = done;
    const ok = member.status !== 'unsubscribed';
    render(ctx.views, req, res, 'subscription/result.njk', {
      title: ok ? 'Delivery re-enabled' : 'Not subscribed',
      message: ok ? `Mail from ${address} will be delivered to ${member.email} again.` : `${member.email} is not a member of ${address}; subscribe again from the list's page.`,
    });
  });

  r.get('/confirm/:token', async (req, res) => {
    const token = String(req.params.token).toLowerCase();
    const request = /^[a-f0-9]{32}$/.test(token) ? await requestByToken(db, hashToken(token)) : null;
    if (!request) throw new NotFound('This confirmation link is not valid.', 'unknown_token');
    res.set('Cache-Control', 'no-store');
    render(ctx.views, req, res, 'subscription/confirm.njk', {
      title: 'Confirm', request, token, expired: request.expired && request.state === 'confirm',
    }, request.expired && request.state === 'confirm' ? 410 : 200);
  });

  r.post('/confirm/:token', requireCsrf, async (req, res) => {
    try {
      const result = await confirm(db, String(req.params.token), ctx.cfg);
      const message = result.action === 'unsubscribe'
        ? `${result.email} is unsubscribed from ${result.list.address}.`
        : result.state === 'approval'
          ? `Thank you. The owners of ${result.list.address} approve new members; you will hear from them by mail.`
          : `${result.email} is subscribed to ${result.list.address}. A welcome message is on its way.`;
      render(ctx.views, req, res, 'subscription/result.njk', { title: 'Confirmed', message, list: result.list });
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      render(ctx.views, req, res, 'subscription/result.njk', { title: 'Could not confirm', message: err.message }, err.code === 'token_expired' ? 410 : err.status);
    }
  });

  return r;
}

/** Renders without touching cookies (the one-click POST must not set any). */
function plain(ctx: WebContext, res: Response, status: number, template: string, vars: Record<string, unknown>) {
  res.status(status).type('html').set('Cache-Control', 'no-store').send(ctx.views.render(template, { viewer: null, ...vars }));
}

/** The RFC 8058 body, form-urlencoded (parsed already) or multipart/form-data (read here). */
async function isOneClick(req: Request): Promise<boolean> {
  if (req.body && typeof req.body === 'object' && 'List-Unsubscribe' in req.body) {
    return String((req.body as Record<string, unknown>)['List-Unsubscribe']) === 'One-Click';
  }
  if (!/^multipart\/form-data/i.test(req.get('content-type') ?? '')) return false;
  let body = '';
  for await (const chunk of req) {
    body += (chunk as Buffer).toString('latin1');
    if (body.length > 16_384) return false;
  }
  return /name="?List-Unsubscribe"?\s*\r?\n\r?\n\s*One-Click\s*\r?\n/i.test(body);
}
