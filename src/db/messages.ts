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
  const { rows } = await db.query<ArchiveRow>({
    name: 'archive_message',
    text: 'select * from archive_message($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)',
    values: messageParams(listId, raw, m),
  });
  return archiveResult(rows[0]);
}

export interface Acceptance {
  list: { id: number; local_part: string; domain: string };
  raw: Buffer;
  message: ParsedMessage;
}

/**
 * Accepts posts into their lists (accept_post in sql/0007), in one round trip for the lot, in
 * order: each is archived and threaded, gets one outbox copy per member who takes each post and a
 * digest item, and the delivery workers are woken. `copies` is 0 for a message the list already had.
 */
export async function acceptIntoLists(db: Queryable, posts: Acceptance[]): Promise<(ArchiveResult & { copies: number })[]> {
  if (posts.length === 0) return [];
  const { rows } = await db.query<ArchiveRow & { copies: number; ord: number }>({
    // Named, so each connection parses it once per batch size.
    name: `accept_posts_${posts.length}`,
    text: acceptStatement(posts.length),
    // VERP: each copy's envelope sender is LIST-bounces+TOKEN@ (mail/list-headers.ts verpAddress).
    values: posts.flatMap((p) => [...messageParams(p.list.id, p.raw, p.message), `${p.list.local_part}-bounces+`, p.list.domain]),
  });
  return rows.sort((a, b) => a.ord - b.ord).map((r) => ({ ...archiveResult(r), copies: r.copies }));
}

const ACCEPT_TYPES = ['bigint', 'text', 'bytea', 'text', 'text', 'text', 'timestamptz', 'text', 'text[]', 'text', 'boolean', 'text', 'text'];
const acceptStatements = new Map<number, string>();

/**
 * `select ... from (values (1, $1, ... $13), (2, $14, ...)) cross join lateral accept_post(...)`:
 * the posts run in the order given (a reply later in the batch finds its parent already stored)
 * and raw bytes travel as binary parameters, not as an encoded array.
 */
function acceptStatement(n: number): string {
  let text = acceptStatements.get(n);
  if (!text) {
    const rows = Array.from({ length: n }, (_, i) => `(${i + 1}, ${ACCEPT_TYPES.map((t, j) => `$${i * ACCEPT_TYPES.length + j + 1}::${t}`).join(', ')})`);
    const cols = ACCEPT_TYPES.map((_, j) => `c${j + 1}`);
    text = `select v.ord, a.* from (values ${rows.join(', ')}) v(ord, ${cols.join(', ')})
            cross join lateral accept_post(${cols.map((c) => `v.${c}`).join(', ')}) a`;
    acceptStatements.set(n, text);
  }
  return text;
}

interface ArchiveRow {
  id: number;
  created: boolean;
  added_to_list: boolean;
  thread_id: number;
  same_content: boolean;
}

function messageParams(listId: number, raw: Buffer, m: ParsedMessage): unknown[] {
  return [listId, m.messageId, raw, m.subject, m.fromName, m.fromEmail, m.date, m.inReplyTo, m.references, m.text, m.attachments.length > 0];
}

function archiveResult(r: ArchiveRow): ArchiveResult {
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
    'update messages set hidden_reason = $2, hidden_at = now(), hidden_by = $3, visibility_changed_at = now() where message_id = $1',
    [messageId, reason, by],
  );
  return (rowCount ?? 0) > 0;
}

export async function unhideMessage(db: Queryable, messageId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    'update messages set hidden_reason = null, hidden_at = null, hidden_by = null, visibility_changed_at = now() where message_id = $1 and hidden_at is not null',
    [messageId],
  );
  return (rowCount ?? 0) > 0;
}
