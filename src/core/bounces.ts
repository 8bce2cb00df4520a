/*
 * Bounces: DSNs arriving at LIST-bounces+TOKEN@ (the token names the member), and permanent
 * failures met while sending. Hard and soft bounces raise the member's score (which decays over
 * time). At the list's threshold the member is sent a probe (LIST-bounces+probe-TOKEN@): only when
 * the probe bounces too is the member disabled, and the member and the owners are told; warnings
 * and removal follow in maintenance (bounce-warnings.ts). Policy rejections (5.7.x, spam, DMARC),
 * delay warnings and auto-replies (out of office, vacation) are recorded but never counted: only
 * a delivery report (src/mail/bounce.ts) can cost a member.
 */

import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import { findMemberByProbeToken, insertBounce, kindsCountedToday, raiseBounceScore, startProbe } from '../db/bounces.ts';
import { getListById, type ListRow } from '../db/lists.ts';
import { disableMember, findMemberById, findMemberByToken, type MemberRow } from '../db/members.ts';
import { countBounceHourly } from '../db/outbox.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { allowHit } from '../db/rate-limits.ts';
import type { Logger } from '../log.ts';
import { normalizeEmail, PROBE_TOKEN } from '../mail/address.ts';
import { readBounce, type BounceReport } from '../mail/bounce.ts';
import { BOUNCE_HALF_LIFE_DAYS, BOUNCE_WEIGHT, classifyText } from '../mail/bounce-rules.ts';
import type { ParsedMessage } from '../mail/parse.ts';
import { sendProbe, tellDisabled, tellOwnersDisabled } from './bounce-notices.ts';
import type { CoreSettings } from './settings.ts';

export async function handleBounceMail(pool: pg.Pool, list: ListRow, token: string | undefined, raw: Buffer, parsed: ParsedMessage, log: Logger, settings: Pick<CoreSettings, 'publicUrl'>): Promise<void> {
  const probe = token !== undefined && PROBE_TOKEN.test(token) ? token : null;
  const member = !token ? null : probe ? await findMemberByProbeToken(pool, probe) : await findMemberByToken(pool, token);
  const ours = member && member.list_id === list.id ? member : null;
  // A report names the address as the envelope had it, its domain in A-labels (envelopeAddress):
  // read as members spell it, `bob@xn--bcher-kva.example` is the member `bob@bücher.example`.
  const reports = readBounce({ raw, text: parsed.text, headers: parsed.headers })
    .map((r) => (r.recipient ? { ...r, recipient: normalizeEmail(r.recipient) ?? r.recipient } : r));
  // One DSN may list several recipients; the member's own address, or the first failure, speaks for it.
  const report = reports.find((r) => r.failed && ours && r.recipient === ours.email) ?? reports.find((r) => r.failed) ?? reports[0];
  // Auto-replies, delay warnings and stray mail are recorded too, as not counted: the panel shows
  // why a member's score did not move.
  await withTransaction(pool, async (tx) => {
    if (!ours && !(await allowHit(tx, `stray-bounce:list:${list.id}`, STRAY_BOUNCES_PER_HOUR, 3600))) {
      log.warn({ list: list.address, recipient: report?.recipient ?? null }, 'bounce for no member of the list not recorded: over the hourly limit');
      return;
    }
    await (probe
      ? recordProbeBounce(tx, list, ours, probe, 'dsn', report, log, settings.publicUrl)
      : recordBounce(tx, list, ours, 'dsn', report, log));
  });
}

/**
 * Reports that name no member of the list (no token, an unknown or another list's token) are
 * recorded for the panel up to this many per list and hour; beyond it they are only logged.
 * Anyone can mail LIST-bounces@, and each record is a row and an hourly count.
 */
export const STRAY_BOUNCES_PER_HOUR = 100;

/**
 * A 5xx answer while sending a probe: the probe bounced, as if its DSN had come back. Refusals
 * of our sender or of the content (`aboutRecipient` false) decide nothing. In the caller's
 * transaction (core/refusals.ts), with the mark of the refused row.
 */
export async function recordProbeFailure(tx: Queryable, settings: Pick<CoreSettings, 'publicUrl'>, token: string, listId: number, recipient: string, response: string, log: Logger, aboutRecipient = true): Promise<void> {
  const report = smtpReport(recipient, response, aboutRecipient);
  const list = await getListById(tx, listId);
  const member = await findMemberByProbeToken(tx, token);
  await recordProbeBounce(tx, list, member && member.list_id === list.id ? member : null, token, 'smtp', report, log, settings.publicUrl);
}

function smtpReport(recipient: string, response: string, aboutRecipient: boolean): BounceReport {
  const status = /\b([45]\.\d{1,3}\.\d{1,3})\b/.exec(response)?.[1] ?? null;
  const classified = classifyText(status, response);
  const { kind, category } = aboutRecipient ? classified : { kind: 'policy' as const, category: 'sender_or_content' };
  return { recipient, action: 'failed', status, diagnostic: response, kind, category, failed: true };
}

