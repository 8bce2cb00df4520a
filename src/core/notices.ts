/*
 * Mail we send on our own account (confirmations, held-post and bounce notices, login links),
 * always through the outbound queue: the worker delivers it with retries like any post. Queued
 * in the caller's transaction when `db` is one, so a notice exists only if the change it
 * announces was committed.
 */

import type pg from 'pg';
import type { CoreSettings } from './settings.ts';
import type { ListRow } from '../db/lists.ts';
import { getListById, listModerators, listOwners } from '../db/lists.ts';
import { enqueueMail, insertOutboundMail, notifyOutbox } from '../db/outbox.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { claimSizeRefusal, refusedPost } from '../db/size-refusals.ts';
import { InvalidInput } from '../errors.ts';
import { normalizeEmail, NOTICE_BOUNCE_TOKEN, roleAddress, verpAddress } from '../mail/address.ts';
import { composeText } from '../mail/compose.ts';
import { displayName } from '../mail/header-block.ts';
import { ownerForward } from '../mail/list-copy.ts';
import { oneLine } from '../mail/parsed-message.ts';

export type Notice = NoticeContent & (
  /** the list the notice is about: it then comes from LIST-request@ and bounces to the list */
  | { list: ListRow; site?: undefined }
  /** a site notice that belongs to no list (login links): from NOTICE_FROM, on MAIL_DOMAIN */
  | { list?: undefined; site: Pick<CoreSettings, 'noticeFrom' | 'mailDomain'> }
);

interface NoticeContent {
  to: string;
  subject: string;
  text: string;
  from?: string;
  replyTo?: string;
  inReplyTo?: string | null;
  /** extra header lines ("Name: value") */
  headers?: string[];
  autoSubmitted?: 'auto-generated' | 'auto-replied';
  /**
   * The VERP token of a list notice's envelope sender (NOTICE_BOUNCE_TOKEN when not given): a
   * bounce probe carries its own, so that its bounce names it; `memberId` goes with it.
   */
  bounceToken?: string;
  memberId?: number;
}

/** Queues one mail; returns its outbox row id. */
export async function sendNotice(db: Queryable, n: Notice): Promise<number> {
  const to = normalizeEmail(n.to);
  if (!to) throw new InvalidInput(`cannot send a notice to "${n.to}": not an e-mail address`, 'invalid_email');
  const from = n.from ?? (n.list ? listSender(n.list) : n.site.noticeFrom);
  const raw = composeText({
    from,
    to,
    subject: n.subject,
    text: n.text,
    replyTo: n.replyTo,
    headers: n.headers,
    inReplyTo: n.inReplyTo,
    autoSubmitted: n.autoSubmitted,
    domain: n.list ? n.list.domain : n.site.mailDomain,
  });
  const mailId = await insertOutboundMail(db, raw);
  const envelopeFrom = n.list ? verpAddress(n.list.address, n.bounceToken ?? NOTICE_BOUNCE_TOKEN) : n.site.noticeFrom;
  const [id] = await enqueueMail(db, 'notice', n.list?.id ?? null, mailId, [{ email: to, envelopeFrom, memberId: n.memberId }]);
  await notifyOutbox(db);
  return id;
}

/** `"dev list" <dev-request@lists.example.org>`: where list notices come from. */
export function listSender(list: ListRow): string {
  return `${displayName(`${list.name} list`)} <${roleAddress(list.address, 'request')}>`;
}

/**
 * Mail for LIST-owner@ goes to every owner, as it arrived (an X-Loop line on top stops it from
 * coming round again if an owner's address leads back here), less what claims to be our own
 * verdict on it (ownerForward: Authentication-Results under `authservId`, SMTP_HELO_NAME). The
 * list does not sign it (isOwnerForward): it is a stranger's message, not the list's.
 */
