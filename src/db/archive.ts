/*
 * Read queries of the archive's browsing pages: the lists, a list's months and recent threads, a
 * month's threads, a thread as a tree. Every query leaves out messages hidden in the list (hiding
 * is per list: list_messages.hidden_at, sql/0013); all run on the
 * read pool (a replica when DATABASE_READ_URL is set). Who may read which list is decided by the
 * SQL function can_read_archive() (sql/0063), the one definition of archive access.
 */

import type { ArchivePolicy } from '../list-policies.ts';
import { threadOrder } from '../mail/thread-order.ts';
import { LIST_KEY } from './list-key.ts';
import type { ListRow } from './lists.ts';
import type { Queryable } from './pool.ts';
import { readThreadNodes } from './thread-nodes.ts';

/** The reader, as the queries need it: their verified addresses (none when anonymous) and whether a site administrator. */
export interface Reader {
  emails: string[];
  siteAdmin: boolean;
}

/**
 * Last-Modified of the archive pages of the list whose id is `listId` (an SQL expression): the
 * newest message's arrival, the latest hiding or showing again of one of its messages, or the
 * latest other change to what its pages show (a message deleted, the list renamed: sql/0103's
 * archive_list_changes), whichever is latest. A deletion moves the third past the first, so the
 * greatest only moves forwards, and a reader's If-Modified-Since is never answered 304 wrongly.
 */
export function listLastModified(listId: string): string {
  return `greatest((select m.received_at from messages m where m.id = (select max(message_id) from list_messages where list_id = ${listId})),
                   (select max(lm.visibility_changed_at) from list_messages lm
                     where lm.list_id = ${listId} and lm.visibility_changed_at is not null),
                   (select c.changed_at from archive_list_changes c where c.list_id = ${listId}))`;
}

/** The latest change to `/` beyond its lists' own (sql/0103: a public list deleted, made public or no longer). */
export const SITE_LAST_MODIFIED = '(select c.changed_at from archive_list_changes c where c.list_id = 0)';

export async function readerMayRead(db: Queryable, reader: Reader, list: Pick<ListRow, 'id' | 'archive'>): Promise<boolean> {
  if (list.archive === 'public' || reader.siteAdmin) return true;
  if (reader.emails.length === 0) return false;
  const { rows } = await db.query<{ ok: boolean }>({
    name: 'archive-may-read', text: 'select can_read_archive($1, $2, $3, $4) as ok', values: [list.id, list.archive, reader.emails, reader.siteAdmin],
  });
  return rows[0].ok;
}

/** Ids of the lists whose archive the reader may read. */
export async function readableListIds(db: Queryable, reader: Reader): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>({
    name: 'archive-readable-lists', text: 'select id from lists l where can_read_archive(l.id, l.archive, $1, $2)', values: [reader.emails, reader.siteAdmin],
  });
  return rows.map((r) => r.id);
}

export interface ReaderList extends ListRow {
  /** the list's URL key: local part when unique, else address */
  key: string;
  readable: boolean;
  /** latest change to the archive: newest message added (ids grow with time), or latest hiding */
  last_modified: Date | null;
  /** how many lists the reference matched: 0 none, 2 ambiguous */
  matches: number;
}

/**
 * The list a URL names (its address, or its local part when unique), with what every archive page
 * needs about it, in one round trip: its URL key, whether this reader may read it, Last-Modified.
 * A private list this reader may not read is not there at all: not found by its address, and not
 * counted against a local part it shares with another (a 400 "names more than one list" told that
 * it exists, where the docs promise it is named to no one who may not read it).
 */
export async function listForReader(db: Queryable, ref: string, reader: Reader): Promise<ReaderList | null> {
  const key = ref.trim().toLowerCase();
  const { rows } = await db.query<ReaderList>({
    name: 'archive-list-for-reader',
    text: `with found as (select * from lists
                        where (address = $1 or ($2 and local_part = $1))
                          and (archive <> 'private' or can_read_archive(id, archive, $3, $4))
                        order by id limit 2)
           select l.*, ${LIST_KEY} as key, can_read_archive(l.id, l.archive, $3, $4) as readable,
                  (select count(*) from found)::int as matches,
                  ${listLastModified('l.id')} as last_modified
             from found l order by l.id limit 1`,
    values: [key, !key.includes('@'), reader.emails, reader.siteAdmin],
  });
  return rows[0] ?? null;
}

export interface IndexEntry {
  id: number;
  key: string;
  address: string;
  name: string;
  description: string;
  archive: ArchivePolicy;
  readable: boolean;
  messages: number;
  last_activity: Date | null;
  last_modified: Date | null;
}

