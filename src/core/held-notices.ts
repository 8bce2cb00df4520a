/*
 * What is mailed about held posts as they arrive: the owners and moderators are told (with links
 * to the queue and to each post, and a reply address per post that moderates it by mail:
 * moderation-mail.ts), and the sender may be told the post awaits a moderator.
 */

import crypto from 'node:crypto';
import { hashToken } from '../auth/credentials.ts';
import { claimHeldNotice, setHeldMailTokens, takeUnnotifiedHeld } from '../db/held.ts';
import type { ListRow } from '../db/lists.ts';
import type { Queryable } from '../db/pool.ts';
import { allowHit } from '../db/rate-limits.ts';
import { mailboxKey, normalizeEmail, roleAddress, splitAddress } from '../mail/address.ts';
import { isAutomatic } from '../mail/commands.ts';
import type { ParsedMessage } from '../mail/parse.ts';
import type { PostChecks } from '../mail/post-checks.ts';
import { renderTemplate } from '../mail/templates.ts';
import { absoluteUrl, adminListUrl } from '../mail/urls.ts';
import { provesFrom, unsureAuth, type Decision } from './moderation-rules.ts';
import { templateValues } from './member-notices.ts';
import { noticeToModerators, sendNotice } from './notices.ts';
import type { CoreSettings } from './settings.ts';
import { mayMailStranger, ownKey, type Requester } from './stranger-mail.ts';
import { oneLine } from '../mail/parsed-message.ts';

/** A new moderation-by-mail token: `mod-` and 128 random bits (MODERATION_TOKEN in mail/commands.ts). */
export function newModerationToken(): string {
  return `mod-${crypto.randomBytes(16).toString('hex')}`;
}

/** `https://…/admin/lists/ADDRESS/held` and `…/held/ID`: the queue and one held post in the panel. */
export function heldQueueUrl(publicUrl: string, list: ListRow): string {
  return absoluteUrl(publicUrl, adminListUrl(list.address, 'held'));
}
export function heldPostUrl(publicUrl: string, list: ListRow, id: number): string {
  return absoluteUrl(publicUrl, adminListUrl(list.address, `held/${id}`));
}

/**
 * Tells the owners and moderators about held posts, at most once per the list's notice interval:
 * the first held post of a quiet list is announced at once; a flood is summed up in the next
 * notice (sent by the delivery worker's maintenance when the interval has passed). Each post gets
 * its token here; a notice about one post has that post's address as Reply-To, so that a plain
 * reply moderates it.
 */
export async function notifyModeratorsOfHeld(tx: Queryable, list: ListRow, settings: Pick<CoreSettings, 'publicUrl'>): Promise<boolean> {
  if (!(await claimHeldNotice(tx, list.id))) return false;
  const held = await takeUnnotifiedHeld(tx, list.id);
  if (held.length === 0) return false;
  const tokens = held.map(() => newModerationToken());
  await setHeldMailTokens(tx, held.map((h) => h.id), tokens.map(hashToken));
  const byMail = tokens.map((t) => roleAddress(list.address, 'confirm', t));
  const lines = held.flatMap((h, i) => [
    `  #${h.id}  ${oneLine(h.from_email)}: ${oneLine(h.subject) || '(no subject)'}`,
    `         ${oneLine(h.reason)}`,
    `         ${heldPostUrl(settings.publicUrl, list, h.id)}`,
    ...(held.length > 1 ? [`         by mail: ${byMail[i]}`] : []),
    '',
  ]);
  const one = held.length === 1;
  await noticeToModerators(tx, list, `${held.length} post${one ? '' : 's'} held for moderation on ${list.address}`, [
    `${one ? 'A post is' : `${held.length} posts are`} waiting for a moderator on ${list.address}:`, '',
    ...lines,
    `The moderation queue: ${heldQueueUrl(settings.publicUrl, list)}`,
    '',
    one
      ? 'To decide by mail, reply to this message with one of these as the first line:'
      : 'To decide one by mail, write to its "by mail" address above with one of these as the first line:',
    '  approve',
    '  reject REASON      (the sender is told the reason)',
    '  discard',
    'Only the list\'s owners and moderators can, from their own address; each address works once.',
    'Or on the command line: listkeeper moderate ID approve|reject|discard',
  ].join('\n'), { replyTo: one ? byMail[0] : undefined });
  return true;
}

