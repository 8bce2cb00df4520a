/* What a reply from the web (web/archive/reply.ts) needs of the archive: the parent's References, and what became of the reply. */

import type { Queryable } from './pool.ts';

/** The References an archived message was threaded by (messages.refs), oldest first. */
export async function messageReferences(db: Queryable, messageRowId: number): Promise<string[]> {
  const { rows } = await db.query<{ refs: string[] }>('select refs from messages where id = $1', [messageRowId]);
  return rows[0]?.refs ?? [];
}

export type PostFate = 'archived' | 'held' | 'not posted';

/** Where a post went in a list once the moderation rules decided: into the archive, held for a moderator, or neither (dropped by a rule). */
export async function postFate(db: Queryable, listId: number, messageId: string): Promise<PostFate> {
  const { rows } = await db.query<{ archived: boolean; held: boolean }>(
    `select exists (select 1 from messages m join list_messages lm on lm.message_id = m.id where m.message_id = $1 and lm.list_id = $2) as archived,
            exists (select 1 from held_messages h where h.message_id = $1 and h.list_id = $2 and h.state = 'held') as held`,
    [messageId, listId],
  );
  return rows[0].archived ? 'archived' : rows[0].held ? 'held' : 'not posted';
}
