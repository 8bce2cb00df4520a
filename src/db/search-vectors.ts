/*
 * The search-vectors conversion job's reads and writes (core/conversions/search-vectors.ts): the
 * messages whose vectors a database with a C or POSIX LC_CTYPE computed with punctuation glued
 * to words (sql/0075) get them again.
 */

import type { Queryable } from './pool.ts';
import { PG_SYMBOLS_CLASS } from './search-words.ts';


/**
 * Whether this database parses text under a C or POSIX LC_CTYPE, where PostgreSQL's parser takes
 * every character beyond ASCII for a letter. Under any other, punctuation was never part of a word,
 * and no vector changes.
 */
export async function punctuationGlued(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ glued: boolean }>(`select datctype in ('C', 'POSIX') as glued from pg_database where datname = current_database()`);
  return rows[0]?.glued ?? false;
}

/**
 * The next `limit` messages after `afterId` by id; those holding such a character get their search
 * vector again (an update of the subject to itself fires messages_search_vector, sql/0070). The
 * UPDATE runs only when the batch holds one: any UPDATE of messages, even of no row, counts as an
 * archive change (sql/0011), and the web's page cache started afresh at every batch of the walk.
 */
export async function revectorMessages(tx: Queryable, afterId: number, limit: number): Promise<{ lastKey: number | null; seen: number; changed: number }> {
  const { rows: [b] } = await tx.query<{ last: number | null; seen: number; ids: string[] }>(
    `select max(id)::float8 as last, count(*)::int as seen,
            coalesce(array_agg(id) filter (where subject ~ $3 or from_name ~ $3 or left(body, 200000) ~ $3 or left(attachment_text, 200000) ~ $3), '{}') as ids
       from (select id, subject, from_name, body, attachment_text from messages where id > $1 order by id limit $2) b`,
    [afterId, limit, PG_SYMBOLS_CLASS],
  );
  if (b.ids.length === 0) return { lastKey: b.last, seen: b.seen, changed: 0 };
  const { rowCount } = await tx.query('update messages set subject = subject where id = any($1::bigint[])', [b.ids]);
  return { lastKey: b.last, seen: b.seen, changed: rowCount ?? 0 };
}
