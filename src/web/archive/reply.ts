/*
 * Reply from the web: a logged-in active member of the list writes a reply on a message page
 * (POST /message-id/reply/MSGID, CSRF-checked). It becomes the mail their own client would send
 * (mail/web-reply.ts) and goes through receive(), the path of mail arriving over SMTP, so the
 * list's moderation rules decide: archived, held for a moderator, or refused. Everyone else is
 * offered a mailto: link with the reply's headers (RFC 6068). The From is one of the account's
 * verified addresses subscribed to the list: the member picks which when there are several.
 */

import type { Request, Response } from 'express';
import { receive } from '../../core/inbound.ts';
import type { MessageCopy } from '../../db/archive-messages.ts';
import { findPermalink } from '../../db/archive-messages.ts';
import { getListById } from '../../db/lists.ts';
import { membershipsOn, type MemberRow } from '../../db/members.ts';
import type { Queryable } from '../../db/pool.ts';
import { allowHit } from '../../db/rate-limits.ts';
import { messageReferences, postFate, type PostFate } from '../../db/web-replies.ts';
import { AppError, Forbidden, NotFound } from '../../errors.ts';
import { log } from '../../log.ts';
import { messageIdPath } from '../../mail/message-id.ts';
import { obfuscateText } from '../../mail/obfuscate.ts';
import { messageUrl, threadUrl } from '../../mail/urls.ts';
import { isNewMessageId, newMessageId } from '../../mail/compose.ts';
import { composeReply, mailtoReply, replyReferences, replySubject } from '../../mail/web-reply.ts';
import type { WebContext } from '../context.ts';
import { render } from '../render.ts';
import { viewerOf, type Viewer } from '../viewer.ts';
import { readerOf } from './access.ts';
import { routeMessageId } from './http.ts';
import { resolvePermalink } from './permalink.ts';

/** Replies one account may send from the web in an hour. */
export const REPLIES_PER_HOUR = 10;
/** The longest reply text taken, in UTF-8 bytes. */
export const MAX_REPLY_BYTES = 64 * 1024;

/** Where the form posts to. */
export function replyUrl(messageId: string): string {
  return `/message-id/reply/${messageIdPath(messageId)}`;
}

/** The viewer's active subscriptions to a list, by any of their verified addresses (the primary first). */
async function activeMemberships(db: Queryable, viewer: Viewer, listId: number): Promise<MemberRow[]> {
  return (await membershipsOn(db, listId, viewer.emails)).filter((m) => m.status === 'active');
}

/** What a message page offers this reader: the form to an active member of the list, else a mailto: link. */
export async function replyOffer(db: Queryable, viewer: Viewer | null, list: MessageCopy, m: { message_id: string; subject: string }) {
  // The subject as the page shows it: an address in it is no less readable percent-encoded in a link.
  const mailto = mailtoReply(list.address, viewer ? m.subject : obfuscateText(m.subject), m.message_id);
  const members = viewer ? await activeMemberships(db, viewer, list.list_id) : [];
  if (members.length > 0) {
    return { kind: 'form' as const, action: replyUrl(m.message_id), list: list.key, subject: replySubject(m.subject), mailto, maxBytes: MAX_REPLY_BYTES, from: members.map((x) => x.email), chosen: members[0].email };
  }
  return { kind: 'mailto' as const, mailto };
}

