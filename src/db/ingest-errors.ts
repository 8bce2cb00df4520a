import type { Queryable } from './pool.ts';

export interface IngestError {
  listId?: number | null;
  envelopeFrom?: string | null;
  /** the SMTP client's address, when the listener passes it on */
  client?: string | null;
  recipients: string[];
  messageId?: string | null;
  reason: string;
  /** what is kept of the message: all of it, its first bytes, or nothing (src/retention.ts) */
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
    [e.listId ?? null, e.envelopeFrom ?? null, e.client ?? null, e.recipients, e.messageId ?? null, e.reason, e.raw, e.size ?? e.raw.length, e.sha256 ?? null],
  );
  return rows[0].id;
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
