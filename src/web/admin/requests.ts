/* Subscription requests held for approval (lists with subscribe policy "approve"). */

import { Router } from 'express';
import { AppError } from '../../errors.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash } from '../session.ts';
import { actor, listAccessOf, requireList } from '../auth/guards.ts';
import { decideSubscription, pendingApprovals } from '../../core/subscriptions.ts';
import { field, fields, oneOf, positiveInt } from './form.ts';
import { adminListUrl } from '../../mail/urls.ts';

export function requestsRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const moderator = requireList(ctx, 'moderator');

  r.get('/admin/lists/:list/requests', moderator, async (req, res) => {
    const { list } = listAccessOf(res);
    render(ctx.views, req, res, 'admin/requests.njk', { title: `Subscription requests · ${list.address}`, tab: 'requests', requests: await pendingApprovals(db, list.id) });
  });

  r.post('/admin/lists/:list/requests', moderator, requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const decision = oneOf('Action', field(req, 'action'), ['approve', 'reject'] as const);
    const ids = new Set(fields(req, 'ids').map((v) => positiveInt(v, 0)));
    // Only requests of this list: the ids come from the browser.
    const pending = (await pendingApprovals(db, list.id)).filter((p) => ids.has(p.id));
    let done = 0;
    const decided: string[] = [];
    for (const p of pending) {
      try {
        await decideSubscription(db, p.id, decision, actor(req), ctx.cfg);
        done++;
      } catch (err) {
        // Decided by another moderator since this page was read: the rest are decided all the same.
        if (!(err instanceof AppError && err.code === 'already_decided')) throw err;
        decided.push(p.email);
      }
    }
    const text = pending.length === 0 ? 'Tick at least one request first.'
      : `${done} request${done === 1 ? '' : 's'} ${decision === 'approve' ? 'approved' : 'rejected'}.${decided.length ? ` Already decided by someone else: ${decided.join(', ')}.` : ''}`;
    flash(ctx, res, text, done === 0 ? 'error' : 'flash');
    res.redirect(303, adminListUrl(list.address, 'requests'));
  });

  return r;
}