/** The lists on the front page: all but private lists the reader cannot read. */
export async function archiveIndex(db: Queryable, reader: Reader, limit: number, offset: number): Promise<{ lists: IndexEntry[]; total: number; siteChanged: Date | null }> {
  const { rows } = await db.query<IndexEntry & { total: number; site_last_modified: Date | null }>({
    name: 'archive-index',
    text: `select l.id, ${LIST_KEY} as key, l.address, l.name, l.description, l.archive, r.readable,
            (select count(*) from list_messages lm where lm.list_id = l.id)::int
              - (select count(*) from list_messages lm where lm.list_id = l.id and lm.hidden_at is not null)::int as messages,
            (select lm.date from list_messages lm
              where lm.list_id = l.id and lm.hidden_at is null order by lm.date desc limit 1) as last_activity,
            ${listLastModified('l.id')} as last_modified,
            ${SITE_LAST_MODIFIED} as site_last_modified,
            count(*) over ()::int as total
       from lists l cross join lateral (select can_read_archive(l.id, l.archive, $1, $2) as readable) r
      where l.archive <> 'private' or r.readable
      order by l.address
      limit $3 offset $4`,
    values: [reader.emails, reader.siteAdmin, limit, offset],
  });
  return { lists: rows, total: rows[0]?.total ?? 0, siteChanged: rows[0]?.site_last_modified ?? null };
}

export interface MonthCount {
  month: string;
  messages: number;
}

/**
 * Months with messages, newest first: each month counted by a range scan of the list's date
 * index (a GROUP BY over every message computes a date per row, several times slower). Hidden
 * messages are few: they are subtracted.
 */
export async function listMonths(db: Queryable, listId: number): Promise<MonthCount[]> {
  const { rows } = await db.query<MonthCount>({
    name: 'archive-months',
    text: `with bounds as (
       select min(date) at time zone 'UTC' as lo, max(date) at time zone 'UTC' as hi from list_messages where list_id = $1
     ), months as (
       select m, m at time zone 'UTC' as first, (m + interval '1 month') at time zone 'UTC' as after
         from bounds, generate_series(date_trunc('month', bounds.lo), bounds.hi, interval '1 month') as m
     ), counted as (
       select months.m,
              (select count(*) from list_messages lm where lm.list_id = $1 and lm.date >= months.first and lm.date < months.after)
              - (select count(*) from list_messages lm
                  where lm.list_id = $1 and lm.hidden_at is not null and lm.date >= months.first and lm.date < months.after) as n
         from months
     )
     select to_char(m, 'YYYY-MM') as month, n::int as messages from counted where n > 0 order by m desc`,
    values: [listId],
  });
  return rows;
}

export interface ThreadSummary {
  thread_id: number;
  subject: string;
  root_message_id: string;
  first: Date;
  last: Date;
  /** messages of the thread in the period shown */
  messages: number;
  /** messages of the whole thread in this list */
  thread_messages: number;
  participants: string[];
  authors: number;
}

// Summary columns of one thread in one list, for a lateral join on t.thread_id.
const THREAD_TOTALS = `(select count(*)::int from messages x join list_messages y on y.message_id = x.id and y.list_id = $1
                          where x.thread_id = t.thread_id and y.hidden_at is null) as thread_messages`;

/** Threads with the latest activity in a list. */
export async function recentThreads(db: Queryable, listId: number, limit: number): Promise<ThreadSummary[]> {
  const { rows } = await db.query<ThreadSummary>({
    name: 'archive-recent-threads',
    text: `with latest as (
       select m.thread_id, m.date, m.subject, m.message_id, m.id, m.from_name, m.from_email
         from list_messages lm join messages m on m.id = lm.message_id
        where lm.list_id = $1 and lm.hidden_at is null
        order by lm.date desc limit 1000
     ), t as (
       select thread_id, max(date) as last from latest group by thread_id order by last desc limit $2
     )
     select t.thread_id, s.*, ${THREAD_TOTALS}
       from t cross join lateral (
         select (array_agg(m.subject order by m.date, m.id))[1] as subject,
                (array_agg(m.message_id order by m.date, m.id))[1] as root_message_id,
                min(m.date) as first, max(m.date) as last, count(*)::int as messages,
                (array_agg(distinct coalesce(nullif(m.from_name, ''), m.from_email)))[1:5] as participants,
                count(distinct m.from_email)::int as authors
           from messages m join list_messages lm on lm.message_id = m.id and lm.list_id = $1
          where m.thread_id = t.thread_id and lm.hidden_at is null) s
      order by t.last desc`,
    values: [listId, limit],
  });
  return rows;
}

