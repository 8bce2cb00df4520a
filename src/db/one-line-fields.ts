/*
 * The one-line-fields conversion job's writes (core/conversions/one-line-fields.ts): subjects and
 * author names archived before oneLine() (mail/parsed-message.ts) took out bidirectional controls.
 */

import type { Queryable } from './pool.ts';

/** The characters oneLine() takes out of a one-line field since sql/0087, as a regular expression both JavaScript and PostgreSQL read. */
export const BIDI_CONTROLS = '[\u202a-\u202e\u2066-\u2069]';

/** The next `limit` messages after `afterId` by id; those whose subject or author name holds such a character lose it. */
export async function cleanMessageFields(tx: Queryable, afterId: number, limit: number): Promise<{ lastKey: number | null; seen: number; changed: number }> {
  const { rows } = await tx.query<{ last: number | null; seen: number; changed: number }>(
    `with b as (select id from messages where id > $1 order by id limit $2),
          u as (update messages m set subject = regexp_replace(m.subject, $3, '', 'g'), from_name = regexp_replace(m.from_name, $3, '', 'g')
                  from b
                 where m.id = b.id and (m.subject ~ $3 or m.from_name ~ $3)
                returning m.id)
     select (select max(id) from b)::float8 as last, (select count(*) from b)::int as seen, (select count(*) from u)::int as changed`,
    [afterId, limit, BIDI_CONTROLS],
  );
  return { lastKey: rows[0].last, seen: rows[0].seen, changed: rows[0].changed };
}
