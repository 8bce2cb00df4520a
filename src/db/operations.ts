import type { Queryable } from './pool.ts';

/** Read-only figures for the operations dashboard: the outbound queue, delivery history, errors. */

export async function queueDepth(db: Queryable): Promise<{ state: string; count: number; oldest: Date | null }[]> {
  const { rows } = await db.query<{ state: string; count: number; oldest: Date | null }>(
    `select s.state, count(o.id)::int as count, min(o.created_at) as oldest
       from unnest(array['queued', 'sending', 'sent', 'failed']) with ordinality s(state, ord)
       left join outbox o on o.state = s.state
      group by s.state, s.ord order by s.ord`,
  );
  return rows;
}

export interface HourlyDeliveries {
  hour: Date;
  sent: number;
  deferred: number;
  failed: number;
  bounced: number;
}

/** One row per hour for the last `hours` hours, zeros where nothing happened. */
export async function deliveriesByHour(db: Queryable, hours: number): Promise<HourlyDeliveries[]> {
  const { rows } = await db.query<HourlyDeliveries>(
    `select g.hour, coalesce(d.sent, 0) as sent, coalesce(d.deferred, 0) as deferred,
            coalesce(d.failed, 0) as failed, coalesce(d.bounced, 0) as bounced
       from generate_series(date_trunc('hour', now()) - make_interval(hours => $1 - 1), date_trunc('hour', now()), interval '1 hour') g(hour)
       left join delivery_hourly d on d.hour = g.hour
      order by g.hour`,
    [hours],
  );
  return rows;
}

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

export async function deliveryWorkers(db: Queryable) {
  const { rows } = await db.query<{ name: string; host: string; pid: number; started_at: Date; heartbeat_at: Date }>(
    'select name, host, pid, started_at, heartbeat_at from delivery_workers order by name',
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
