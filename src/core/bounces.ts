/*
 * Bounces: DSNs arriving at LIST-bounces+TOKEN@ (the token names the member), and permanent
 * failures met while sending. Hard and soft bounces raise the member's score (which decays over
 * time); past the list's threshold the member is disabled and told how to turn delivery back on.
 * Policy rejections (5.7.x, spam, DMARC), delay warnings and auto-replies (out of office, vacation)
 * are recorded but never counted: only a delivery report (src/mail/bounce.ts) can cost a member.
 */

import type pg from 'pg';
import { insertBounce, raiseBounceScore } from '../db/bounces.ts';
import { getListById, type ListRow } from '../db/lists.ts';
import { disableMember, findMemberById, findMemberByToken, type MemberRow } from '../db/members.ts';
import { countBounceHourly } from '../db/outbox.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { roleAddress } from '../mail/address.ts';
import { readBounce, type BounceReport } from '../mail/bounce.ts';
import { BOUNCE_HALF_LIFE_DAYS, BOUNCE_WEIGHT, classifyText } from '../mail/bounce-rules.ts';
import type { ParsedMessage } from '../mail/parse.ts';
import { absoluteUrl, unsubscribeUrl } from '../mail/urls.ts';
import { sendNotice } from './notices.ts';
import type { CoreSettings } from './settings.ts';

export async function handleBounceMail(pool: pg.Pool, list: ListRow, token: string | undefined, raw: Buffer, parsed: ParsedMessage, log: Logger, settings: Pick<CoreSettings, 'publicUrl'>): Promise<void> {
  const member = token ? await findMemberByToken(pool, token) : null;
  const ours = member && member.list_id === list.id ? member : null;
  const reports = readBounce({ raw, text: parsed.text, headers: parsed.headers });
  // One DSN may list several recipients; the member's own address, or the first failure, speaks for it.
  const report = reports.find((r) => r.failed && ours && r.recipient === ours.email) ?? reports.find((r) => r.failed) ?? reports[0];
  // Auto-replies, delay warnings and stray mail are recorded too, as not counted: the panel shows
  // why a member's score did not move.
  await withTransaction(pool, (tx) => recordBounce(tx, list, ours, 'dsn', report, log, settings.publicUrl));
}

/**
 * A 5xx answer while delivering a copy to a member: the same scoring as a DSN when the recipient
 * was refused; a refusal of our sender or of the content (`aboutRecipient` false) never counts.
 */
export async function recordDeliveryFailure(pool: pg.Pool, settings: Pick<CoreSettings, 'publicUrl'>, memberId: number | null, listId: number, recipient: string, response: string, log: Logger, aboutRecipient = true): Promise<void> {
  const status = /\b([45]\.\d{1,3}\.\d{1,3})\b/.exec(response)?.[1] ?? null;
  const classified = classifyText(status, response);
  const { kind, category } = aboutRecipient ? classified : { kind: 'policy' as const, category: 'sender_or_content' };
  await withTransaction(pool, async (tx) => {
    const list = await getListById(tx, listId);
    const member = memberId === null ? null : await findMemberById(tx, memberId);
    await recordBounce(tx, list, member, 'smtp', { recipient, action: 'failed', status, diagnostic: response, kind, category, failed: true }, log, settings.publicUrl);
  });
}

async function recordBounce(tx: Queryable, list: ListRow, member: MemberRow | null, source: 'dsn' | 'smtp', report: BounceReport, log: Logger, publicUrl: string) {
  const weight = report.failed ? BOUNCE_WEIGHT[report.kind] : 0;
  const counted = member !== null && member.status === 'active' && weight > 0;
  let scoreAfter: number | null = member?.bounce_score ?? null;
  if (counted) {
    const score = await raiseBounceScore(tx, member!.id, weight, BOUNCE_HALF_LIFE_DAYS);
    scoreAfter = score?.score ?? null;
    // Bounces seconds apart decay by a hair: 2.99999 after three hard bounces is three.
    if (score && score.score + 0.001 >= score.threshold && (await disableMember(tx, member!.id, `${report.category}: ${report.diagnostic ?? report.status ?? ''}`.slice(0, 500)))) {
      await tellDisabled(tx, list, member!, publicUrl);
      log.info({ list: list.address, member: member!.email, score: score.score }, 'member disabled by bounces');
    }
  }
  await insertBounce(tx, {
    listId: list.id,
    memberId: member?.id ?? null,
    source,
    recipient: report.recipient ?? member?.email ?? null,
    kind: report.failed ? report.kind : 'unknown',
    category: report.category,
    status: report.status,
    diagnostic: report.diagnostic,
    counted,
    scoreAfter,
  });
  if (report.failed) await countBounceHourly(tx);
  log.info({ list: list.address, member: member?.email, kind: report.kind, category: report.category, counted }, 'bounce recorded');
}

async function tellDisabled(tx: Queryable, list: ListRow, member: MemberRow, publicUrl: string) {
  await sendNotice(tx, {
    to: member.email,
    list,
    subject: `Your delivery from ${list.address} is disabled`,
    text: [
      `Mail from ${list.address} to ${member.email} kept bouncing, so delivery to this address has been turned off.`,
      'You are still a member of the list.',
      '',
      'To turn delivery back on, open this link and choose "Re-enable delivery":',
      '',
      `    ${absoluteUrl(publicUrl, unsubscribeUrl(member.token))}`,
      '',
      `or send a message with "subscribe" to ${roleAddress(list.address, 'request')}.`,
    ].join('\n'),
  });
}
