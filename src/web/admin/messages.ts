import { Router } from 'express';
import { listMessagesForModeration } from '../../db/message-admin.ts';
import { HIDE_REASONS, hideMessage, unhideMessage } from '../../core/hidden-messages.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash } from '../session.ts';
import { actor, listAccessOf, requireList } from '../auth/guards.ts';
import { field, oneOf, positiveInt, query } from './form.ts';
import { adminListUrl } from '../../mail/urls.ts';

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
    if (req.path.endsWith('/hide')) {
      const category = oneOf('Reason', field(req, 'reason'), HIDE_REASONS);
      const note = field(req, 'note', 500);
      await hideMessage(db, list, messageId, { category, note, actor: actor(req) });
      flash(ctx, res, `Message hidden (${category}). It no longer appears in the archive, search, feeds or downloads.`);
    } else {
      const shown = await unhideMessage(db, list, messageId, { actor: actor(req) });
      flash(ctx, res, shown ? 'Message visible again.' : 'That message was not hidden: nothing changed.');
    }
    const back = field(req, 'back', 1000);
    const messages = adminListUrl(list.address, 'messages');
    res.redirect(303, back.startsWith(messages) ? back : messages);
  });

  return r;
}
