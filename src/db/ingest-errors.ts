import type { Queryable } from './pool.ts';

export interface IngestError {
  listId?: number | null;
  envelopeFrom?: string | null;
  /** the SMTP client's address, when the listener passes it on */
  client?: string | null;
  recipients: string[];
  messageId?: string | null;
  reason: string;
  /** what is kept of the message: all of it, its first bytes, or nothing (src/core/retention.ts) */
  raw: Buffer;
  /** bytes received; raw.length unless only part of them is kept */
  size?: number;
  /** hex SHA-256 of every byte received, when raw is not all of them */
  sha256?: string | null;
}

/** Keeps mail we could not take in, with why, so that nothing is silently dropped. */
export async function recordIngestError(db: Queryable, e: IngestError): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `insert into ingest_errors (list_id, envelope_from, client, recipients, message_id, reason, raw, size, sha256)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id`,
    [e.listId ?? null, text(e.envelopeFrom, 1000), text(e.client, 100), e.recipients.map((r) => text(r, 1000)), text(e.messageId, 1000),
      text(e.reason, 4000), e.raw, e.size ?? e.raw.length, e.sha256 ?? null],
  );
  return rows[0].id;
}

/**
 * The record of a fault must never fail for the fault's own reasons: text from a hostile message
 * may hold NUL (which PostgreSQL text cannot) or be of any length.
 */
function text(value: string | null | undefined, max: number): string | null {
  if (typeof value !== 'string') return null;
  const clean = value.replace(/\u0000/g, '\uFFFD');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/**
 * Deletes up to `limit` records older than `days`, oldest first; the caller repeats while a full
 * batch comes back. SKIP LOCKED lets several workers prune at once without waiting on each other.
 */
export async function pruneIngestErrors(db: Queryable, days: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `delete from ingest_errors where id in (
       select id from ingest_errors where received_at < now() - make_interval(days => $1)
        order by received_at limit $2 for update skip locked)`,
    [days, limit],
  );
  return rowCount ?? 0;
}

export async function recentIngestErrors(db: Queryable, limit = 50) {
  const { rows } = await db.query<{ id: number; received_at: Date; reason: string; recipients: string[]; message_id: string | null }>(
    'select id, received_at, reason, recipients, message_id from ingest_errors order by id desc limit $1',
    [limit],
  );
  return rows;
}
