import type { Queryable } from './pool.ts';
import type { ParsedMessage } from '../mail/parse.ts';

export interface ArchiveResult {
  id: number;
  /** a new message was stored */
  created: boolean;
  /** the message is newly part of this list (new, or a cross-post of a stored one) */
  addedToList: boolean;
  threadId: number;
  /** when not created: whether the stored message has the same body as this one */
  sameContent: boolean;
}

/** Stores and threads a message in a list (see archive_message in sql/0001). */
export async function archiveMessage(db: Queryable, listId: number, raw: Buffer, m: ParsedMessage): Promise<ArchiveResult> {
  const { rows } = await db.query<{ id: number; created: boolean; added_to_list: boolean; thread_id: number; same_content: boolean }>(
    'select * from archive_message($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)',
    [listId, m.messageId, raw, m.subject, m.fromName, m.fromEmail, m.date, m.inReplyTo, m.references, m.text, m.attachments.length > 0],
  );
  const r = rows[0];
  return { id: r.id, created: r.created, addedToList: r.added_to_list, threadId: r.thread_id, sameContent: r.same_content };
}

export interface MessageSummary {
  id: number;
  message_id: string;
  subject: string;
  from_email: string;
  date: Date;
  thread_id: number;
  parent_id: number | null;
}

export async function findByMessageId(db: Queryable, messageId: string): Promise<MessageSummary | null> {
  const { rows } = await db.query<MessageSummary>(
    'select id, message_id, subject, from_email, date, thread_id, parent_id from messages where message_id = $1',
    [messageId],
  );
  return rows[0] ?? null;
}

export async function rawMessage(db: Queryable, messageId: string): Promise<Buffer | null> {
  const { rows } = await db.query<{ raw: Buffer }>('select raw from messages where message_id = $1', [messageId]);
  return rows[0]?.raw ?? null;
}

/**
 * Hides an archived message with a reason (privacy, spam, legal): every archive query filters on
 * hidden_at, so it vanishes from pages, search, feeds and mbox at once; the permalink tells why.
 */
export async function hideMessage(db: Queryable, messageId: string, reason: string, by: string): Promise<boolean> {
  const { rowCount } = await db.query(
    'update messages set hidden_reason = $2, hidden_at = now(), hidden_by = $3 where message_id = $1',
    [messageId, reason, by],
  );
  return (rowCount ?? 0) > 0;
}

export async function unhideMessage(db: Queryable, messageId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    'update messages set hidden_reason = null, hidden_at = null, hidden_by = null where message_id = $1 and hidden_at is not null',
    [messageId],
  );
  return (rowCount ?? 0) > 0;
}