/**
 * A 5xx answer while delivering a copy to a member: the same scoring as a DSN when the recipient
 * was refused; a refusal of our sender or of the content (`aboutRecipient` false) never counts.
 * In the caller's transaction, as recordProbeFailure.
 */
export async function recordDeliveryFailure(tx: Queryable, memberId: number | null, listId: number, recipient: string, response: string, log: Logger, aboutRecipient = true): Promise<void> {
  const report = smtpReport(recipient, response, aboutRecipient);
  const list = await getListById(tx, listId);
  const member = memberId === null ? null : await findMemberById(tx, memberId);
  await recordBounce(tx, list, member, 'smtp', report, log);
}

async function recordBounce(tx: Queryable, list: ListRow, member: MemberRow | null, source: 'dsn' | 'smtp', report: BounceReport, log: Logger) {
  const weight = member !== null && member.status === 'active' && report.failed ? await weightToCount(tx, member.id, report.kind) : 0;
  const counted = weight > 0;
  let scoreAfter: number | null = member?.bounce_score ?? null;
  if (counted) {
    const score = await raiseBounceScore(tx, member!.id, weight, BOUNCE_HALF_LIFE_DAYS);
    scoreAfter = score?.score ?? null;
    // Bounces seconds apart decay by a hair: 2.99999 after three hard bounces is three. At the
    // threshold the member is probed, once at a time; the probe's fate decides (Mailman's VERP probes).
    const probe = score && score.score + 0.001 >= score.threshold ? await startProbe(tx, member!.id) : null;
    if (probe) {
      await sendProbe(tx, list, member!, probe, report.diagnostic ?? report.status);
      await recordAudit(tx, { actor: 'bounces', action: 'member.probe', list, target: member!.email, detail: { score: score!.score, threshold: score!.threshold } });
      log.info({ list: list.address, member: member!.email, score: score!.score }, 'bounce probe sent');
    }
  }
  await storeBounce(tx, list, member, source, report, { counted, scoreAfter });
  log.info({ list: list.address, member: member?.email, kind: report.kind, category: report.category, counted }, 'bounce recorded');
}

/**
 * What a bounce adds to the score: its weight, less what the member's bounces of the last 24 hours
 * already added. As in Mailman, a member is scored once a day (a hard bounce after a soft one tops
 * it up to a hard one's weight): a server that refuses everything for an hour while a thread is
 * busy would otherwise reach the probe in minutes, and the probe, refused by the same server, the
 * disable.
 */
async function weightToCount(tx: Queryable, memberId: number, kind: BounceReport['kind']): Promise<number> {
  const weight = BOUNCE_WEIGHT[kind];
  if (weight <= 0) return 0;
  const today = Math.max(0, ...(await kindsCountedToday(tx, memberId)).map((k) => BOUNCE_WEIGHT[k]));
  return Math.max(0, weight - today);
}

/** The bounce's record (the panel shows why a score moved or did not), and the hourly count. */
async function storeBounce(tx: Queryable, list: ListRow, member: MemberRow | null, source: 'dsn' | 'smtp', report: BounceReport, o: { counted: boolean; scoreAfter: number | null; probe?: boolean }) {
  await insertBounce(tx, {
    listId: list.id,
    memberId: member?.id ?? null,
    source,
    recipient: report.recipient ?? member?.email ?? null,
    kind: report.failed ? report.kind : 'unknown',
    category: report.category,
    status: report.status,
    diagnostic: report.diagnostic,
    ...o,
  });
  if (report.failed) await countBounceHourly(tx);
}

/**
 * A bounce of a probe. A hard or soft failure disables the member (when this probe is still the
 * member's outstanding one); the member is told how to re-enable and the owners why. A policy
 * refusal, a delay warning or an auto-reply proves nothing and is recorded only.
 */
async function recordProbeBounce(tx: Queryable, list: ListRow, member: MemberRow | null, token: string, source: 'dsn' | 'smtp', report: BounceReport, log: Logger, publicUrl: string) {
  const decisive = member !== null && report.failed && BOUNCE_WEIGHT[report.kind] > 0;
  const reason = `probe bounced (${report.category}${report.status ? ` ${report.status}` : ''})`;
  const disabled = decisive ? await disableMember(tx, member!.id, reason.slice(0, 500), token) : null;
  if (disabled) {
    await tellDisabled(tx, list, disabled, publicUrl, disabled.bounce_warnings_sent, true);
    await tellOwnersDisabled(tx, list, disabled, reason, report.diagnostic ?? report.status);
    await recordAudit(tx, { actor: 'bounces', action: 'member.disable', list, target: disabled.email, detail: { reason, diagnostic: report.diagnostic?.slice(0, 500) ?? null } });
    log.info({ list: list.address, member: disabled.email, score: disabled.bounce_score }, 'member disabled by bounces: the probe bounced');
  }
  await storeBounce(tx, list, member, source, report, { counted: disabled !== null, scoreAfter: member?.bounce_score ?? null, probe: true });
  log.info({ list: list.address, member: member?.email, kind: report.kind, category: report.category, disabled: disabled !== null }, 'probe bounce recorded');
}
