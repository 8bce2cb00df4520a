import type { Queryable } from './pool.ts';

export interface IngestError {
  listId?: number | null;
  envelopeFrom?: string | null;
  recipients: string[];
  messageId?: string | null;
  reason: string;
  raw: Buffer;
}

/** Keeps mail we could not take in, with why, so that nothing is silently dropped. */
export async function recordIngestError(db: Queryable, e: IngestError): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `insert into ingest_errors (list_id, envelope_from, recipients, message_id, reason, raw)
     values ($1, $2, $3, $4, $5, $6) returning id`,
    [e.listId ?? null, text(e.envelopeFrom, 1000), e.recipients.map((r) => text(r, 1000)), text(e.messageId, 1000), text(e.reason, 4000), e.raw],
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

export async function recentIngestErrors(db: Queryable, limit = 50) {
  const { rows } = await db.query<{ id: number; received_at: Date; reason: string; recipients: string[]; message_id: string | null }>(
    'select id, received_at, reason, recipients, message_id from ingest_errors order by id desc limit $1',
    [limit],
  );
  return rows;
}
