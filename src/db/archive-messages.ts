import type { ArchivePolicy } from './lists.ts';
import type { Queryable } from './pool.ts';
import { LIST_KEY, listLastModified, type Reader } from './archive.ts';

/** Read queries for one archived message: its page, its neighbours, its raw bytes; the feed. */

export interface MessageList {
  id: number;
  key: string;
  address: string;
  name: string;
  archive: ArchivePolicy;
  readable: boolean;
}

export interface ArchivedMessage {
  id: number;
  message_id: string;
  raw: Buffer;
  size: number;
  subject: string;
  from_name: string;
  from_email: string;
  date: Date;
  in_reply_to: string | null;
  thread_id: number;
  parent_id: number | null;
  body: string;
  has_attachments: boolean;
  received_at: Date;
  hidden_reason: string | null;
  hidden_at: Date | null;
  /** when it was last hidden or shown again (sql/0012) */
  visibility_changed_at: Date | null;
  /** the lists it reached, with whether this reader may read each */
  lists: MessageList[];
}

/** A message by Message-ID, with or without its raw bytes, and the lists it is in. */
export async function archivedMessage(db: Queryable, messageId: string, reader: Reader, withRaw: boolean): Promise<ArchivedMessage | null> {
  const { rows } = await db.query<ArchivedMessage>({
    name: 'archive-message',
    text: `select m.id, m.message_id, case when $4 then m.raw end as raw, m.size, m.subject, m.from_name, m.from_email, m.date,
            m.in_reply_to, m.thread_id, m.parent_id, case when $4 then m.body end as body, m.has_attachments, m.received_at,
            m.hidden_reason, m.hidden_at, m.visibility_changed_at,
            coalesce((select json_agg(json_build_object(
                        'id', l.id, 'address', l.address, 'name', l.name, 'archive', l.archive,
                        'key', ${LIST_KEY},
                        'readable', can_read_archive(l.id, l.archive, $2, $3)) order by l.id)
                        from list_messages lm join lists l on l.id = lm.list_id where lm.message_id = m.id), '[]') as lists
       from messages m where m.message_id = $1`,
    values: [messageId, reader.email, reader.siteAdmin, withRaw],
  });
  return rows[0] ?? null;
}

export interface Neighbour {
  message_id: string;
  subject: string;
  from_name: string;
  from_email: string;
  date: string;
}

export interface Neighbours {
  parent: Neighbour | null;
  prev_in_thread: Neighbour | null;
  next_in_thread: Neighbour | null;
  prev_by_date: Neighbour | null;
  next_by_date: Neighbour | null;
  replies: Neighbour[];
  thread_messages: number;
  thread_position: number;
  /** latest change to the list: newest message added, or latest hiding */
  last_modified: Date | null;
}

/**
 * The page query leaves out the raw bytes of messages larger than this (raw is null): reading
 * 10 MB of bytea costs hundreds of milliseconds of the web process's CPU, and the page of such a
 * message is built from its parse, kept in memory (web/archive/parsed-messages.ts).
 */
export const PAGE_RAW_MAX = 256 * 1024;

export interface MessagePage extends ArchivedMessage, Neighbours {
  /** the list the page is shown in: the one asked for if readable, else the first readable */
  list_id: number | null;
}

/**
 * Everything the permalink page needs in one round trip: the message (with its raw bytes, up to
 * PAGE_RAW_MAX), its
 * lists with this reader's access to each, and its neighbours in the list it is shown in.
 */
export async function messagePage(db: Queryable, messageId: string, reader: Reader, preferredList: string | null): Promise<MessagePage | null> {
  const pick = `json_build_object('message_id', x.message_id, 'subject', x.subject, 'from_name', x.from_name, 'from_email', x.from_email, 'date', x.date)`;
  const inThread = `from messages x join list_messages y on y.message_id = x.id and y.list_id = (select id from c) where x.thread_id = m.thread_id and x.hidden_at is null`;
  const inList = `from list_messages y join messages x on x.id = y.message_id where y.list_id = (select id from c) and x.hidden_at is null`;
  const { rows } = await db.query<MessagePage>({
    name: 'archive-message-page',
    text: `with m as (select * from messages where message_id = $1),
     ls as (
       select l.id, l.address, l.name, l.archive,
              ${LIST_KEY} as key,
              can_read_archive(l.id, l.archive, $2, $3) as readable
         from m join list_messages lm on lm.message_id = m.id join lists l on l.id = lm.list_id),
     c as (select id from ls where readable order by (key = $4 or address = $4) desc, id limit 1)
     select m.id, m.message_id, case when m.size <= ${PAGE_RAW_MAX} then m.raw end as raw, m.size, m.subject, m.from_name, m.from_email, m.date, m.in_reply_to, m.thread_id,
            m.parent_id, m.body, m.has_attachments, m.received_at, m.hidden_reason, m.hidden_at, m.visibility_changed_at,
            coalesce((select json_agg(ls order by ls.id) from ls), '[]') as lists,
            (select id from c) as list_id,
            (select ${pick} ${inThread} and x.id = m.parent_id) as parent,
            (select ${pick} ${inThread} and (x.date, x.id) < (m.date, m.id) order by x.date desc, x.id desc limit 1) as prev_in_thread,
            (select ${pick} ${inThread} and (x.date, x.id) > (m.date, m.id) order by x.date, x.id limit 1) as next_in_thread,
            (select ${pick} ${inList} and y.date <= m.date and (y.date < m.date or y.message_id < m.id) order by y.date desc, y.message_id desc limit 1) as prev_by_date,
            (select ${pick} ${inList} and y.date >= m.date and (y.date > m.date or y.message_id > m.id) order by y.date, y.message_id limit 1) as next_by_date,
            coalesce((select json_agg(z.r order by z.date) from (select ${pick} as r, x.date ${inThread} and x.parent_id = m.id order by x.date limit 100) z), '[]') as replies,
            (select count(*)::int ${inThread}) as thread_messages,
            (select count(*)::int ${inThread} and (x.date, x.id) <= (m.date, m.id)) as thread_position,
            ${listLastModified('(select id from c)')} as last_modified
       from m`,
    values: [messageId, reader.email, reader.siteAdmin, preferredList],
  });
  return rows[0] ?? null;
}

export interface FeedEntry {
  message_id: string;
  subject: string;
  from_name: string;
  from_email: string;
  date: Date;
  body: string;
}

/** The latest messages of a list, for its Atom feed. */
export async function latestMessages(db: Queryable, listId: number, limit: number, bodyChars = 4000): Promise<FeedEntry[]> {
  const { rows } = await db.query<FeedEntry>(
    `select m.message_id, m.subject, m.from_name, m.from_email, m.date, left(m.body, $3) as body
       from list_messages lm join messages m on m.id = lm.message_id
      where lm.list_id = $1 and m.hidden_at is null
      order by lm.date desc, lm.message_id desc limit $2`,
    [listId, limit, bodyChars],
  );
  return rows;
}