export async function postReply(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  if (!viewer) throw new Forbidden('Log in as a member of the list to reply from the web, or reply by mail.', 'not_logged_in');
  const id = routeMessageId(res);
  const asked = typeof req.body?.list === 'string' ? req.body.list.trim().toLowerCase() : null;
  const pool = ctx.db.pool;
  const found = await findPermalink(pool, id, readerOf(viewer), asked, false);
  const r = resolvePermalink(found.copies, asked, viewer);
  if (r.kind !== 'show' || !found.message) throw new NotFound('There is no message with this Message-ID to reply to.', 'no_such_message');
  const m = found.message;
  const copy = r.lists.find((l) => l.list_id === r.listId) ?? r.lists[0];
  const members = await activeMemberships(pool, viewer, copy.list_id);
  if (members.length === 0) throw new Forbidden(`Only active members of ${copy.address} may reply from the web; you can reply by mail.`, 'not_a_member');
  const askedFrom = typeof req.body?.from === 'string' ? req.body.from.trim().toLowerCase() : '';
  const member = askedFrom ? members.find((x) => x.email === askedFrom) : members[0];
  if (!member) throw new Forbidden(`${askedFrom} is not one of your addresses subscribed to ${copy.address}.`, 'not_a_member');

  const text = typeof req.body?.body === 'string' ? req.body.body : '';
  const page = (vars: Record<string, unknown>, status: number) => render(ctx.views, req, res, 'archive/reply.njk', {
    title: replySubject(m.subject),
    parent: { subject: m.subject, href: messageUrl(m.message_id, r.shared ? copy.key : null) },
    form: { action: replyUrl(m.message_id), list: copy.key, subject: replySubject(m.subject), maxBytes: MAX_REPLY_BYTES, from: members.map((x) => x.email), chosen: member.email },
    listAddress: copy.address,
    text,
    ...vars,
  }, status);
  const sent = (fate: PostFate, messageId: string) => render(ctx.views, req, res, 'archive/reply-sent.njk', {
    title: fate === 'archived' ? 'Reply posted' : fate === 'held' ? 'Reply held for a moderator' : 'Reply not posted',
    fate,
    listAddress: copy.address,
    parentHref: messageUrl(m.message_id, r.shared ? copy.key : null),
    replyHref: messageUrl(messageId, r.shared ? copy.key : null),
    threadHref: threadUrl(copy.key, m.thread_id),
  });
  // A form shown again after a failure carries the reply's Message-ID: sent again, a reply the
  // first try did post (its answer lost) is reported, not posted twice.
  const given: unknown = req.body?.reply_id;
  const again = isNewMessageId(given, ctx.cfg.mailDomain) ? given : null;
  if (again) {
    const fate = await postFate(pool, copy.list_id, again);
    if (fate !== 'not posted') return sent(fate, again);
  }
  if (text.trim() === '') return page({ error: 'The reply is empty: write something first.' }, 400);
  if (Buffer.byteLength(text) > MAX_REPLY_BYTES) return page({ error: `The reply is longer than ${MAX_REPLY_BYTES / 1024} KB; shorten it or send it by mail.` }, 413);
  if (!(await allowHit(pool, `web-reply:account:${viewer.accountId}`, REPLIES_PER_HOUR, 3600))) {
    return page({ error: `You have sent ${REPLIES_PER_HOUR} replies from the web in the last hour, the most allowed. Wait a while, or reply by mail.` }, 429);
  }

  const messageId = again ?? newMessageId(ctx.cfg.mailDomain);
  const replyLog = log.child({ via: 'web', account: viewer.accountId });
  let fate: PostFate;
  try {
    const list = await getListById(pool, copy.list_id);
    const { raw } = composeReply({
      fromEmail: member.email,
      fromName: member.name ?? undefined,
      to: list.address,
      subject: replySubject(m.subject),
      text,
      parentId: m.message_id,
      references: replyReferences(await messageReferences(pool, m.id), m.message_id),
      domain: ctx.cfg.mailDomain,
      messageId,
    });
    const [failure] = await receive(pool, { envelopeFrom: member.email, client: null, peer: null, recipients: [{ list, role: 'post', address: list.address }], raw, log: replyLog, submittedBy: member.email }, ctx.cfg);
    if (failure) return page({ error: `The reply was not posted: ${failure.message}`, replyId: messageId }, failure.status);
    fate = await postFate(pool, list.id, messageId);
  } catch (err) {
    if (err instanceof AppError) throw err;
    // The database went away part-way: the reply may or may not be in. The member keeps the text
    // and the form keeps the reply's Message-ID, so sending it again posts it once.
    replyLog.error({ err, messageId }, 'reply from the web: not known to be posted');
    return page({ error: 'The reply could not be posted just now. Your text is below: send it again in a moment; it will not be posted twice.', replyId: messageId }, 503);
  }
  replyLog.info({ list: copy.address, messageId, fate }, 'reply from the web');
  sent(fate, messageId);
}