/**
 * The threads with messages in [start, end), in order of their first message there. Counts and
 * dates are aggregated for the whole month; subjects and participants only for the page's threads.
 */
export async function monthThreads(db: Queryable, listId: number, start: Date, end: Date, limit: number, offset: number): Promise<{ threads: ThreadSummary[]; total: number; messages: number }> {
  const { rows } = await db.query<ThreadSummary & { total: number; month_messages: number }>({
    name: 'archive-month-threads',
    text: `with mm as (
       select m.thread_id, m.id, m.date, m.subject, m.message_id, m.from_name, m.from_email
         from list_messages lm join messages m on m.id = lm.message_id
        where lm.list_id = $1 and lm.date >= $2 and lm.date < $3 and lm.hidden_at is null
     ), t as (
       select thread_id, count(*)::int as messages, min(date) as first, max(date) as last,
              count(*) over ()::int as total, sum(count(*)) over ()::int as month_messages
         from mm group by thread_id
        order by first, thread_id
        limit $4 offset $5
     ), page as (
       select mm.* from mm join t using (thread_id)
     ), firsts as (
       select distinct on (thread_id) thread_id, subject, message_id as root_message_id from page order by thread_id, date, id
     ), people as (
       select thread_id, (array_agg(name order by seen))[1:5] as participants, count(*)::int as authors
         from (select thread_id, coalesce(nullif(from_name, ''), from_email) as name, min(date) as seen
                 from page group by thread_id, coalesce(nullif(from_name, ''), from_email)) x
        group by thread_id
     )
     select t.*, f.subject, f.root_message_id, p.participants, p.authors, ${THREAD_TOTALS}
       from t join firsts f using (thread_id) join people p using (thread_id)
      order by t.first, t.thread_id`,
    values: [listId, start, end, limit, offset],
  });
  return { threads: rows, total: rows[0]?.total ?? 0, messages: rows[0]?.month_messages ?? 0 };
}

export interface ThreadEntry {
  id: number;
  message_id: string;
  subject: string;
  from_name: string;
  from_email: string;
  date: Date;
  /** null for messages outside the page of bodies asked for (the outline shows them without) */
  body: string | null;
  body_truncated: boolean;
  has_attachments: boolean;
  depth: number;
  /** 1-based place in the thread's reading order */
  pos: number;
  /** the message it hangs from in this list (its nearest visible ancestor), and its Message-ID */
  parent: number | null;
  parent_message_id: string | null;
  total: number;
}

export interface ThreadWindow {
  /** the outline: entries in reading order, without bodies outside the body range */
  limit: number;
  offset: number;
  /** the entries whose bodies are read: places bodyFrom < pos <= bodyTo */
  bodyFrom: number;
  bodyTo: number;
  bodyChars?: number;
}

/** Threads of more messages than this are decoded and ordered in two turns of the event loop. */
const YIELD_ABOVE = 10_000;

/**
 * A thread's messages in one list as a tree, in reading order (each reply under its parent,
 * siblings by date), with their depth, place and parent. A message whose parent is hidden or
 * not in this list hangs from its nearest visible ancestor (mail/thread-order.ts works the order
 * out from the thread's ids, parents and dates, read by thread-nodes.ts). The outline window comes
 * back whole; bodies only for the body range (reading a body is most of a row's cost, and the page
 * shows a few of them).
 *
 * Nothing is kept between views: each reads and orders the thread again, so a message hidden or
 * added is in or out of every page at the next view, each page cut from the order of its own read.
 */
