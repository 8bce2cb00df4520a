/*
 * messages.attachment_text (sql/0070): the text of a message's text attachments, searched with its
 * body. Messages archived since sql/0070 get it as they are stored; the attachment-text conversion
 * job (core/conversions/attachment-text.ts) reads it for the ones archived before.
 */

import type { Queryable } from './pool.ts';

/** The next `limit` messages by id after `afterId` (keyset: the primary key's index), with whether each has attachments. */
export async function messagesAfter(tx: Queryable, afterId: number, limit: number): Promise<{ id: number; has_attachments: boolean }[]> {
  const { rows } = await tx.query<{ id: string; has_attachments: boolean }>(
    'select id, has_attachments from messages where id > $1 order by id limit $2',
    [afterId, limit],
  );
  return rows.map((r) => ({ id: Number(r.id), has_attachments: r.has_attachments }));
}

/** A message's raw bytes when its attachments' text has not been stored yet; null otherwise. */
export async function rawWithoutAttachmentText(tx: Queryable, id: number): Promise<Buffer | null> {
  const { rows } = await tx.query<{ raw: Buffer }>('select raw from messages where id = $1 and attachment_text is null', [id]);
  return rows[0]?.raw ?? null;
}

/**
 * Stores a message's attachments' text; its search vector is computed again (the trigger of
 * sql/0070). Only where none is stored yet: a later one is never overwritten.
 */
export async function storeAttachmentText(tx: Queryable, id: number, text: string): Promise<boolean> {
  const { rowCount } = await tx.query('update messages set attachment_text = $2 where id = $1 and attachment_text is null', [id, text]);
  return (rowCount ?? 0) > 0;
}
