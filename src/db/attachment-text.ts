/*
 * messages.attachment_text (sql/0070): the text of a message's text attachments, searched with its
 * body; '' when its attachments hold no text; null when it has no attachments, or when nobody has
 * read them yet (mail/attachment-text.ts, storedAttachmentText). Messages archived by this release
 * get it as they are stored; the attachment-text conversion job (core/conversions/attachment-text.ts)
 * reads it for the ones archived before sql/0070, and for the ones the previous release archives
 * during a rolling upgrade, found through the partial index of sql/0073.
 */

import type { Queryable } from './pool.ts';

/** A message not read yet: attachments, no text stored for them, and not skipped by the job (sql/0072). */
const UNREAD = `m.has_attachments and m.attachment_text is null
  and not exists (select 1 from conversion_skips s where s.name = 'attachment-text' and s.key = m.id)`;

/**
 * The next `limit` messages by id after `afterId` (keyset: the primary key's index), each with
 * whether it is to be read and its raw size.
 */
export async function messagesAfter(tx: Queryable, afterId: number, limit: number): Promise<{ id: number; unread: boolean; size: number }[]> {
  const { rows } = await tx.query<{ id: string; unread: boolean; size: number }>(
    `select m.id, ${UNREAD} as unread, m.size from messages m where m.id > $1 order by m.id limit $2`,
    [afterId, limit],
  );
  return rows.map((r) => ({ id: Number(r.id), unread: r.unread, size: r.size }));
}

/**
 * The first message not read yet, by id, null when there is none: through the partial index of
 * sql/0073, which holds only such messages, so asking costs as little however large the archive.
 */
export async function firstUnreadMessage(db: Queryable): Promise<number | null> {
  const { rows } = await db.query<{ id: number }>(`select m.id::float8 as id from messages m where ${UNREAD} order by m.id limit 1`);
  return rows[0]?.id ?? null;
}

/**
 * Stores messages' attachments' text in one statement ('' for attachments without text: read, so
 * not read again); their search vectors are computed again (the trigger of sql/0070). Only where
 * none is stored yet: a later one is never overwritten. Returns how many were given some text.
 */
export async function storeAttachmentTexts(tx: Queryable, texts: { id: number; text: string }[]): Promise<number> {
  if (texts.length === 0) return 0;
  const { rows } = await tx.query<{ n: number }>(
    `with stored as (update messages m set attachment_text = x.text
                       from unnest($1::bigint[], $2::text[]) x(id, text)
                      where m.id = x.id and m.attachment_text is null
                     returning x.text)
     select count(*) filter (where text <> '')::int as n from stored`,
    [texts.map((t) => t.id), texts.map((t) => t.text)],
  );
  return rows[0].n;
}
