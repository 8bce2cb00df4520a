import { Router } from 'express';
import { recordAudit } from '../../db/audit.ts';
import { listMessagesForModeration, messageInList } from '../../db/message-admin.ts';
import { hideMessage, unhideMessage } from '../../db/messages.ts';
import { NotFound } from '../../errors.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash } from '../session.ts';
import { actor, listAccessOf, requireList } from '../auth/guards.ts';
import { field, oneOf, positiveInt, query } from './form.ts';
import { adminListUrl } from '../../mail/urls.ts';

export const HIDE_REASONS = ['privacy', 'spam', 'legal'] as const;
const PAGE_SIZE = 50;

/** Archive moderation: find a list's archived message, hide it with a reason, unhide it. */
export function messagesRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const moderator = requireList(ctx, 'moderator');

  r.get('/admin/lists/:list/messages', moderator, async (req, res) => {
    const { list } = listAccessOf(res);
    const q = query(req, 'q', 300);
    const hiddenOnly = query(req, 'hidden') === '1';
    const page = positiveInt(query(req, 'page'), 1);
    const { rows, total } = await listMessagesForModeration(db, list.id, { q, hiddenOnly }, PAGE_SIZE, (page - 1) * PAGE_SIZE);
    const params = new URLSearchParams(Object.entries({ q, hidden: hiddenOnly ? '1' : '' }).filter(([, v]) => v));
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const pageUrl = (p: number) => `?${new URLSearchParams([...params, ['page', String(p)]])}`;
    render(ctx.views, req, res, 'admin/messages.njk', {
      title: `Archive · ${list.address}`, tab: 'messages', messages: rows, total, q, hiddenOnly, reasons: HIDE_REASONS,
      page, pages, prev: page > 1 ? pageUrl(page - 1) : null, next: page < pages ? pageUrl(page + 1) : null,
      back: `${adminListUrl(list.address, 'messages')}${params.size ? `?${params}` : ''}`,
    });
  });

  r.post(['/admin/lists/:list/messages/hide', '/admin/lists/:list/messages/unhide'], moderator, requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const messageId = field(req, 'message_id', 1000).replace(/^<|>$/g, '');
    if (!(await messageInList(db, list.id, messageId))) throw new NotFound(`No message <${messageId}> in the archive of ${list.address}.`);
    if (req.path.endsWith('/hide')) {
      const category = oneOf('Reason', field(req, 'reason'), HIDE_REASONS);
      const note = field(req, 'note', 500);
      await hideMessage(db, list.id, messageId, note ? `${category}: ${note}` : category, actor(req));
      await recordAudit(db, { actor: actor(req), action: 'message.hide', list, target: messageId, detail: { reason: category, ...(note ? { note } : {}) } });
      flash(ctx, res, `Message hidden (${category}). It no longer appears in the archive, search, feeds or downloads.`);
    } else {
      await unhideMessage(db, list.id, messageId);
      await recordAudit(db, { actor: actor(req), action: 'message.unhide', list, target: messageId });
      flash(ctx, res, 'Message visible again.');
    }
    const back = field(req, 'back', 1000);
    const messages = adminListUrl(list.address, 'messages');
    res.redirect(303, back.startsWith(messages) ? back : messages);
  });

  return r;
}
