/*
 * /api/v1/lists/LIST/rules: a list's sender rules (an address or @domain always accepted, or
 * dropped), as `listkeeper rules` shows and changes them (core/sender-rules.ts).
 */

import { Router } from 'express';
import { addSenderRule, listSenderRules, removeSenderRule, senderKey } from '../../core/sender-rules.ts';
import { NotFound } from '../../errors.ts';
import type { WebContext } from '../context.ts';
import { apiActor, need } from './auth.ts';
import { body, choice, pageOf, pageParams, pathList, sendPage, str } from './input.ts';
import { parseDays } from '../../days.ts';

export function rulesApi(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/lists/:list/rules', need('read'), async (req, res) => {
    const list = await pathList(ctx, req);
    const all = (await listSenderRules(db, list.id)).map((x) => ({ pattern: x.email, kind: x.kind, expires_at: x.expires_at, created_by: x.created_by, created_at: x.created_at }));
    const { rows, nextKey } = pageOf(all, (x) => x.pattern, pageParams(req));
    sendPage(req, res, rows, nextKey);
  });

  // {pattern, kind: allow|ban, days?}: a rule for that sender (replacing one it had).
  r.post('/lists/:list/rules', need('moderate'), async (req, res) => {
    const list = await pathList(ctx, req);
    const b = body(req);
    const pattern = str(b, 'pattern', { required: true, max: 300 });
    const kind = choice(b, 'kind', ['allow', 'ban'] as const);
    const rule = await addSenderRule(db, list, pattern, kind, { days: parseDays(b.days, '"days"'), actor: apiActor(req, res) });
    res.json({ pattern: rule.email, kind: rule.kind, expires_at: rule.expires_at });
  });

  r.delete('/lists/:list/rules/:pattern', need('moderate'), async (req, res) => {
    const list = await pathList(ctx, req);
    const key = senderKey(String(req.params.pattern));
    if (!(await removeSenderRule(db, list, key, { actor: apiActor(req, res) }))) throw new NotFound(`${list.address} has no rule for ${key}`, 'no_such_rule');
    res.json({ pattern: key, removed: true });
  });

  return r;
}
