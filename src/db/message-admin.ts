import type { Queryable } from './pool.ts';

export interface ArchivedMessageRow {
  id: number;
  message_id: string;
  subject: string;
  from_name: string;
  from_email: string;
  date: Date;
  hidden_at: Date | null;
  hidden_reason: string | null;
  hidden_by: string | null;
}

/**
 * A list's archived messages for moderators, hidden ones included: newest first, optionally only
 * hidden ones, or matching a Message-ID, a sender or words of the subject.
 */
export async function listMessagesForModeration(
  db: Queryable, listId: number, f: { q?: string | null; hiddenOnly?: boolean }, limit: number, offset: number,
): Promise<{ rows: ArchivedMessageRow[]; total: number }> {
  const q = f.q?.trim() || null;
  const like = q ? `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
  const { rows } = await db.query<ArchivedMessageRow & { total: number }>(
    `select m.id, m.message_id, m.subject, m.from_name, m.from_email, m.date, lm.hidden_at, lm.hidden_reason, lm.hidden_by,
            count(*) over ()::int as total
       from list_messages lm join messages m on m.id = lm.message_id
      where lm.list_id = $1
        and (not $2 or lm.hidden_at is not null)
        and ($3::text is null or m.message_id = $3 or m.message_id = trim(both '<>' from $3)
             or m.from_email ilike $4 or m.subject ilike $4)
      order by lm.date desc, m.id desc
      limit $5 offset $6`,
    [listId, f.hiddenOnly ?? false, q, like, limit, offset],
  );
  return { rows: rows.map(({ total: _t, ...m }) => m), total: rows[0]?.total ?? 0 };
}

/** Whether a Message-ID is archived in a list (a moderator acts only on their lists' messages). */
export async function messageInList(db: Queryable, listId: number, messageId: string): Promise<boolean> {
  const { rows } = await db.query<{ found: boolean }>(
    `select exists (select 1 from list_messages lm join messages m on m.id = lm.message_id
                     where lm.list_id = $1 and m.message_id = $2) as found`,
    [listId, messageId],
  );
  return rows[0].found;
}
