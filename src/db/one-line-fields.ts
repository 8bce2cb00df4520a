/*
 * The one-line-fields conversion job's writes (core/conversions/one-line-fields.ts): subjects and
 * author names archived before oneLine() (mail/parsed-message.ts) took out bidirectional controls.
 */

import type { Queryable } from './pool.ts';

/**
 * The next `limit` messages after `afterId` by id; those whose subject or author name holds a
 * character `pattern` matches (a bracket expression: BIDI_CONTROLS, mail/parsed-message.ts, what
 * oneLine() takes out) lose it. The UPDATE runs only when the batch holds one: any UPDATE of
 * messages, even of no row, counts as an archive change (sql/0011), and the web's page cache
 * started afresh at every batch of a walk over the whole archive, most of whose batches change
 * nothing.
 */
export async function cleanMessageFields(tx: Queryable, afterId: number, limit: number, pattern: string): Promise<{ lastKey: number | null; seen: number; changed: number }> {
  const { rows: [b] } = await tx.query<{ last: number | null; seen: number; ids: string[] }>(
    `select max(id)::float8 as last, count(*)::int as seen,
            coalesce(array_agg(id) filter (where subject ~ $3 or from_name ~ $3), '{}') as ids
       from (select id, subject, from_name from messages where id > $1 order by id limit $2) b`,
    [afterId, limit, pattern],
  );
  if (b.ids.length === 0) return { lastKey: b.last, seen: b.seen, changed: 0 };
  const { rowCount } = await tx.query(
    `update messages set subject = regexp_replace(subject, $2, '', 'g'), from_name = regexp_replace(from_name, $2, '', 'g')
      where id = any($1::bigint[]) and (subject ~ $2 or from_name ~ $2)`,
    [b.ids, pattern],
  );
  return { lastKey: b.last, seen: b.seen, changed: rowCount ?? 0 };
}

/**
 * The first message whose subject or author name holds a bidirectional control, null if none: one
 * the previous release archived during a rolling upgrade (the partial index of sql/0088 holds just
 * those; its predicate is this condition, written the same way).
 */
export async function firstMessageWithBidi(db: Queryable): Promise<number | null> {
  const { rows } = await db.query<{ id: number }>(
    `select id::float8 as id from messages
      where subject ~ U&'[\\202A-\\202E\\2066-\\2069]' or from_name ~ U&'[\\202A-\\202E\\2066-\\2069]'
      order by id limit 1`,
  );
  return rows[0]?.id ?? null;
}
