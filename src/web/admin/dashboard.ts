/* The panel's home (the viewer's lists), the operations dashboard and the site-wide audit log. */

import { Router } from 'express';
import { conversionJob } from '../../core/conversions.ts';
import { recentAudit } from '../../db/audit.ts';
import { conversionProgress } from '../../db/conversions.ts';
import { recentIngestErrors } from '../../db/ingest-errors.ts';
import { listsForStaff } from '../../db/list-admin.ts';
import { recentFailedDeliveries, siteTotals } from '../../db/operations.ts';
import { deliveryHistory, queueStats } from '../../db/outbox.ts';
import { redactSecrets } from '../../log.ts';
import type { WebContext } from '../context.ts';
import { render } from '../render.ts';
import { requireSiteAdmin, requireStaff } from '../auth/guards.ts';
import { auditLines } from './audit-view.ts';
import { fillHours, hourlyChart } from './chart.ts';
import { positiveInt, query } from './form.ts';

export function dashboardRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/admin/', requireStaff, async (req, res) => {
    const viewer = req.viewer!;
    const lists = await listsForStaff(db, viewer.emails, viewer.isSiteAdmin);
    const totals = viewer.isSiteAdmin ? await siteTotals(db) : null;
    render(ctx.views, req, res, 'admin/home.njk', { title: 'Admin', home: true, lists, totals });
  });

  r.get('/admin/dashboard', requireSiteAdmin, async (req, res) => {
    const [queue, history, failed, ingest, audit, totals, conversions] = await Promise.all([
      queueStats(db, ctx.cfg.delivery.leaseSeconds),
      deliveryHistory(db, 2),
      recentFailedDeliveries(db, 15),
      recentIngestErrors(db, 15),
      recentAudit(db, { limit: 15 }),
      siteTotals(db),
      conversionProgress(db),
    ]);
    // Error texts may quote a URL with its password: shown masked, as everywhere else.
    if (queue.oldest?.last_error) queue.oldest.last_error = redactSecrets(queue.oldest.last_error);
    for (const f of failed) if (f.last_error) f.last_error = redactSecrets(f.last_error);
    for (const c of conversions) {
      if (c.error) c.error = redactSecrets(c.error);
      if (c.last_skipped) c.last_skipped.error = redactSecrets(c.last_skipped.error);
    }
    render(ctx.views, req, res, 'admin/dashboard.njk', {
      title: 'Operations', queue, stale: queue.workers.filter((w) => w.stale).length, chart: hourlyChart(fillHours(history, 48)), failed, ingest, audit: auditLines(audit), totals, now: new Date(),
      conversions: conversions.map((c) => ({ ...c, describe: conversionJob(c.name)?.describe ?? 'a newer release\'s job', percent: c.done_at ? 100 : c.total_estimate ? Math.min(99, Math.floor((100 * c.rows_done) / c.total_estimate)) : 0 })),
    });
  });

  r.get('/admin/audit', requireSiteAdmin, async (req, res) => {
    const before = positiveInt(query(req, 'before'), 0) || null;
    const rows = await recentAudit(db, { beforeId: before, limit: 100 });
    render(ctx.views, req, res, 'admin/audit.njk', { title: 'Audit log', entries: auditLines(rows), more: rows.length === 100 ? rows[rows.length - 1].id : null, base: '/admin/audit' });
  });

  return r;
}
