/* What a moderator can do to held posts, one at a time or ticked in bulk. */

import { Router } from 'express';
import { recentAudit } from '../../db/audit.ts';
import { InvalidInput, NotFound } from '../../errors.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash } from '../session.ts';
import { actor, listAccessOf, requireList } from '../auth/guards.ts';
import { auditLines } from './audit-view.ts';
import { getHeld, listHeld, moderate, type ModerationAction } from '../../core/hold.ts';
import { addSenderRule, listSenderRules, removeSenderRule } from '../../core/sender-rules.ts';
import { field, fields, oneOf, positiveInt } from './form.ts';
import { heldPreview } from './held-preview.ts';
import { adminListUrl } from '../../mail/urls.ts';

const ACTIONS = ['approve', 'reject', 'discard', 'approve-allow', 'discard-ban'] as const;
type Action = (typeof ACTIONS)[number];

const DONE: Record<Action, string> = {
  approve: 'approved',
  reject: 'rejected (the sender was told why)',
  discard: 'discarded',
  'approve-allow': 'approved, and their senders will no longer be held',
  'discard-ban': 'discarded, and their senders are banned',
};

/** The moderation queue of held posts: the list, a safe preview, and the decisions. */
export function heldRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const moderator = requireList(ctx, 'moderator');

  r.get('/admin/lists/:list/held', moderator, async (req, res) => {
    const { list } = listAccessOf(res);
    const [held, decisions, rules] = await Promise.all([
      listHeld(db, list.id),
      recentAudit(db, { listId: list.id, actionPrefix: 'held.', limit: 15 }),
      listSenderRules(db, list.id),
    ]);
    render(ctx.views, req, res, 'admin/held.njk', { title: `Held messages · ${list.address}`, tab: 'held', held, decisions: auditLines(decisions), rules, now: new Date() });
  });

  r.get('/admin/lists/:list/held/:id', moderator, async (req, res) => {
    const { list } = listAccessOf(res);
    const held = await getHeld(db, positiveInt(String(req.params.id), 0));
    if (!held || held.list_id !== list.id) throw new NotFound('That message is no longer in the queue.');
    render(ctx.views, req, res, 'admin/held-message.njk', { title: `Held: ${held.subject || '(no subject)'}`, tab: 'held', held, preview: await heldPreview(held.raw, held.checks) });
  });

  r.post('/admin/lists/:list/held', moderator, requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const action = oneOf('Action', field(req, 'action'), ACTIONS);
    const ids = [...new Set(fields(req, 'ids').map((v) => positiveInt(v, 0)).filter((n) => n > 0))];
    const reason = field(req, 'reason', 2000);
    if (ids.length === 0) {
      flash(ctx, res, 'Tick at least one message first.', 'error');
      return res.redirect(303, adminListUrl(list.address, 'held'));
    }
    let done = 0;
    const skipped: string[] = [];
    for (const id of ids) {
      const base: ModerationAction = action === 'approve-allow' ? 'approve' : action === 'discard-ban' ? 'discard' : action;
      const senderRule = action === 'approve-allow' ? 'allow' : action === 'discard-ban' ? 'ban' : undefined;
      try {
        // Each id is checked against this list: a moderator acts only on their own lists' queue.
        await moderate(db, id, base, { actor: actor(req), reason: reason || undefined, listId: list.id, senderRule, settings: ctx.cfg });
      } catch (err) {
        if (!(err instanceof InvalidInput || err instanceof NotFound || (err as { status?: number }).status === 409)) throw err;
        skipped.push(`#${id}`);
        continue;
      }
      done++;
    }
    flash(ctx, res, `${done} message${done === 1 ? '' : 's'} ${DONE[action]}.${skipped.length ? ` Already handled or not found: ${skipped.join(', ')}.` : ''}`, done === 0 ? 'error' : 'flash');
    res.redirect(303, adminListUrl(list.address, 'held'));
  });

  // Sender rules: always accept (allow) or silently drop (ban) an address or a whole @domain.
  r.post('/admin/lists/:list/senders', moderator, requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const action = oneOf('Action', field(req, 'action'), ['add', 'remove'] as const);
    const email = field(req, 'email', 254).toLowerCase();
    const back = adminListUrl(list.address, 'held#senders');
    try {
      if (action === 'add') {
        const kind = oneOf('Rule', field(req, 'kind'), ['allow', 'ban'] as const);
        const days = field(req, 'days') ? positiveInt(field(req, 'days'), 0) : 0;
        const expiresAt = days > 0 ? new Date(Date.now() + days * 86_400_000) : null;
        const rule = await addSenderRule(db, list, email, kind, { expiresAt, actor: actor(req) });
        flash(ctx, res, `${rule.email} ${kind === 'allow' ? 'is always accepted' : 'is banned'}${expiresAt ? ` for ${days} day${days === 1 ? '' : 's'}` : ''}.`);
      } else {
        const removed = await removeSenderRule(db, list, email, { actor: actor(req) });
        flash(ctx, res, removed ? `The rule for ${email} is gone.` : 'Nothing changed.');
      }
    } catch (err) {
      if (!(err instanceof InvalidInput)) throw err;
      flash(ctx, res, err.message, 'error');
    }
    res.redirect(303, back);
  });

  return r;
}
