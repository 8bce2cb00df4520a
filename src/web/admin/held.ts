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
import { discardHeldFrom, getHeld, moderate, type ModerationAction } from '../../core/hold.ts';
import { addSenderRule, listSenderRules, removeSenderRule, senderKey } from '../../core/sender-rules.ts';
import { heldAmong, heldFromSender, heldPage, type HeldListRow } from '../../db/held.ts';
import { field, fields, oneOf, positiveInt, query } from './form.ts';
import { confirmPage } from './confirm.ts';
import { heldPreview } from './held-preview.ts';
import { adminListUrl } from '../../mail/urls.ts';
import { parseDays } from '../../days.ts';

const ACTIONS = ['approve', 'reject', 'discard', 'approve-allow', 'discard-ban', 'discard-ban-domain'] as const;
type Action = (typeof ACTIONS)[number];
/** What a moderator confirms on a page of its own before it happens (approve and reject do not). */
const DESTRUCTIVE = new Set<Action>(['discard', 'discard-ban', 'discard-ban-domain']);
const PAGE_SIZE = 50;
/** How many of the posts an action will take the confirmation page lists. */
const SHOWN = 50;

const DONE: Record<Action, string> = {
  approve: 'approved',
  reject: 'rejected (the sender was told why)',
  discard: 'discarded',
  'approve-allow': 'approved, and their senders will no longer be held',
  'discard-ban': 'discarded, and their senders are banned',
  'discard-ban-domain': 'discarded, with every post held from their domains, and those domains are banned',
};

const CONFIRM: Partial<Record<Action, { heading: string; consequence: string; button: string }>> = {
  discard: { heading: 'Discard these messages?', consequence: 'They are dropped without a word to their senders, and cannot be brought back.', button: 'Discard' },
  'discard-ban': { heading: 'Discard these messages and ban their senders?', consequence: 'They are dropped without a word, and every later post from these addresses is dropped too, until the ban is removed under Sender rules.', button: 'Discard and ban' },
  'discard-ban-domain': { heading: 'Ban the senders’ whole domains?', consequence: 'Every post held from these domains is dropped without a word, not only the ticked ones, and every later post from any address at them is dropped too, until the ban is removed under Sender rules.', button: 'Ban the domains and discard' },
};

const domainOf = (email: string) => email.slice(email.lastIndexOf('@')).toLowerCase();
const line = (h: HeldListRow) => `${h.from_email} — ${h.subject || '(no subject)'}`;

