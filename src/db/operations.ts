/*
 * Read-only figures for the operations dashboard beyond the queue's own (db/outbox.ts queueStats,
 * deliveryHistory): recent delivery problems and site totals.
 */

import type { Queryable } from './pool.ts';

export async function recentFailedDeliveries(db: Queryable, limit: number) {
  const { rows } = await db.query<{ id: number; recipient: string; list_address: string | null; attempts: number; last_error: string | null; at: Date }>(
    `select o.id, o.recipient, l.address as list_address, o.attempts, o.last_error, coalesce(o.sent_at, o.run_at) as at
       from outbox o left join lists l on l.id = o.list_id
      where o.state = 'failed' or (o.state = 'queued' and o.attempts > 0)
      order by o.id desc limit $1`,
    [limit],
  );
  return rows;
}

export async function siteTotals(db: Queryable) {
  const { rows } = await db.query<{ lists: number; members: number; messages: number; held: number; accounts: number }>(
    `select (select count(*) from lists)::int as lists,
            (select count(*) from members where status in ('active', 'disabled'))::int as members,
            (select count(*) from messages)::int as messages,
            (select count(*) from held_messages where state = 'held')::int as held,
            (select count(*) from accounts)::int as accounts`,
  );
  return rows[0];
}
