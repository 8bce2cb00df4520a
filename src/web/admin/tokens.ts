/*
 * /admin/tokens: tokens of the REST API (docs/api.md), for site administrators only. A new token
 * is shown once, on the page that answers the form (never in a redirect, a cookie or a log);
 * afterwards only its name, scope, use and state are listed. Revoking takes effect at the next
 * request. A token made here is its maker's account's: it stops working when that account is no
 * longer a site administrator (core/api-tokens.ts). Making one needs a recent login
 * (requireRecentLoginThen): a token outlives the session that made it, so a stolen admin cookie must
 * not be able to turn itself into a token that logging out everywhere and a new password leave working.
 */

import { Router } from 'express';
import { createApiToken, parseScope, revokeApiToken } from '../../core/api-tokens.ts';
import { parseDays } from '../../days.ts';
import { allApiTokens, API_SCOPES } from '../../db/api-tokens.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash } from '../session.ts';
import { actor, requireRecentLoginThen, requireSiteAdmin } from '../auth/guards.ts';
import { field, positiveInt } from './form.ts';
import { isAppError } from '../../errors.ts';

export function tokensRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const page = async (vars: Record<string, unknown> = {}) => ({ title: 'API tokens', tokens: await allApiTokens(db), scopes: API_SCOPES, apiBase: `${ctx.cfg.publicUrl}/api/v1`, ...vars });

  r.get('/admin/tokens', requireSiteAdmin, async (req, res) => {
    render(ctx.views, req, res, 'admin/tokens.njk', await page());
  });

  r.post('/admin/tokens', requireSiteAdmin, requireCsrf, requireRecentLoginThen(() => '/admin/tokens'), async (req, res) => {
    try {
      const { token, row } = await createApiToken(db, {
        scope: parseScope(field(req, 'scope', 20)), name: field(req, 'name', 100), days: parseDays(field(req, 'days', 20), 'days'),
        actor: actor(req), account: req.viewer!.accountId,
      });
      // The only time the secret is sent: no cache may keep the page.
      res.set('Cache-Control', 'no-store');
      render(ctx.views, req, res, 'admin/tokens.njk', await page({ created: { token, row } }));
    } catch (err) {
      if (!isAppError(err) || err.status !== 400) throw err;
      render(ctx.views, req, res, 'admin/tokens.njk', await page({ error: err.message, form: { name: field(req, 'name', 100), days: field(req, 'days', 20) } }), 400);
    }
  });

  r.post('/admin/tokens/:id/revoke', requireSiteAdmin, requireCsrf, async (req, res) => {
    const row = await revokeApiToken(db, positiveInt(String(req.params.id), 0), { actor: actor(req) });
    flash(ctx, res, `Token "${row.name}" (#${row.id}) revoked: its next request is refused.`);
    res.redirect(303, '/admin/tokens');
  });

  return r;
}