/** The moderation queue of held posts: the list, a safe preview, and the decisions. */
export function heldRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const moderator = requireList(ctx, 'moderator');

  r.get('/admin/lists/:list/held', moderator, async (req, res) => {
    const { list } = listAccessOf(res);
    const page = positiveInt(query(req, 'page'), 1);
    const [{ rows, total }, decisions, rules] = await Promise.all([
      heldPage(db, list.id, PAGE_SIZE, (page - 1) * PAGE_SIZE),
      recentAudit(db, { listId: list.id, actionPrefix: 'held.', limit: 15 }),
      listSenderRules(db, list.id),
    ]);
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    // Past the end (the queue shrank since the link was made): the last page there is.
    if (page > pages) return res.redirect(303, pageUrl(list.address, pages));
    const held = rows.map((h) => ({ ...h, from: h.from_email }));
    render(ctx.views, req, res, 'admin/held.njk', {
      title: `Held messages · ${list.address}`, tab: 'held', held, total, page, pages, first: (page - 1) * PAGE_SIZE + 1,
      prev: page > 1 ? pageUrl(list.address, page - 1) : null, next: page < pages ? pageUrl(list.address, page + 1) : null,
      decisions: auditLines(decisions), rules, now: new Date(),
    });
  });

  r.get('/admin/lists/:list/held/:id', moderator, async (req, res) => {
    const { list } = listAccessOf(res);
    const held = await getHeld(db, positiveInt(String(req.params.id), 0));
    if (!held || held.list_id !== list.id) throw new NotFound('That message is no longer in the queue.');
    render(ctx.views, req, res, 'admin/held-message.njk', { title: `Held: ${held.subject || '(no subject)'}`, tab: 'held', held,
      sender: held.from_email.toLowerCase(), senderDomain: held.from_email.includes('@') ? domainOf(held.from_email) : null, preview: await heldPreview(held.raw, held.checks) });
  });

  r.post('/admin/lists/:list/held', moderator, requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const action = oneOf('Action', field(req, 'action'), ACTIONS);
    // "Select all on this page" is a checkbox the server reads: the page lists its ids in page_ids.
    const picked = field(req, 'all') === '1' ? fields(req, 'page_ids') : fields(req, 'ids');
    const ids = [...new Set(picked.map((v) => positiveInt(v, 0)).filter((n) => n > 0))];
    const reason = field(req, 'reason', 2000);
    const page = positiveInt(field(req, 'page'), 1);
    const back = pageUrl(list.address, page);
    if (ids.length === 0) {
      flash(ctx, res, 'Tick at least one message first.', 'error');
      return res.redirect(303, back);
    }
    if (DESTRUCTIVE.has(action)) {
      // Only posts of this list still held are shown, confirmed and acted on.
      const posts = await heldAmong(db, list.id, ids);
      if (posts.length === 0) {
        flash(ctx, res, 'Those messages were already handled or are not in this queue.', 'error');
        return res.redirect(303, back);
      }
      if (field(req, 'confirm') !== '1') {
        const text = CONFIRM[action]!;
        const domains = [...new Set(posts.map((p) => domainOf(p.from_email)))];
        return confirmPage(ctx, req, res, {
          title: `Confirm · ${list.address}`, tab: 'held', ...text,
          consequence: action === 'discard-ban-domain' ? `${text.consequence} Domains: ${domains.join(', ')}.` : text.consequence,
          count: posts.length, items: posts.slice(0, SHOWN).map(line), more: Math.max(0, posts.length - SHOWN),
          action: adminListUrl(list.address, 'held'), cancel: back,
          hidden: [['action', action], ['reason', reason], ['page', String(page)], ...posts.map((p) => ['ids', String(p.id)] as [string, string])],
        });
      }
      if (action === 'discard-ban-domain') {
        let done = 0;
        const domains = [...new Set(posts.map((p) => domainOf(p.from_email)))];
        for (const d of domains) done += (await discardHeldFrom(db, list, d, { actor: actor(req), ban: true, reason })).discarded.length;
        flash(ctx, res, `${done} message${done === 1 ? '' : 's'} discarded; banned ${domains.join(', ')}.`);
        return res.redirect(303, back);
      }
    }
    let done = 0;
    const skipped: string[] = [];
    for (const id of ids) {
      const base: ModerationAction = action === 'approve-allow' ? 'approve' : action === 'discard-ban' || action === 'discard-ban-domain' ? 'discard' : action;
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
    res.redirect(303, back);
  });

  // A flood: every post still held from one address or a whole @domain, with or without a ban.
  r.post('/admin/lists/:list/held/sender', moderator, requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const action = oneOf('Action', field(req, 'action'), ['discard-sender', 'discard-ban-sender'] as const);
    const ban = action === 'discard-ban-sender';
    const back = adminListUrl(list.address, 'held');
    let sender: string;
    try {
      sender = senderKey(field(req, 'sender', 254));
    } catch (err) {
      if (!(err instanceof InvalidInput)) throw err;
      flash(ctx, res, err.message, 'error');
      return res.redirect(303, back);
    }
    if (field(req, 'confirm') !== '1') {
      const { rows, total } = await heldFromSender(db, list.id, sender, SHOWN);
      if (total === 0 && !ban) {
        flash(ctx, res, `Nothing is held from ${sender}.`, 'error');
        return res.redirect(303, back);
      }
      const who = sender.startsWith('@') ? `any address at ${sender.slice(1)}` : sender;
      return confirmPage(ctx, req, res, {
        title: `Confirm · ${list.address}`, tab: 'held', count: total, items: rows.map(line), more: Math.max(0, total - rows.length),
        heading: ban ? `Ban ${sender} and discard all held from it?` : `Discard all held from ${sender}?`,
        consequence: `${total} held message${total === 1 ? '' : 's'} from ${who} ${total === 1 ? 'is' : 'are'} dropped without a word (and any that arrive before you confirm).${ban ? ` Every later post from ${who} is dropped too, until the ban is removed under Sender rules.` : ''}`,
        button: ban ? `Ban ${sender} and discard` : `Discard all from ${sender}`,
        action: adminListUrl(list.address, 'held/sender'), cancel: back, hidden: [['action', action], ['sender', sender]],
      });
    }
    const { discarded } = await discardHeldFrom(db, list, sender, { actor: actor(req), ban });
    flash(ctx, res, `${discarded.length} message${discarded.length === 1 ? '' : 's'} from ${sender} discarded${ban ? `; ${sender} is banned` : ''}.`);
    res.redirect(303, back);
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
        // As the command line and the API take it: a typo ("-1", "1.5", "9e9") is no rule for ever.
        const days = parseDays(field(req, 'days'), 'Days');
        const rule = await addSenderRule(db, list, email, kind, { days, actor: actor(req) });
        flash(ctx, res, `${rule.email} ${kind === 'allow' ? 'is always accepted' : 'is banned'}${days ? ` for ${days} day${days === 1 ? '' : 's'}` : ''}.`);
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

function pageUrl(address: string, page: number): string {
  return adminListUrl(address, page > 1 ? `held?page=${page}` : 'held');
}
