/*
 * What we keep of mail we do not distribute, and for how long. A stranger can
 * make us store what they send: every kept item is capped, the bytes kept per sender, per client
 * and per day are bounded, and every record goes after a configurable number of days. The SMTP
 * answer never depends on any of it.
 */

import crypto from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config.ts';
import { pruneBounces } from '../db/bounces.ts';
import { expireHeld, pruneDecidedHeld, type ExpiredHeld } from '../db/held.ts';
import { pruneIngestErrors, recordIngestError, type IngestError } from '../db/ingest-errors.ts';
import { getListById } from '../db/lists.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { allowHit, clientKey } from '../db/rate-limits.ts';
import type { Logger } from '../log.ts';
import { noticeToOwners } from './notices.ts';
import { oneLine } from '../mail/parsed-message.ts';

export type Rejected = Omit<IngestError, 'size' | 'sha256'>;

const DAY = 86_400;

/**
 * Records mail we refused or did not act on, in ingest_errors: the first REJECTED_MAX_KB of it
 * (the header section and the start of the body are what a person needs to see why) with its full
 * size and SHA-256; past the quotas, a line without the bytes. Several statements: call it inside
 * the caller's transaction when there is one, as before.
 */
export async function keepRejected(db: Queryable, r: Rejected, limits: Config['retention']): Promise<number> {
  const size = r.raw.length;
  const over = await overQuota(db, r, limits);
  const cap = limits.rejectedMaxKb * 1024;
  if (!over && size <= cap) return recordIngestError(db, { ...r, size });
  const sha256 = crypto.createHash('sha256').update(r.raw).digest('hex');
  const note = over
    ? `(the message itself was not kept: ${over}; ${size} bytes, sha256 recorded)`
    : `(only the first ${limits.rejectedMaxKb} KB of ${size} bytes were kept; sha256 of all of them recorded)`;
  return recordIngestError(db, { ...r, raw: over ? Buffer.alloc(0) : r.raw.subarray(0, cap), size, sha256, reason: `${r.reason} ${note}` });
}

/**
 * Counts this item against the day's quotas (fixed windows in rate_limits, shared by every
 * instance) and names the first one it exceeds. The keys are taken in the same order by everyone,
 * so two transactions never wait on each other's counters in a cycle.
 */
async function overQuota(db: Queryable, r: Rejected, limits: Config['retention']): Promise<string | null> {
  const sender = r.envelopeFrom ? r.envelopeFrom.toLowerCase() : '<>';
  const checks: [key: string, limit: number, says: string][] = [
    ['rejected:all', limits.rejectedPerDay, `over the quota of ${limits.rejectedPerDay} rejected messages a day`],
    ...(r.client ? [[`rejected:client:${clientKey(r.client)}`, limits.rejectedPerClientPerDay, `over the quota of ${limits.rejectedPerClientPerDay} rejected messages a day from the client ${r.client}`] as [string, number, string]] : []),
    [`rejected:sender:${sender}`, limits.rejectedPerSenderPerDay, `over the quota of ${limits.rejectedPerSenderPerDay} rejected messages a day from the sender ${sender}`],
  ];
  let over: string | null = null;
  for (const [key, limit, says] of checks) {
    if (!(await allowHit(db, key, limit, DAY))) over ??= says;
  }
  return over;
}

/** Rows deleted per statement: each may hold up to REJECTED_MAX_KB, a held post a whole message. */
const BATCH = 200;

/**
 * The workers' hourly chores for retention: held posts that waited HELD_EXPIRE_DAYS expire (the
 * owners are told), then decided posts, rejected mail and bounce records past their KEEP_*_DAYS
 * are deleted. Safe with several workers at once (SKIP LOCKED everywhere).
 */
export async function pruneKept(pool: pg.Pool, cfg: Config, log: Logger): Promise<void> {
  const r = cfg.retention;
  let expired = 0;
  if (r.heldExpireDays > 0) {
    for (let n = BATCH; n === BATCH;) {
      n = await withTransaction(pool, async (tx) => {
        const rows = await expireHeld(tx, r.heldExpireDays, BATCH);
        await tellOwners(tx, rows, r.heldExpireDays);
        return rows.length;
      });
      expired += n;
    }
  }
  const decided = await repeat((limit) => pruneDecidedHeld(pool, r.keepDecidedDays, limit));
  const rejected = await repeat((limit) => pruneIngestErrors(pool, r.keepRejectedDays, limit));
  const bounces = await repeat((limit) => pruneBounces(pool, r.keepBouncesDays, limit));
  if (expired + decided + rejected + bounces > 0) log.info({ expired, decided, rejected, bounces }, 'retention: expired held posts and pruned old records');
}

async function repeat(step: (limit: number) => Promise<number>): Promise<number> {
  let total = 0;
  for (let n = BATCH; n === BATCH; total += n) n = await step(BATCH);
  return total;
}

/** One notice per list: which held posts expired, so that nothing leaves the queue unseen. */
async function tellOwners(tx: Queryable, rows: ExpiredHeld[], days: number): Promise<void> {
  const byList = new Map<number, ExpiredHeld[]>();
  for (const h of rows) byList.set(h.list_id, [...(byList.get(h.list_id) ?? []), h]);
  for (const [listId, held] of byList) {
    const list = await getListById(tx, listId);
    const lines = held.map((h) => `  #${h.id}  ${oneLine(h.from_email) || '(no sender)'}: ${oneLine(h.subject) || '(no subject)'}  (held since ${h.received_at.toISOString().slice(0, 10)})`);
    await noticeToOwners(tx, list, `${held.length} held post${held.length === 1 ? '' : 's'} expired on ${list.address}`, [
      `${held.length === 1 ? 'This post' : 'These posts'} waited ${days} days for a moderator on ${list.address} and ${held.length === 1 ? 'was' : 'were'} discarded without a decision:`,
      '',
      ...lines,
      '',
      `The records stay in the moderation history for a while; the senders were not told.`,
    ].join('\n'));
  }
}
