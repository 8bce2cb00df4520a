/* Read queries for one Message-ID: its permalink page, its neighbours, its raw bytes; the feed. */

import type { ArchivePolicy } from '../list-policies.ts';
import type { Queryable } from './pool.ts';
import { listLastModified, type Reader } from './archive.ts';
import { LIST_KEY } from './list-key.ts';

/**
 * One (message, list) pair under a Message-ID: a Message-ID may name several messages (one per
 * list at most, sql/0013), and a message may be in several lists, each with its own hiding.
 */
export interface MessageCopy {
  /** the message's row id */
  mid: number;
  subject: string;
  from_name: string;
  from_email: string;
  date: string;
  received_at: string;
  list_id: number;
  key: string;
  address: string;
  name: string;
  archive: ArchivePolicy;
  /** this reader may read the list's archive */
  readable: boolean;
  hidden_at: string | null;
  hidden_reason: string | null;
  visibility_changed_at: string | null;
}

export interface ArchivedMessage {
  id: number;
  message_id: string;
  /** null when the query left the bytes out (see PAGE_RAW_MAX, findPermalink's withRaw) */
  raw: Buffer | null;
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
}

/**
 * What a permalink query returns: every pair under the Message-ID (for the access decision, the
 * choice page and the "also in" links), and the message chosen for this reader (null when none is
 * readable and shown): the copy in the list asked for (?list=) if this reader may see it there,
 * else the readable, shown copy in the list with the lowest id.
 */
export interface Permalink {
  copies: MessageCopy[];
  message: ArchivedMessage | null;
  /** the list the chosen message is shown in */
  list_id: number | null;
}

/**
 * The pairs under Message-ID $1 for the reader ($2 verified addresses, $3 site administrator), and the pair
 * chosen for them, preferring list $4 (its URL key or address).
 */
const COPIES = `copies as (
       select m.id as mid, m.subject, m.from_name, m.from_email, m.date, m.received_at,
              l.id as list_id, ${LIST_KEY} as key, l.address, l.name, l.archive,
              can_read_archive(l.id, l.archive, $2, $3) as readable,
              lm.hidden_at, lm.hidden_reason, lm.visibility_changed_at
         from messages m join list_messages lm on lm.message_id = m.id join lists l on l.id = lm.list_id
        where m.message_id = $1),
     c as (select mid, list_id from copies where readable and hidden_at is null
            order by (key = $4 or address = $4) desc, list_id limit 1)`;

const MESSAGE_COLUMNS = `m.id, m.message_id, m.size, m.subject, m.from_name, m.from_email, m.date, m.in_reply_to, m.thread_id,
            m.parent_id, m.has_attachments, m.received_at`;

/** The pairs under a Message-ID for this reader, without the messages themselves. */
export async function messageCopies(db: Queryable, messageId: string, reader: Reader): Promise<MessageCopy[]> {
  const { rows } = await db.query<{ copies: MessageCopy[] }>({
    name: 'message-copies',
    text: `with ${COPIES} select coalesce((select json_agg(copies order by copies.list_id) from copies), '[]') as copies`,
    values: [messageId, reader.emails, reader.siteAdmin, null],
  });
  return rows[0].copies;
}

/**
 * A permalink's pairs and chosen message, with the message's text and, unless `withRaw` is false,
 * its raw bytes (the raw URL; attachments are served from the web's kept parse and need them only
 * to parse, web/archive/parsed-messages.ts): raw is null without them, and for a message of
 * `rawBelow` bytes or more (the raw URL reads a large one only once it has a download slot).
 */
