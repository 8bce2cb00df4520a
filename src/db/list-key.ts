/*
 * A list's URL key, the LIST of /lists/LIST/ (docs/urls.md; mail/urls.ts builds the links): its
 * local part when no other list shares it, else its full address. This is the one definition:
 * queries select `${LIST_KEY} as key` for a list row `l`, and listKey() asks it for one list.
 */

import type { Queryable } from './pool.ts';

export const LIST_KEY = `case when exists (select 1 from lists o where o.local_part = l.local_part and o.id <> l.id)
                       then l.address else l.local_part end`;

/** The URL key of one list. */
export async function listKey(db: Queryable, listId: number): Promise<string> {
  const { rows } = await db.query<{ key: string }>({ name: 'list-key', text: `select ${LIST_KEY} as key from lists l where l.id = $1`, values: [listId] });
  return rows[0].key;
}
