/*
 * message_digests (sql/0056): the SHA-256 of each archived message's raw bytes. New messages get
 * theirs from a trigger as they are inserted; the ones archived before sql/0056 get theirs from
 * the message-digests conversion job (core/conversions/message-digests.ts). Until it has finished,
 * a message may have none: readers compute it from the bytes then (web/archive/message-pages.ts).
 */

import type { Queryable } from './pool.ts';

export interface DigestBatch {
  /** the highest message id looked at, null when there was none past the cursor */
  lastKey: number | null;
  seen: number;
  /** digests written: messages that had none */
  changed: number;
}

/**
 * The next `limit` messages by id after `afterId` get a digest where they have none, in one
 * statement (keyset: the primary key's index, whatever the table's size).
 */
export async function fillMessageDigests(tx: Queryable, afterId: number, limit: number): Promise<DigestBatch> {
  const { rows } = await tx.query<{ last_key: number | null; seen: number; changed: number }>(
    `with batch as (select id from messages where id > $1 order by id limit $2),
          filled as (insert into message_digests (message_id, sha256)
                     select m.id, sha256(m.raw) from batch b join messages m on m.id = b.id
                      where not exists (select 1 from message_digests d where d.message_id = b.id)
                     on conflict (message_id) do nothing
                     returning 1)
     select (select max(id) from batch)::float8 as last_key, (select count(*) from batch)::int as seen,
            (select count(*) from filled)::int as changed`,
    [afterId, limit],
  );
  return { lastKey: rows[0].last_key, seen: rows[0].seen, changed: rows[0].changed };
}

/** The messages a digest job starts with (counted once, through the primary key's index). */
export async function countMessagesAfter(db: Queryable, afterId: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>('select count(*)::float8 as n from messages where id > $1', [afterId]);
  return rows[0].n;
}

/** The first message after `afterId` by id, null if none: a job's row done alone (core/conversions.ts). */
export async function firstMessageAfter(db: Queryable, afterId: number): Promise<number | null> {
  const { rows } = await db.query<{ id: number }>('select id::float8 as id from messages where id > $1 order by id limit 1', [afterId]);
  return rows[0]?.id ?? null;
}

/** One message's stored digest, or null when the conversion has not reached it yet. */
export async function messageDigest(db: Queryable, id: number): Promise<Buffer | null> {
  const { rows } = await db.query<{ sha256: Buffer }>('select sha256 from message_digests where message_id = $1', [id]);
  return rows[0]?.sha256 ?? null;
}
