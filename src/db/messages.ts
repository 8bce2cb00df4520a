import type { Queryable } from './pool.ts';
import type { ParsedMessage } from '../mail/parse.ts';
import { verpParts } from '../mail/address.ts';
import type { PostChecks } from '../mail/post-checks.ts';
import { storedAttachmentText } from '../mail/attachment-text.ts';

/**
 * What archiving a message into a list did (archive_message in sql/0013). A Message-ID identifies a
 * message, it does not authorise: a post is linked to an archived message only when it is the same
 * message, and within one list a Message-ID names one message.
 */
export interface ArchiveResult {
  id: number;
  /** a new message was stored (possibly under a Message-ID that another list's message has) */
  created: boolean;
  /** the message is newly part of this list (new, or the same message stored for another list) */
  addedToList: boolean;
  threadId: number;
  /**
   * when not added: whether the list's message with this Message-ID is this same message (a
   * redelivery) or a different one (a reuse of its Message-ID, refused)
   */
  sameContent: boolean;
}

/** Stores and threads a message in a list (archive_message in sql/0070). */
export async function archiveMessage(db: Queryable, listId: number, raw: Buffer, m: ParsedMessage, opts: { exact?: boolean } = {}): Promise<ArchiveResult> {
  const { rows } = await db.query<ArchiveRow>({
    name: 'archive_message',
    text: 'select * from archive_message($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)',
    values: [...messageParams(listId, raw, m), opts.exact ?? false, null, storedAttachmentText(m.attachments)],
  });
  return archiveResult(rows[0]);
}

export interface Acceptance {
  list: { id: number; address: string };
  raw: Buffer;
  message: ParsedMessage;
  /** link only to a byte-for-byte equal archived message (an approval: what was held goes out) */
  exact?: boolean;
  /** what the arrival checks found, stored with a newly stored message (messages.checks) */
  checks?: PostChecks;
}

/**
 * Accepts posts into their lists (accept_post in sql/0070), in one round trip for the lot, in
 * order: each is archived and threaded, gets one outbox copy per member who takes each post and a
 * digest item, and the delivery workers are woken. `copies` is 0 for a message the list already had.
 */
export async function acceptIntoLists(db: Queryable, posts: Acceptance[]): Promise<(ArchiveResult & { copies: number })[]> {
  if (posts.length === 0) return [];
  const { rows } = await db.query<ArchiveRow & { copies: number; ord: number }>({
    // Named, so each connection parses it once per batch size.
    name: `accept_posts_${posts.length}`,
    text: acceptStatement(posts.length),
    // VERP: each copy's envelope sender is LIST-bounces+TOKEN@, built by SQL from verpParts.
    values: posts.flatMap((p) => { const verp = verpParts(p.list.address); return [...messageParams(p.list.id, p.raw, p.message), p.exact ?? false, verp.prefix, verp.domain, checksParam(p.checks), storedAttachmentText(p.message.attachments)]; }),
  });
  return rows.sort((a, b) => a.ord - b.ord).map((r) => ({ ...archiveResult(r), copies: r.copies }));
}

const ACCEPT_TYPES = ['bigint', 'text', 'bytea', 'text', 'text', 'text', 'timestamptz', 'text', 'text[]', 'text', 'boolean', 'boolean', 'text', 'text', 'jsonb', 'text'];

/** The checks as a jsonb parameter; none found is stored as null. */
function checksParam(checks: PostChecks | undefined): string | null {
  return checks && Object.keys(checks).length > 0 ? JSON.stringify(checks) : null;
}
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

/**
 * Whether the list has a message under this Message-ID, and if so whether it is the same message
 * as `raw` (trace header fields aside: message_same_content in sql/0013) or a different one.
 */
export async function listHasMessageId(db: Queryable, listId: number, messageId: string, raw: Buffer): Promise<'same' | 'different' | null> {
  const { rows } = await db.query<{ same: boolean }>(
    `select message_same_content(m.raw, $3, false) as same
       from list_messages lm join messages m on m.id = lm.message_id
      where lm.list_id = $1 and m.message_id = $2 limit 1`,
    [listId, messageId, raw],
  );
  return rows.length === 0 ? null : rows[0].same ? 'same' : 'different';
}

/**
 * Hides a message in one list with a reason (privacy, spam, legal): every archive query of that list
 * filters on list_messages.hidden_at, so it vanishes from the list's pages, search, feeds and mbox at
 * once, and the permalink tells why. Other lists that have the same message are not touched: an
 * owner decides what their own list's readers see.
 */
export async function hideMessage(db: Queryable, listId: number, messageId: string, reason: string, by: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `update list_messages lm set hidden_reason = $3, hidden_at = now(), hidden_by = $4, visibility_changed_at = now()
       from messages m where m.id = lm.message_id and lm.list_id = $1 and m.message_id = $2`,
    [listId, messageId, reason, by],
  );
  return (rowCount ?? 0) > 0;
}

export async function unhideMessage(db: Queryable, listId: number, messageId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `update list_messages lm set hidden_reason = null, hidden_at = null, hidden_by = null, visibility_changed_at = now()
       from messages m where m.id = lm.message_id and lm.list_id = $1 and m.message_id = $2 and lm.hidden_at is not null`,
    [listId, messageId],
  );
  return (rowCount ?? 0) > 0;
}
