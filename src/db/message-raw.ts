import type { Queryable } from './pool.ts';

/**
 * The raw bytes of one archived message by its row id, for the web's parse cache
 * (web/archive/parsed-messages.ts): pages of large messages are built without them once their
 * parse is kept, so they are read only when a parse is needed.
 */
export async function messageRaw(db: Queryable, id: number): Promise<Buffer | null> {
  const { rows } = await db.query<{ raw: Buffer }>({ name: 'message-raw', text: 'select raw from messages where id = $1', values: [id] });
  return rows[0]?.raw ?? null;
}
