/*
 * What members and owners are told as bounces take their course (docs/delivery.md#bounces): the
 * probe, the disable (the member's first warning), the later warnings, the removal. Queued in the
 * caller's transaction, through the outbox like every notice.
 */

import type { ListRow } from '../db/lists.ts';
import type { MemberRow } from '../db/members.ts';
import type { Queryable } from '../db/pool.ts';
import { roleAddress } from '../mail/address.ts';
import { oneLine } from '../mail/parsed-message.ts';
import { absoluteUrl, unsubscribeUrl } from '../mail/urls.ts';
import { noticeToOwners, sendNotice } from './notices.ts';

type Member = Pick<MemberRow, 'id' | 'email' | 'token'>;

/**
 * The probe: a short notice whose envelope sender names this probe (LIST-bounces+probe-…@). It
 * asks nothing of the member; only its bounce matters.
 */
export async function sendProbe(tx: Queryable, list: ListRow, member: Member, token: string, lastDiagnostic: string | null): Promise<number> {
  return sendNotice(tx, {
    to: member.email,
    list,
    bounceToken: token,
    memberId: member.id,
    subject: `${list.name} mailing list probe message`,
    autoSubmitted: 'auto-generated',
    text: [
      `This is a probe message from ${list.address}. You can ignore it.`,
      '',
      `Mail from the list to ${member.email} has bounced several times lately, so this message checks`,
      'whether the address still works. If this message reaches you, nothing more happens: you do',
      'not need to do anything to stay a member.',
      ...(lastDiagnostic ? ['', 'The last bounce said:', '', `    ${quoted(lastDiagnostic)}`] : []),
      '',
      `Questions go to the list's owners: ${roleAddress(list.address, 'owner')}`,
    ].join('\n'),
  });
}

/**
 * To a disabled member: why, how to turn delivery back on, and when they will be removed. The
 * first one announces the disable; `warningsSent` counts this one.
 */
export async function tellDisabled(tx: Queryable, list: ListRow, member: Member, publicUrl: string, warningsSent: number, first: boolean): Promise<void> {
  const left = Math.max(0, list.bounce_warnings - warningsSent);
  const removal = new Date(Date.now() + (left + 1) * list.bounce_warning_interval_days * 86_400_000);
  await sendNotice(tx, {
    to: member.email,
    list,
    subject: `Your delivery from ${list.address} is disabled`,
    text: [
      first
        ? `Mail from ${list.address} to ${member.email} kept bouncing, so delivery to this address has been turned off.`
        : `Delivery from ${list.address} to ${member.email} is still turned off, because mail to it bounced.`,
      'You are still a member of the list.',
      '',
      'To turn delivery back on, open this link and choose "Re-enable delivery":',
      '',
      `    ${absoluteUrl(publicUrl, unsubscribeUrl(member.token))}`,
      '',
      `or send a message with "subscribe" to ${roleAddress(list.address, 'request')}.`,
      '',
      list.bounce_warnings > 0
        ? `This is reminder ${warningsSent} of ${list.bounce_warnings}. Unless delivery is turned back on, you will be removed from the list on ${removal.toISOString().slice(0, 10)}.`
        : 'Unless delivery is turned back on very soon, you will be removed from the list.',
    ].join('\n'),
  });
}

export async function tellRemoved(tx: Queryable, list: ListRow, member: Member): Promise<void> {
  await sendNotice(tx, {
    to: member.email,
    list,
    subject: `You have been removed from ${list.address}`,
    text: [
      `Mail from ${list.address} to ${member.email} bounced, delivery was turned off, and the reminders`,
      'went unanswered, so this address has been removed from the list.',
      '',
      `To join again, send a message with "subscribe" to ${roleAddress(list.address, 'request')}.`,
    ].join('\n'),
  });
}

export async function tellOwnersDisabled(tx: Queryable, list: ListRow, member: MemberRow, reason: string, diagnostic: string | null): Promise<number> {
  return noticeToOwners(tx, list, `${member.email}'s delivery from ${list.address} disabled by bounces`, [
    `Delivery to ${member.email} has been turned off: ${reason}.`,
    '',
    `Its bounce score had reached ${round(member.bounce_score)} (the list probes at ${list.bounce_threshold}), so a probe was`,
    'sent to the address, and the probe bounced too.',
    ...(diagnostic ? ['', 'The last bounce said:', '', `    ${quoted(diagnostic)}`] : []),
    '',
    list.bounce_warnings > 0
      ? `The member is told how to turn delivery back on, ${list.bounce_warnings} time(s) ${list.bounce_warning_interval_days} day(s) apart, and removed from the list after that.`
      : 'The list sends no reminders (bounce_warnings = 0): the member will be removed from the list at once.',
    'You can re-enable the member in the web panel (Members).',
  ].join('\n'));
}

export async function tellOwnersRemoved(tx: Queryable, list: ListRow, member: MemberRow): Promise<number> {
  return noticeToOwners(tx, list, `${member.email} removed from ${list.address} after bounces`, [
    `${member.email} has been removed from ${list.address}.`,
    '',
    `Delivery to the address was turned off on ${member.disabled_at ? member.disabled_at.toISOString().slice(0, 10) : 'an earlier day'} (${member.disabled_reason ?? 'bounces'}),`,
    `and ${member.bounce_warnings_sent} reminder(s) went unanswered.`,
  ].join('\n'));
}

/**
 * A remote server's words, quoted on one line: whoever sends a DSN writes them. The shared
 * oneLine() makes controls spaces (C1 ones too, NEL among them) and drops bidirectional overrides,
 * which would reorder the notice's text after them; white space runs are one space.
 */
function quoted(text: string): string {
  return oneLine(text).replace(/\s+/g, ' ').trim().slice(0, 500);
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
