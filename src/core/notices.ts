/*
 * Mail we send on our own account (confirmations, held-post and bounce notices, login links),
 * always through the outbound queue: the worker delivers it with retries like any post. Queued
 * in the caller's transaction when `db` is one, so a notice exists only if the change it
 * announces was committed.
 */

import type { CoreSettings } from './settings.ts';
import type { ListRow } from '../db/lists.ts';
import { listOwners } from '../db/lists.ts';
import { enqueueMail, insertOutboundMail, notifyOutbox } from '../db/outbox.ts';
import type { Queryable } from '../db/pool.ts';
import { InvalidInput } from '../errors.ts';
import { normalizeEmail, NOTICE_BOUNCE_TOKEN, roleAddress, verpAddress } from '../mail/address.ts';
import { composeText } from '../mail/compose.ts';
import { displayName } from '../mail/header-block.ts';

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
 * coming round again if an owner's address leads back here).
 */
export async function forwardToOwners(db: Queryable, list: ListRow, raw: Buffer): Promise<number> {
  const owners = await listOwners(db, list.id);
  if (owners.length === 0) return 0;
  const ownerAddress = roleAddress(list.address, 'owner');
  const eol = raw.includes('\r\n') ? '\r\n' : '\n';
  const mailId = await insertOutboundMail(db, Buffer.concat([Buffer.from(`X-Loop: ${ownerAddress}${eol}`), raw]));
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
