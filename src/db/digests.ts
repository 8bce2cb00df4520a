import type { DigestFormat } from '../list-policies.ts';
import type { ListRow } from './lists.ts';
import type { Queryable } from './pool.ts';

// Messages waiting for a list's next digest (accept_post in sql/0007 adds them), and the digests' numbering.
/**
 * Lists whose digest is due: the waiting messages reach the size threshold, or the oldest has
 * waited the digest interval (a day by default), whichever comes first.
 */
export async function listsWithDueDigest(db: Queryable, onlyList: number | null = null): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `select l.id from lists l join digest_items d on d.list_id = l.id
      where $1::bigint is null or l.id = $1
      group by l.id
     having sum(d.size) >= min(l.digest_size_threshold)
         or min(d.added_at) <= now() - make_interval(hours => min(l.digest_interval_hours))`,
    [onlyList],
  );
  return rows.map((r) => Number(r.id));
}

/** Whether this list's digest is due (listsWithDueDigest's test for one list). */
export async function digestDue(db: Queryable, listId: number): Promise<boolean> {
  return (await listsWithDueDigest(db, listId)).length > 0;
}

/**
 * Locks the list for digesting; null when another worker is at it. FOR NO KEY UPDATE keeps a
 * second builder (and a settings change or a delete) out, but not the key-share locks of rows
 * that name the list: with FOR UPDATE every post to the list, and every subscription, waited
 * while the issue was built and its copies queued.
 */
export async function lockListForDigest(db: Queryable, listId: number): Promise<ListRow | null> {
  const { rows } = await db.query<ListRow>('select * from lists where id = $1 for no key update skip locked', [listId]);
  return rows[0] ?? null;
}

export interface DigestSource {
  id: number;
  message_id: string;
  raw: Buffer;
  subject: string;
  from_name: string;
  from_email: string;
  date: Date;
  body: string;
}

/** Drops the waiting posts that were hidden since: no digest carries them. */
export async function dropHiddenDigestItems(db: Queryable, listId: number): Promise<void> {
  await db.query(
    `delete from digest_items d using list_messages lm
      where d.list_id = $1 and lm.list_id = $1 and lm.message_id = d.message_id and lm.hidden_at is not null`,
    [listId],
  );
}

/** Drops all the waiting posts of a list (nobody reads its digests). */
export async function dropDigestItems(db: Queryable, listId: number): Promise<void> {
  await db.query('delete from digest_items where list_id = $1', [listId]);
}

/**
 * Removes and returns the posts of a list's next digest issue, in date order (inside the issue's
 * transaction): the oldest waiting posts, up to and including the one that reaches `threshold`
 * bytes (as Mailman fills a digest), and never past `maxBytes` together, but always at least one.
 * The others wait for the next issue. Sizes are the posts' raw sizes (digest_items.size).
 */
export async function takeDigestItems(db: Queryable, listId: number, threshold: number, maxBytes: number): Promise<DigestSource[]> {
  const { rows } = await db.query<DigestSource>(
    `with waiting as (
       select d.message_id, d.size, row_number() over w as n, sum(d.size) over w as upto
         from digest_items d join messages m on m.id = d.message_id
        where d.list_id = $1
       window w as (order by m.date, m.id)
     ), taken as (
       delete from digest_items d using waiting w
        where d.list_id = $1 and d.message_id = w.message_id
          and (w.n = 1 or (w.upto - w.size < $2 and w.upto <= $3))
       returning d.message_id
     )
     select m.id, m.message_id, m.raw, m.subject, m.from_name, m.from_email, m.date, m.body
       from messages m join taken t on t.message_id = m.id
      order by m.date, m.id`,
    [listId, threshold, maxBytes],
  );
  return rows;
}

/** Advances the issue number; a new volume starts each calendar year. */
export async function nextDigestIssue(db: Queryable, listId: number): Promise<{ volume: number; issue: number }> {
  const { rows } = await db.query<{ volume: number; issue: number }>(
    `update lists set
        digest_volume = case when digest_last_sent_at is not null and extract(year from digest_last_sent_at) < extract(year from now())
                             then digest_volume + 1 else digest_volume end,
        digest_issue = case when digest_last_sent_at is not null and extract(year from digest_last_sent_at) < extract(year from now())
                            then 1 else digest_issue + 1 end,
        digest_last_sent_at = now()
      where id = $1 returning digest_volume as volume, digest_issue as issue`,
    [listId],
  );
  return rows[0];
}

export interface DigestMember {
  id: number;
  email: string;
  token: string;
  digest_format: DigestFormat;
}

export async function digestMembers(db: Queryable, listId: number): Promise<DigestMember[]> {
  const { rows } = await db.query<DigestMember>(
    `select id, email, token, digest_format from members where list_id = $1 and status = 'active' and mode = 'digest' order by id`,
    [listId],
  );
  return rows;
}