export async function threadTree(db: Queryable, listId: number, threadId: number, w: ThreadWindow): Promise<ThreadEntry[]> {
  // Every message of the thread, read in one statement: each view's page is cut from the order of
  // one snapshot of the thread.
  const nodes = await readThreadNodes(db, listId, threadId);
  // A page past the thread's end is answered before the thread is ordered: ?page=99999 of a
  // large thread would otherwise cost the whole order for a 404.
  let shown = 0;
  for (let i = 0; i < nodes.visible.length; i++) shown += nodes.visible[i];
  if (w.offset >= shown || w.bodyFrom >= shown) return [];
  // Decoding and ordering a large thread are a few milliseconds each: not in one turn of the
  // event loop, so that other requests of the process get in between.
  if (nodes.ids.length > YIELD_ABOVE) await new Promise((resolve) => setImmediate(resolve));
  const order = threadOrder(nodes);
  const total = order.ids.length;
  const from = w.offset;
  const to = Math.min(total, w.offset + w.limit);
  const inWindow = new Set<number>();
  for (let k = from; k < to; k++) inWindow.add(order.ids[k]);
  // A parent outside the window is read for its Message-ID alone (the page links to its permalink).
  const outside = new Set<number>();
  for (let k = from; k < to; k++) if (order.parents[k] !== 0 && !inWindow.has(order.parents[k])) outside.add(order.parents[k]);
  const withBody: number[] = [];
  for (let k = Math.max(from, w.bodyFrom); k < Math.min(to, w.bodyTo); k++) withBody.push(order.ids[k]);
  const { rows } = await db.query<Omit<ThreadEntry, 'depth' | 'pos' | 'parent' | 'parent_message_id' | 'total'>>({
    name: 'archive-thread-rows',
    text: `select m.id, m.message_id, m.subject, m.from_name, m.from_email, m.date,
                  case when m.id = any($2::bigint[]) then left(m.body, $3) end as body,
                  m.id = any($2::bigint[]) and length(m.body) > $3 as body_truncated,
                  m.has_attachments
             from messages m
            where m.id = any($1::bigint[])
              and exists (select 1 from list_messages lm where lm.list_id = $4 and lm.message_id = m.id and lm.hidden_at is null)`,
    // Shown in the list is asked again: a message hidden since the first read (a moderator, a
    // legal request) must not be sent in this page, which a cache in front may keep.
    values: [[...inWindow, ...outside], withBody, w.bodyChars ?? 20000, listId],
  });
  const byId = new Map(rows.map((r) => [r.id, r]));
  const entries: ThreadEntry[] = [];
  for (let k = from; k < to; k++) {
    const r = byId.get(order.ids[k]);
    // Hidden or deleted since the first read: left out of this view.
    if (!r) continue;
    const parentId = order.parents[k] || null;
    const parent = parentId === null ? undefined : byId.get(parentId);
    // Field by field: a copy of the row with fields added (`{ ...r, depth }`) takes V8's slow
    // path, 3-5 µs a row, 1.5 ms for a 300-message thread.
    entries.push({
      id: r.id, message_id: r.message_id, subject: r.subject, from_name: r.from_name, from_email: r.from_email, date: r.date,
      body: r.body, body_truncated: r.body_truncated, has_attachments: r.has_attachments,
      depth: order.depths[k], pos: k + 1, parent: parentId, parent_message_id: parent ? parent.message_id : null, total,
    });
  }
  return entries;
}

/**
 * Where a thread of this list went when it merged into another (its old URL redirects there): only
 * a thread that had messages in the list (thread_moves.lists, sql/0087; unknown for moves recorded
 * before), and only to a thread the list shows. Without both, another list's private thread that
 * merged into a public one redirected in the public list too, telling that it had been there.
 */
export async function movedThread(db: Queryable, listId: number, threadId: number): Promise<number | null> {
  const { rows } = await db.query<{ thread: number }>({
    name: 'archive-moved-thread',
    text: `with recursive chain (thread, n) as (
       select new_thread, 1 from thread_moves where old_thread = $1 and (lists is null or $2 = any(lists))
       union all
       select tm.new_thread, c.n + 1 from chain c join thread_moves tm on tm.old_thread = c.thread where c.n < 50
     ), last as (select thread from chain order by n desc limit 1)
     select thread from last
      where exists (select 1 from messages m join list_messages lm on lm.message_id = m.id
                     where m.thread_id = last.thread and lm.list_id = $2 and lm.hidden_at is null)`,
    values: [threadId, listId],
  });
  return rows[0]?.thread ?? null;
}

/**
 * The months before and after [start, end) that have messages the list shows, for month
 * navigation: a month whose messages are all hidden is no more linked than it is listed
 * (listMonths), or its link would tell readers when a hidden message was posted.
 */
export async function adjacentMonths(db: Queryable, listId: number, start: Date, end: Date): Promise<{ prev: string | null; next: string | null }> {
  const { rows } = await db.query<{ prev: string | null; next: string | null }>({
    name: 'archive-adjacent-months',
    text: `select to_char((select max(date) from list_messages where list_id = $1 and date < $2 and hidden_at is null) at time zone 'UTC', 'YYYY-MM') as prev,
            to_char((select min(date) from list_messages where list_id = $1 and date >= $3 and hidden_at is null) at time zone 'UTC', 'YYYY-MM') as next`,
    values: [listId, start, end],
  });
  return rows[0];
}

export interface ArchiveVersion {
  version: number;
  /** no change was in flight: every change counted is committed and visible */
  settled: boolean;
}

/** The archive change counter (archive_version() in sql/0011): the web's page cache keys on it. */
export async function archiveVersion(db: Queryable): Promise<ArchiveVersion> {
  const { rows } = await db.query<{ version: string; settled: boolean }>('select version, settled from archive_version()');
  return { version: Number(rows[0].version), settled: rows[0].settled };
}
