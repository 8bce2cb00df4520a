/*
 * /api/v1/audit: the audit log, newest first, a page at a time (?list= for one list's entries,
 * ?action= for a family such as "held." or "member."). The same entries as the panel's audit pages.
 */

import { Router } from 'express';
import { recentAudit } from '../../db/audit.ts';
import type { WebContext } from '../context.ts';
import { need } from './auth.ts';
import { idCursor, pageParams, sendPage } from './input.ts';
import { findList } from '../../db/lists.ts';

export function auditApi(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  r.get('/audit', need('read'), async (req, res) => {
    const page = pageParams(req);
    const before = idCursor(page);
    const q = req.query as Record<string, unknown>;
    const list = typeof q.list === 'string' && q.list ? await findList(db, q.list, { mailDomain: ctx.cfg.mailDomain }) : null;
    const action = typeof q.action === 'string' && q.action ? q.action.slice(0, 100) : null;
    const rows = await recentAudit(db, { listId: list?.id ?? null, beforeId: before, actionPrefix: action, limit: page.limit + 1 });
    const shown = rows.slice(0, page.limit);
    sendPage(req, res, shown, rows.length > page.limit ? String(shown[shown.length - 1].id) : null);
  });
  return r;
}
