/*
 * messages.attachment_text (sql/0070): the text of a message's text attachments, searched with its
 * body. Messages archived since sql/0070 get it as they are stored; the attachment-text conversion
 * job (core/conversions/attachment-text.ts) reads it for the ones archived before.
 */

import type { Queryable } from './pool.ts';

/**
 * The next `limit` messages by id after `afterId` (keyset: the primary key's index), each with
 * whether it is to be read (it has attachments and no text of them stored) and its raw size.
 */
export async function messagesAfter(tx: Queryable, afterId: number, limit: number): Promise<{ id: number; unread: boolean; size: number }[]> {
  const { rows } = await tx.query<{ id: string; unread: boolean; size: number }>(
    'select id, has_attachments and attachment_text is null as unread, size from messages where id > $1 order by id limit $2',
    [afterId, limit],
  );
  return rows.map((r) => ({ id: Number(r.id), unread: r.unread, size: r.size }));
}

/**
 * Stores messages' attachments' text in one statement; their search vectors are computed again
 * (the trigger of sql/0070). Only where none is stored yet: a later one is never overwritten.
 * Returns how many were stored.
 */
export async function storeAttachmentTexts(tx: Queryable, texts: { id: number; text: string }[]): Promise<number> {
  if (texts.length === 0) return 0;
  const { rowCount } = await tx.query(
    `update messages m set attachment_text = x.text
       from unnest($1::bigint[], $2::text[]) x(id, text)
      where m.id = x.id and m.attachment_text is null`,
    [texts.map((t) => t.id), texts.map((t) => t.text)],
  );
  return rowCount ?? 0;
}