export async function findPermalink(db: Queryable, messageId: string, reader: Reader, preferredList: string | null = null, withRaw = true, rawBelow: number | null = null): Promise<Permalink> {
  const { rows } = await db.query<{ copies: MessageCopy[]; list_id: number | null; message: ArchivedMessage | null; raw: Buffer | null; body: string | null }>({
    name: 'permalink',
    text: `with ${COPIES}
     select coalesce((select json_agg(copies order by copies.list_id) from copies), '[]') as copies,
            (select list_id from c) as list_id,
            (select row_to_json(x) from (select ${MESSAGE_COLUMNS} from messages m where m.id = (select mid from c)) x) as message,
            (select m.raw from messages m where $5 and m.id = (select mid from c) and ($6::int is null or m.size < $6)) as raw,
            (select m.body from messages m where m.id = (select mid from c)) as body`,
    values: [messageId, reader.emails, reader.siteAdmin, preferredList, withRaw, rawBelow],
  });
  const r = rows[0];
  return { copies: r.copies, list_id: r.list_id, message: r.message ? revive(Object.assign(r.message, { raw: r.raw, body: r.body ?? '' })) : null };
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

export interface MessageWithNeighbours extends Permalink {
  neighbours: Neighbours | null;
}

/**
 * The page query leaves out the raw bytes of messages larger than this (raw is null): reading
 * 10 MB of bytea costs hundreds of milliseconds of the web process's CPU, and the page of such a
 * message is built from its parse, kept in memory (web/archive/parsed-messages.ts).
 */
export const PAGE_RAW_MAX = 256 * 1024;

/**
 * Everything the permalink page needs in one round trip: the pairs under the Message-ID with this
 * reader's access to each, the chosen message (with its raw bytes, up to PAGE_RAW_MAX) and its
 * neighbours in the list it is shown in. Only messages shown in that list are neighbours.
 */
export async function messageWithNeighbours(db: Queryable, messageId: string, reader: Reader, preferredList: string | null): Promise<MessageWithNeighbours> {
  const pick = `json_build_object('message_id', x.message_id, 'subject', x.subject, 'from_name', x.from_name, 'from_email', x.from_email, 'date', x.date)`;
  const inThread = `from messages x join list_messages y on y.message_id = x.id and y.list_id = (select list_id from c) where x.thread_id = m.thread_id and y.hidden_at is null`;
  const inList = `from list_messages y join messages x on x.id = y.message_id where y.list_id = (select list_id from c) and y.hidden_at is null`;
  // The replies' ids from messages_by_thread alone (it carries id and parent_id, sql/0059), then
  // those rows by id: testing parent_id on the rows themselves read every message of the thread.
  const replyIds = 'select r.id from messages r where r.thread_id = m.thread_id and r.parent_id = m.id';
  const { rows } = await db.query<{ copies: MessageCopy[]; list_id: number | null; message: ArchivedMessage | null; raw: Buffer | null; body: string | null; neighbours: Neighbours | null }>({
    name: 'message-with-neighbours',
    text: `with ${COPIES},
     m as (select * from messages where id = (select mid from c))
     select coalesce((select json_agg(copies order by copies.list_id) from copies), '[]') as copies,
            (select list_id from c) as list_id,
            (select row_to_json(x) from (select ${MESSAGE_COLUMNS} from m) x) as message,
            (select raw from m where size <= ${PAGE_RAW_MAX}) as raw, (select body from m) as body,
            (select json_build_object(
              'parent', (select ${pick} ${inThread} and x.id = m.parent_id),
              'prev_in_thread', (select ${pick} ${inThread} and (x.date, x.id) < (m.date, m.id) order by x.date desc, x.id desc limit 1),
              'next_in_thread', (select ${pick} ${inThread} and (x.date, x.id) > (m.date, m.id) order by x.date, x.id limit 1),
              'prev_by_date', (select ${pick} ${inList} and y.date <= m.date and (y.date < m.date or y.message_id < m.id) order by y.date desc, y.message_id desc limit 1),
              'next_by_date', (select ${pick} ${inList} and y.date >= m.date and (y.date > m.date or y.message_id > m.id) order by y.date, y.message_id limit 1),
              'replies', coalesce((select json_agg(z.r order by z.date) from (select ${pick} as r, x.date from messages x join list_messages y on y.message_id = x.id and y.list_id = (select list_id from c) where x.id = any(array(${replyIds})) and y.hidden_at is null order by x.date limit 100) z), '[]'),
              'thread_messages', (select count(*)::int ${inThread}),
              'thread_position', (select count(*)::int ${inThread} and (x.date, x.id) <= (m.date, m.id)),
              'last_modified', ${listLastModified('(select list_id from c)')})
              from m) as neighbours`,
    values: [messageId, reader.emails, reader.siteAdmin, preferredList],
  });
  const r = rows[0];
  const neighbours = r.neighbours ? Object.assign(r.neighbours, { last_modified: r.neighbours.last_modified ? new Date(r.neighbours.last_modified) : null }) : null;
  return { copies: r.copies, list_id: r.list_id, message: r.message ? revive(Object.assign(r.message, { raw: r.raw, body: r.body ?? '' })) : null, neighbours };
}

/**
 * Dates come back from row_to_json as strings. The objects are this read's own (parsed from its
 * JSON) and are completed in place: a copy with fields added (`{ ...m, date }`) takes V8's slow
 * path, a few µs each on every message page.
 */
function revive(m: ArchivedMessage): ArchivedMessage {
  return Object.assign(m, { date: new Date(m.date), received_at: new Date(m.received_at) });
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
      where lm.list_id = $1 and lm.hidden_at is null
      order by lm.date desc, lm.message_id desc limit $2`,
    [listId, limit, bodyChars],
  );
  return rows;
}
