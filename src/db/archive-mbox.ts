/*
 * The messages of a list (a month of it, or one thread) in date order, read in pages through a
 * keyset cursor: each page is one short query that resumes after the last (date, id) seen, so
 * memory stays at one page whatever the size of the archive, and no long transaction holds back
 * a read replica. Hidden messages are left out.
 */

import type { Queryable } from './pool.ts';

export interface MboxScope {
  listId: number;
  /** inclusive lower bound on the date */
  after?: Date | null;
  /** exclusive upper bound on the date */
  before?: Date | null;
  threadId?: number | null;
}

export interface MboxRow {
  id: number;
  raw: Buffer;
  from_email: string;
  date: Date;
}

/**
 * Bytes of raw messages one page holds at most (past its first message): a page of 200 rows of
 * 4 MB each was 800 MB in the web process for one download of a month of attachments. A reader who
 * stalls holds its page until the idle deadline: pages of 8 MB rather than 16 took eight such
 * readers of a month of 2 MB messages from 172–192 MB to 95–122 MB, for some 5% of the rate at
 * full speed (docs/benchmarks.md, Downloads).
 */
export const MBOX_PAGE_BYTES = 8 * 1024 * 1024;

export async function* mboxRows(db: Queryable, scope: MboxScope, pageSize = 200, pageBytes = MBOX_PAGE_BYTES): AsyncGenerator<MboxRow> {
  let lastDate: Date | null = null;
  let lastId = 0;
  for (;;) {
    // The page ends at the message that passes `pageBytes` (octet_length reads the stored size,
    // not the value: the messages cut off are not fetched). A short page is the last one only
    // when its bytes did not cut it.
    const { rows }: { rows: MboxRow[] } = await db.query<MboxRow>(
      `select id, raw, from_email, date from (
         select m.id, m.raw, m.from_email, m.date, lm.date as list_date,
                sum(octet_length(m.raw)) over (order by lm.date, lm.message_id rows unbounded preceding) - octet_length(m.raw) as before
           from list_messages lm join messages m on m.id = lm.message_id
          where lm.list_id = $1
            and ($2::timestamptz is null or lm.date >= $2) and ($3::timestamptz is null or lm.date < $3)
            and ($4::bigint is null or m.thread_id = $4)
            and ($5::timestamptz is null or (lm.date, lm.message_id) > ($5, $6::bigint))
            and lm.hidden_at is null
          order by lm.date, lm.message_id
          limit $7) page
        where before < $8
        order by list_date, id`,
      [scope.listId, scope.after ?? null, scope.before ?? null, scope.threadId ?? null, lastDate, lastId, pageSize, pageBytes],
    );
    for (const row of rows) yield row;
    if (rows.length === 0) return;
    if (rows.length < pageSize && rows.reduce((n, r) => n + r.raw.length, 0) < pageBytes) return;
    lastDate = rows[rows.length - 1].date;
    lastId = rows[rows.length - 1].id;
  }
}

export interface MboxVersion {
  messages: number;
  /** a digest of the visible set: changes when a message arrives, is hidden or comes back */
  digest: string;
  last_modified: Date | null;
}

/** What an mbox download's validators (ETag, Last-Modified) are made of. */
export async function mboxVersion(db: Queryable, scope: MboxScope): Promise<MboxVersion> {
  const { rows } = await db.query<MboxVersion>(
    `select count(*) filter (where lm.hidden_at is null)::int as messages,
            concat_ws('.', count(*) filter (where lm.hidden_at is null), sum(m.id) filter (where lm.hidden_at is null), max(m.id)) as digest,
            greatest(max(m.received_at), max(lm.visibility_changed_at),
                     (select c.changed_at from archive_list_changes c where c.list_id = $1)) as last_modified
       from list_messages lm join messages m on m.id = lm.message_id
      where lm.list_id = $1
        and ($2::timestamptz is null or lm.date >= $2) and ($3::timestamptz is null or lm.date < $3)
        and ($4::bigint is null or m.thread_id = $4)`,
    [scope.listId, scope.after ?? null, scope.before ?? null, scope.threadId ?? null],
  );
  return rows[0];
}
