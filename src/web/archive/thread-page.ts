/*
 * /lists/LIST/thread/ID: a thread as an outline first (every message: subject where it changes,
 * author, date, at its depth, linked to its body), then the bodies, BODIES_PER_PAGE a page
 * (?page=). Paging rather than folding: a fold (<details>) would still send and render all 300
 * bodies of a 300-message thread; a page sends 50, so the page stays small and fast and each
 * page is cached on its own (the page cache and a cache in front already key on ?page=). The
 * outline links to messages on other pages with their page (?page=K#mID). Each reply says which
 * message it answers, with a link to that one's anchor.
 *
 * Anchors are the message's row id (#m123): they do not move when replies arrive, as a
 * position would.
 */

import type { Request, Response } from 'express';
import { movedThread, threadTree, type ThreadEntry } from '../../db/archive.ts';
import { NotFound } from '../../errors.ts';
import { renderText } from '../../mail/render-body.ts';
import { messageUrl, threadMboxUrl, threadUrl, listUrl } from '../../mail/urls.ts';
import type { WebContext } from '../context.ts';
import { viewerOf } from '../viewer.ts';
import { readableList } from './access.ts';
import { pageLink, pageParam, pager, sendPage } from './http.ts';
import { authorName, shownSubject } from './present.ts';
import { listKey, threadKey } from './cache-keys.ts';
import { outlineHtml } from './thread-outline.ts';

export const BODIES_PER_PAGE = 50;
/** The outline of a longer thread is shown this many messages at a time (a multiple of BODIES_PER_PAGE). */
export const OUTLINE_SPAN = 1000;
/** Deeper replies are indented no further; their depth is shown as a number. */
export const MAX_INDENT = 8;

/** A subject without its reply and forward prefixes, to tell whether a reply changed it. */
function baseSubject(s: string): string {
  return s.replace(/^(\s*(re|fwd?|aw|sv|vs)(\[\d+\])?\s*:\s*)+/i, '').trim().toLowerCase();
}

export async function threadPage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const obfuscate = !viewer;
  const db = ctx.db.readPool;
  const list = await readableList(db, viewer, String(req.params.list));
  const threadId = Number(req.params.thread);
  const page = pageParam(req);
  const bodyFrom = (page - 1) * BODIES_PER_PAGE;
  const outlineFrom = Math.floor(bodyFrom / OUTLINE_SPAN) * OUTLINE_SPAN;
  const entries = await threadTree(db, list.id, threadId, { limit: OUTLINE_SPAN, offset: outlineFrom, bodyFrom, bodyTo: bodyFrom + BODIES_PER_PAGE });
  const { key, last_modified: lastModified } = list;
  if (entries.length === 0 || !entries.some((e) => e.body !== null)) {
    const moved = page === 1 ? await movedThread(db, list.id, threadId) : null;
    if (moved) return res.redirect(301, threadUrl(key, moved));
    throw new NotFound('There is no such thread in this list.', 'no_such_thread');
  }
  const total = entries[0].total;
  const byId = new Map(entries.map((e) => [e.id, e]));
  const pageOf = (pos: number) => Math.ceil(pos / BODIES_PER_PAGE);
  // A message's anchor, from this page: on it, or on the page that holds its body.
  const anchor = (id: number, pos: number) => `${pageOf(pos) === page ? '' : pageLink(req, pageOf(pos))}#m${id}`;
  const author = (e: ThreadEntry) => authorName(e.from_name, e.from_email, obfuscate);
  const outline = entries.map((e) => {
    const parent = e.parent !== null ? byId.get(e.parent) : undefined;
    return {
      id: e.id,
      href: anchor(e.id, e.pos),
      here: pageOf(e.pos) === page,
      // The subject where it changes (the first message's, or a reply that renamed the thread).
      subject: !parent || baseSubject(parent.subject) !== baseSubject(e.subject) ? shownSubject(e.subject, obfuscate) : null,
      author: author(e),
      date: e.date,
      indent: Math.min(e.depth, MAX_INDENT),
      depth: e.depth,
    };
  });
  const messages = entries.filter((e) => e.body !== null).map((e) => {
    const parent = e.parent !== null ? byId.get(e.parent) : undefined;
    return {
      id: e.id,
      pos: e.pos,
      href: messageUrl(e.message_id),
      subject: shownSubject(e.subject, obfuscate),
      author: author(e),
      date: e.date,
      depth: Math.min(e.depth, 12),
      realDepth: e.depth,
      hasAttachments: e.has_attachments,
      truncated: e.body_truncated,
      body: renderText(e.body!, { obfuscate }),
      // A parent outside the outline's window (threads of over OUTLINE_SPAN messages): its permalink.
      inReplyTo: parent ? { href: anchor(parent.id, parent.pos), author: author(parent) }
        : e.parent_message_id ? { href: messageUrl(e.parent_message_id), author: 'an earlier message' } : null,
    };
  });
  sendPage(ctx, req, res, 'archive/thread.njk', {
    title: shownSubject(entries[0].pos === 1 ? entries[0].subject : messages[0].subject, obfuscate),
    list,
    base: listUrl(key),
    threadId,
    mbox: threadMboxUrl(key, threadId),
    total,
    outline: outlineHtml(outline, MAX_INDENT),
    outlinePartial: total > entries.length ? { from: entries[0].pos, to: entries[entries.length - 1].pos } : null,
    messages,
    first: bodyFrom + 1,
    last: bodyFrom + messages.length,
    pager: pager(req, page, total, BODIES_PER_PAGE),
  }, { restricted: list.archive !== 'public', lastModified, keys: [listKey(list.id), threadKey(threadId)] });
}
