/*
 * /api/v1/lists/LIST/held: the moderation queue in the shape of `listkeeper held --json`, and the
 * decisions, through the same core/hold.ts moderate() as the panel and `listkeeper moderate`: an
 * approval is accepted exactly as an arriving post (archived, copies queued), once.
 */

import { Router, type Request } from 'express';
import { getHeld, heldSummary, moderate, type ModerationAction } from '../../core/hold.ts';
import { heldAfter, type HeldRow } from '../../db/held.ts';
import type { ListRow } from '../../db/lists.ts';
import { InvalidInput, NotFound } from '../../errors.ts';
import type { WebContext } from '../context.ts';
import { apiActor, need } from './auth.ts';
import { body, idCursor, pageParams, pathList, sendPage, str } from './input.ts';

const ACTIONS: ModerationAction[] = ['approve', 'reject', 'discard'];

/** `held --json`'s fields (no size), without the raw bytes. */
function summaryJson(h: { id: number; message_id: string; from: string; subject: string; reason: string; received_at: Date }) {
  return { id: h.id, message_id: h.message_id, from: h.from, subject: h.subject, reason: h.reason, received_at: h.received_at };
}

/** One held post with its state: who decided what, once it is decided. */
function heldJson(h: HeldRow) {
  return {
    ...summaryJson({ ...h, from: h.from_email }),
    state: h.state, decided_at: h.decided_at, decided_by: h.decided_by, decision_reason: h.decision_reason,
  };
}

async function heldOn(ctx: WebContext, list: ListRow, req: Request): Promise<HeldRow> {
  const text = String(req.params.id);
  const id = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(id)) throw new InvalidInput(`"${text.slice(0, 40)}" is not a held message id.`);
  const held = await getHeld(ctx.db.pool, id);
  if (!held || held.list_id !== list.id) throw new NotFound(`no held message ${id} on ${list.address}`, 'no_such_held');
  return held;
}

export function heldApi(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/lists/:list/held', need('read'), async (req, res) => {
    const list = await pathList(ctx, req);
    const page = pageParams(req);
    const after = idCursor(page) ?? 0;
    const rows = await heldAfter(db, list.id, after, page.limit + 1);
    const shown = rows.slice(0, page.limit);
    sendPage(req, res, shown.map((h) => summaryJson(heldSummary(h))), rows.length > page.limit ? String(shown[shown.length - 1].id) : null);
  });

  r.get('/lists/:list/held/:id', need('read'), async (req, res) => {
    res.json(heldJson(await heldOn(ctx, await pathList(ctx, req), req)));
  });

  // approve | reject (with an optional reason, mailed to the sender) | discard; a second decision is 409.
  r.post('/lists/:list/held/:id/:action', need('moderate'), async (req, res) => {
    const action = String(req.params.action) as ModerationAction;
    if (!ACTIONS.includes(action)) throw new NotFound(`no such decision "${String(req.params.action).slice(0, 40)}": approve, reject or discard`);
    const list = await pathList(ctx, req);
    const held = await heldOn(ctx, list, req);
    const reason = str(body(req), 'reason', { max: 2000 });
    await moderate(db, held.id, action, { reason, actor: apiActor(req, res), listId: list.id, settings: ctx.cfg });
    res.json(heldJson((await getHeld(db, held.id))!));
  });

  return r;
}
