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
 * vector again (an update of the subject to itself fires messages_search_vector, sql/0070).
 */
export async function revectorMessages(tx: Queryable, afterId: number, limit: number): Promise<{ lastKey: number | null; seen: number; changed: number }> {
  const { rows } = await tx.query<{ last: number | null; seen: number; changed: number }>(
    `with b as (select id from messages where id > $1 order by id limit $2),
          u as (update messages m set subject = m.subject from b
                 where m.id = b.id
                   and (m.subject ~ $3 or m.from_name ~ $3 or left(m.body, 200000) ~ $3 or left(m.attachment_text, 200000) ~ $3)
                returning m.id)
     select (select max(id) from b)::float8 as last, (select count(*) from b)::int as seen, (select count(*) from u)::int as changed`,
    [afterId, limit, PG_SYMBOLS_CLASS],
  );
  return { lastKey: rows[0].last, seen: rows[0].seen, changed: rows[0].changed };
}
