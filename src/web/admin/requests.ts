/* Subscription requests held for approval (lists with subscribe policy "approve"). */

import { Router } from 'express';
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
    for (const p of pending) {
      await decideSubscription(db, p.id, decision, actor(req), ctx.cfg);
    }
    flash(ctx, res, pending.length === 0 ? 'Tick at least one request first.' : `${pending.length} request${pending.length === 1 ? '' : 's'} ${decision === 'approve' ? 'approved' : 'rejected'}.`, pending.length === 0 ? 'error' : 'flash');
    res.redirect(303, adminListUrl(list.address, 'requests'));
  });

  return r;
}
