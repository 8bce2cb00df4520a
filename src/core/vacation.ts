/*
 * A vacation: `nomail` with an end date. The member (from /account), an owner (the member's panel
 * page) or the command line sets it; when the day comes, the delivery worker's periodic maintenance
 * puts the member back on the mode they had before, audits it and tells them. The claim takes its
 * rows with SKIP LOCKED and queues the notice in the same transaction (as bounce-warnings.ts), so
 * several workers at once resume and tell each member once. Time is the database's now(): tests
 * back-date the rows.
 */

import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import { getListById, type ListRow } from '../db/lists.ts';
import { claimEndedVacations, type MemberRow } from '../db/members.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { InvalidInput } from '../errors.ts';
import type { Logger } from '../log.ts';
import { roleAddress } from '../mail/address.ts';
import { absoluteUrl } from '../mail/urls.ts';
import { sendNotice } from './notices.ts';

/** Rows per transaction: a backlog (many vacations ending on New Year's Day) goes in slices. */
const BATCH = 100;

/** How far ahead a pause may go: further than this is more likely a typo than a plan. */
const MAX_DAYS = 366 * 2;

/**
 * The day delivery resumes, from `YYYY-MM-DD`: delivery starts again at 00:00 UTC that day, so it
 * must be a real date after today (UTC) and within two years.
 */
export function parseResumeDate(text: string, now: Date = new Date()): Date {
  const t = text.trim();
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(t);
  const day = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!m || !day || day.getUTCFullYear() !== Number(m[1]) || day.getUTCMonth() !== Number(m[2]) - 1 || day.getUTCDate() !== Number(m[3])) {
    throw new InvalidInput(`"${t.slice(0, 40)}" is not a date: give the day delivery resumes as YYYY-MM-DD`, 'invalid_date');
  }
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  if (day.getTime() <= today) throw new InvalidInput(`${t} is not in the future: delivery can only be paused until a later day than today (UTC)`, 'date_in_past');
  if (day.getTime() > today + MAX_DAYS * 86_400_000) throw new InvalidInput(`${t} is more than two years away: choose "no mail" without a date instead`, 'date_too_far');
  return day;
}

/** The day as the forms and the command line write it. */
export function resumeDay(until: Date): string {
  return until.toISOString().slice(0, 10);
}

export async function runVacationEnds(pool: pg.Pool, publicUrl: string, log: Logger): Promise<number> {
  let done = 0;
  for (;;) {
    const n = await withTransaction(pool, async (tx) => {
      const due = await claimEndedVacations(tx, BATCH);
      for (const m of due) {
        const list = await getListById(tx, m.list_id);
        if (m.status === 'active') await tellResumed(tx, list, m, m.ended_until, publicUrl);
        await recordAudit(tx, { actor: 'vacation', action: 'member.vacation_end', list, target: m.email, detail: { mode: m.mode, until: resumeDay(m.ended_until) } });
      }
      return due.length;
    });
    done += n;
    if (n < BATCH) break;
  }
  if (done > 0) log.info({ resumed: done }, 'paused deliveries resumed');
  return done;
}

async function tellResumed(tx: Queryable, list: ListRow, m: MemberRow, until: Date, publicUrl: string): Promise<void> {
  await sendNotice(tx, {
    to: m.email,
    list,
    subject: `Delivery from ${list.address} has resumed`,
    text: [
      `You paused mail from ${list.address} until ${resumeDay(until)}; that day has come,`,
      `so ${m.mode === 'digest' ? 'the digests start' : 'the mail starts'} again.`,
      '',
      `To change how you get the list, open ${absoluteUrl(publicUrl, '/account')}`,
      `or send a message with "help" to ${roleAddress(list.address, 'request')}.`,
    ].join('\n'),
  });
}
