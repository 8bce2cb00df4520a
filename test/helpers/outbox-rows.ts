/* The outbox rows of one archived post, as the delivery tests read them. */

import type { Queryable } from '../../src/db/pool.ts';
import { until } from './worker-process.ts';

export interface OutboxRow {
  recipient: string;
  state: string;
  attempts: number;
  last_error: string | null;
  locked_by: string | null;
}

/** The rows of the post with this Message-ID, by recipient. */
export async function outboxRowsOf(db: Queryable, messageId: string): Promise<OutboxRow[]> {
  const { rows } = await db.query<OutboxRow>(
    `select o.recipient, o.state, o.attempts, o.last_error, o.locked_by from outbox o join messages m on m.id = o.message_id
      where m.message_id = $1 order by o.recipient`,
    [messageId],
  );
  return rows;
}

/** The rows once every one of them has had its first attempt (or is done). */
export function attemptedRows(db: Queryable, messageId: string): Promise<OutboxRow[]> {
  return until(async () => {
    const rows = await outboxRowsOf(db, messageId);
    return rows.length > 0 && rows.every((r) => r.attempts > 0) && rows;
  }, `a first attempt at every copy of ${messageId}`);
}
