/*
 * The mail a list writes to a member or a would-be member about their subscription: the welcome,
 * the goodbye and the confirmation request, in the list's own words when it has them
 * (mail/templates.ts), else the built-in ones. Queued in the caller's transaction (notices.ts).
 */

import type { ListRow } from '../db/lists.ts';
import { listKey } from '../db/list-key.ts';
import { findMember } from '../db/members.ts';
import type { Queryable } from '../db/pool.ts';
import { roleAddress } from '../mail/address.ts';
import { listTemplateValues, renderTemplate } from '../mail/templates.ts';
import { absoluteUrl, confirmUrl, unsubscribeUrl } from '../mail/urls.ts';
import { sendNotice } from './notices.ts';

/** The values of the variables every text of this list has (the archive link needs its URL key). */
export async function templateValues(db: Queryable, list: ListRow, publicUrl: string, extra: Record<string, string>): Promise<Record<string, string>> {
  return { ...listTemplateValues(list, await listKey(db, list.id), publicUrl), ...extra };
}

/** Welcomes a new member, unless the list does not welcome (send_welcome). */
export async function welcome(tx: Queryable, list: ListRow, email: string, publicUrl: string): Promise<void> {
  if (!list.send_welcome) return;
  const member = await findMember(tx, list.id, email);
  if (!member) return;
  const unsubscribe = absoluteUrl(publicUrl, unsubscribeUrl(member.token));
  const text = list.template_welcome.trim()
    ? renderTemplate(list.template_welcome, await templateValues(tx, list, publicUrl, { member_email: email, unsubscribe_url: unsubscribe }))
    : [
      `You are now subscribed to ${list.address}${list.description ? ` (${list.description})` : ''}.`,
      '',
      `To post, write to ${list.address}.`,
      `To leave the list, open ${unsubscribe}`,
      `or send a message with "unsubscribe" to ${roleAddress(list.address, 'request')}.`,
    ].join('\n');
  await sendNotice(tx, { to: email, list, subject: `Welcome to ${list.address}`, text });
}

/** Tells a member who left that they did, unless the list does not (send_goodbye). */
export async function goodbye(tx: Queryable, list: ListRow, email: string, publicUrl: string): Promise<void> {
  if (!list.send_goodbye) return;
  const text = list.template_goodbye.trim()
    ? renderTemplate(list.template_goodbye, await templateValues(tx, list, publicUrl, { member_email: email }))
    : [
      `You are no longer subscribed to ${list.address}: ${email} will not get its mail any more.`,
      '',
      `To join again, send a message with "subscribe" to ${roleAddress(list.address, 'request')}.`,
    ].join('\n');
  await sendNotice(tx, { to: email, list, subject: `You have left ${list.address}`, text });
}

/**
 * The confirmation request for joining or leaving: a link and a reply address carry the token.
 * A list's own text (template_confirm) is for joining; it always contains {confirm_url}.
 */
export async function confirmationText(tx: Queryable, list: ListRow, r: { email: string; action: 'subscribe' | 'unsubscribe'; token: string; publicUrl: string; hours: number }): Promise<string> {
  const link = absoluteUrl(r.publicUrl, confirmUrl(r.token));
  if (r.action === 'subscribe' && list.template_confirm.trim()) {
    return renderTemplate(list.template_confirm, await templateValues(tx, list, r.publicUrl, { member_email: r.email, confirm_url: link }));
  }
  return [
    `Someone (perhaps you) asked to ${r.action === 'subscribe' ? 'join' : 'leave'} the mailing list ${list.address} with the address ${r.email}.`,
    '',
    'To confirm, open this link:',
    '',
    `    ${link}`,
    '',
    'or simply reply to this message.',
    '',
    `If you did not ask for this, ignore this message: nothing changes. The link expires in ${r.hours} hours.`,
  ].join('\n');
}
