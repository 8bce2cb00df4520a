/*
 * /api/v1/lists/LIST/messages/hide and /unhide: an archived message leaves (or comes back to) the
 * list's pages, search, feeds and downloads at once, as the panel's Archive tab does it
 * (core/hidden-messages.ts). The Message-ID goes in the body: it may hold any character.
 */

import { Router } from 'express';
import { HIDE_REASONS, hideMessage, unhideMessage } from '../../core/hidden-messages.ts';
import type { WebContext } from '../context.ts';
import { apiActor, need } from './auth.ts';
import { body, choice, pathList, str } from './input.ts';

export function messagesApi(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.post('/lists/:list/messages/hide', need('moderate'), async (req, res) => {
    const list = await pathList(ctx, req);
    const b = body(req);
    const messageId = str(b, 'message_id', { required: true, max: 1000 }).trim().replace(/^<|>$/g, '');
    const reason = choice(b, 'reason', HIDE_REASONS);
    const note = str(b, 'note', { max: 500 })?.trim() || undefined;
    await hideMessage(db, list, messageId, { category: reason, note, actor: apiActor(req, res) });
    res.json({ message_id: messageId, hidden: true, reason, note: note ?? null });
  });

  r.post('/lists/:list/messages/unhide', need('moderate'), async (req, res) => {
    const list = await pathList(ctx, req);
    const messageId = str(body(req), 'message_id', { required: true, max: 1000 }).trim().replace(/^<|>$/g, '');
    const changed = await unhideMessage(db, list, messageId, { actor: apiActor(req, res) });
    res.json({ message_id: messageId, hidden: false, changed });
  });

  return r;
}
