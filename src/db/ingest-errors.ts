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
    [e.listId ?? null, e.envelopeFrom ?? null, e.recipients, e.messageId ?? null, e.reason, e.raw],
  );
  return rows[0].id;
}

export async function recentIngestErrors(db: Queryable, limit = 50) {
  const { rows } = await db.query<{ id: number; received_at: Date; reason: string; recipients: string[]; message_id: string | null }>(
    'select id, received_at, reason, recipients, message_id from ingest_errors order by id desc limit $1',
    [limit],
  );
  return rows;
}