/** Rules whose holds never answer the sender: spam, machines, forgeries (and what is only dropped). */
const SILENT_RULES = new Set(['spam', 'automatic', 'authentication', 'loop', 'banned', 'delivery-report']);

/**
 * Whether the sender of a post held by `rule` may be written to about it (held, or rejected by a
 * moderator): not for spam, automatic mail or a forgery, nor when it failed DMARC whatever the list's
 * policy, nor when DMARC could give no verdict at all (a From of more domains than are checked: a
 * p=reject address first among them escaped its check), nor to a null envelope sender. Their From
 * is likely someone else's: a notice would be backscatter to the forged address.
 */
export function answersSender(rule: string, checks: PostChecks | null | undefined, envelopeFrom: string | null): boolean {
  const auth = checks?.auth;
  return !SILENT_RULES.has(rule) && auth?.dmarc !== 'fail' && !(auth && unsureAuth(auth)?.result === 'permerror') && !!envelopeFrom;
}

// One "awaits moderation" reply per mailbox, list and hour: a flood of posts (or of forged
// senders) cannot make the list write to one mailbox more than that. Keyed on the address as
// written, each of bob+1@, bob+2@, … had its own hour, and posts in their names flooded bob@.
const SENDER_NOTICES_PER_HOUR = 1;

export interface HeldArrival {
  list: ListRow;
  heldId: number;
  decision: Decision;
  message: ParsedMessage;
  envelopeFrom: string | null;
  checks?: PostChecks;
  /** PUBLIC_URL, for the archive link of the list's own text (template_held) */
  publicUrl: string;
}

/**
 * Tells the sender of a held post that it awaits a moderator (the list's notify_held_sender,
 * Mailman's respond_to_post_requests), unless the hold was for spam, automatic mail or failed
 * authentication, the post failed DMARC whatever the policy (a forged sender must not get mail),
 * the sender is a machine or one of the list's own addresses, or the rate limit is reached.
 * Returns whether a notice was queued.
 */
export async function tellSenderHeld(tx: Queryable, h: HeldArrival): Promise<boolean> {
  const { list, message } = h;
  if (!list.notify_held_sender || !answersSender(h.decision.rule, h.checks, h.envelopeFrom)) return false;
  if (isAutomatic(message.headers, h.envelopeFrom, message.fromEmail)) return false;
  const to = normalizeEmail(message.fromEmail || h.envelopeFrom || '');
  if (!to) return false;
  const parts = splitAddress(to);
  if (parts?.domain === list.domain && parts.local.startsWith(list.local_part)) return false;
  // A post whose From is proven is the mailbox's own: its notices are not counted with the ones
  // posts forged in its name would spend (stranger-mail.ts).
  const by: Requester = h.checks?.auth && provesFrom(h.checks.auth, to) ? 'itself' : 'stranger';
  if (!(await allowHit(tx, ownKey(`held-notice:${list.id}:${mailboxKey(to)}`, by), SENDER_NOTICES_PER_HOUR, 3600))) return false;
  if (!(await mayMailStranger(tx, to, by))) return false;
  await sendNotice(tx, {
    to,
    list,
    subject: `Your message to ${list.address} awaits moderator approval`,
    inReplyTo: message.messageId,
    autoSubmitted: 'auto-replied',
    text: list.template_held.trim()
      ? renderTemplate(list.template_held, await templateValues(tx, list, h.publicUrl, { member_email: to, subject: message.subject || '(no subject)', reason: h.decision.reason }))
      : [
        `Your message "${oneLine(message.subject) || '(no subject)'}" to ${list.address} is held until a moderator of the list looks at it.`,
        '',
        `Reason: ${oneLine(h.decision.reason)}`,
        '',
        'If it is approved, it goes to the list; if it is rejected, you will be told why.',
        'Other posts you send to the list within the hour are not acknowledged one by one.',
        `To reach the people running the list, write to ${roleAddress(list.address, 'owner')}.`,
      ].join('\n'),
  });
  return true;
}