export async function forwardToOwners(db: Queryable, list: ListRow, arrived: Buffer, authservId: string): Promise<number> {
  const owners = await listOwners(db, list.id);
  if (owners.length === 0) return 0;
  const ownerAddress = roleAddress(list.address, 'owner');
  const mailId = await insertOutboundMail(db, ownerForward(arrived, authservId, ownerAddress));
  const envelopeFrom = verpAddress(list.address, NOTICE_BOUNCE_TOKEN);
  const ids = await enqueueMail(db, 'notice', list.id, mailId, owners.map((email) => ({ email, envelopeFrom })));
  await notifyOutbox(db);
  return ids.length;
}

/** Sends the same notice to each owner of a list. */
export async function noticeToOwners(db: Queryable, list: ListRow, subject: string, text: string): Promise<number> {
  const owners = await listOwners(db, list.id);
  for (const to of owners) await sendNotice(db, { to, subject, text, list, from: `${displayName(`${list.name} list`)} <${roleAddress(list.address, 'owner')}>` });
  return owners.length;
}

/**
 * Sends the same notice to each owner and moderator of a list (held posts: what moderators act on),
 * from LIST-owner@ like the owners' notices; `replyTo` is where a plain reply goes.
 */
export async function noticeToModerators(db: Queryable, list: ListRow, subject: string, text: string, opts: { replyTo?: string } = {}): Promise<number> {
  const moderators = await listModerators(db, list.id);
  for (const to of moderators) {
    await sendNotice(db, { to, subject, text, list, replyTo: opts.replyTo, from: `${displayName(`${list.name} list`)} <${roleAddress(list.address, 'owner')}>` });
  }
  return moderators.length;
}

/**
 * Copies of a post were refused for their size (552 5.3.4): the post was archived, but the list's
 * headers and footer made each copy bigger than the relay or a member's server takes. The owners
 * and the author are told once per post and list (claimSizeRefusal is the guard, in the same
 * transaction as the notices: several workers, or one retrying, tell them once). Returns whether
 * this call sent the notices.
 */
export async function tellPostTooBig(pool: pg.Pool, listId: number, messageId: number, response: string): Promise<boolean> {
  return withTransaction(pool, (tx) => tellPostTooBigIn(tx, listId, messageId, response));
}

/** tellPostTooBig in the caller's transaction (core/refusals.ts, with the marks of the refused rows). */
export async function tellPostTooBigIn(tx: Queryable, listId: number, messageId: number, response: string): Promise<boolean> {
  if (!(await claimSizeRefusal(tx, listId, messageId, response))) return false;
  const list = await getListById(tx, listId);
  const post = await refusedPost(tx, messageId);
  if (!post) return true;
  const what = `"${oneLine(post.subject) || '(no subject)'}" (${post.size} bytes, Message-ID <${post.message_id}>)`;
  const owners = await listOwners(tx, list.id);
  await noticeToOwners(tx, list, `A post to ${list.address} was too big to deliver`, [
    `The post ${what} from ${post.from_email || 'an unknown sender'} was archived, but its copies were refused as too big to deliver after the list's headers were added:`,
    '',
    `    ${response}`,
    '',
    'A copy is bigger than its post by the list\'s headers (and footer). When the relay is a Postfix, give the',
    'listener listkeeper sends to a message_size_limit with a margin over SMTP_MAX_SIZE (see "Behind Postfix"',
    'in docs/operations.md), or lower the list\'s max_message_size so that such posts are held instead.',
  ].join('\n'));
  const author = normalizeEmail(post.from_email);
  if (author && !owners.includes(author)) {
    await sendNotice(tx, {
      to: author,
      list,
      subject: `Your message to ${list.address} was too big to deliver`,
      inReplyTo: post.message_id,
      autoSubmitted: 'auto-replied',
      text: [
        `Your message ${what} to ${list.address} was archived, but it could not be delivered to the list's members:`,
        'it was too big to deliver after the list\'s headers were added.',
        '',
        `    ${response}`,
        '',
        'Please send it again smaller, for example with a link in place of a large attachment.',
      ].join('\n'),
    });
  }
  return true;
}
