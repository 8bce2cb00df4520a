/*
 * Posts whose copies were refused for their size (sql/0031): one row per post and list, the guard
 * that makes the notice about it go out once.
 */

import type { Queryable } from './pool.ts';

/** Records the refusal; true only for the first caller, who then tells the owners and the author. */
export async function claimSizeRefusal(db: Queryable, listId: number, messageId: number, response: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `insert into size_refusals (list_id, message_id, response) values ($1, $2, $3)
     on conflict (list_id, message_id) do nothing`,
    [listId, messageId, response.slice(0, 1000)],
  );
  return rowCount === 1;
}

export interface RefusedPost {
  message_id: string;
  subject: string;
  from_email: string;
  size: number;
}

/** What the notice says about the post. */
export async function refusedPost(db: Queryable, messageId: number): Promise<RefusedPost | null> {
  const { rows } = await db.query<RefusedPost>('select message_id, subject, from_email, size from messages where id = $1', [messageId]);
  return rows[0] ?? null;
}
