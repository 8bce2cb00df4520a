import crypto from 'node:crypto';
import type { Queryable } from './pool.ts';

/**
 * Counts one hit against `key` in a fixed window and tells whether it is still within `limit`.
 * Keys name what is limited and by whom, e.g. `subscribe:ip:203.0.113.9`, `login:email:a@b.c`.
 */
export async function allowHit(db: Queryable, key: string, limit: number, windowSeconds: number): Promise<boolean> {
  key = storableKey(key);
  const { rows } = await db.query<{ hits: number }>(
    `insert into rate_limits (key, window_start, hits) values ($1, now(), 1)
     on conflict (key) do update set
       hits = case when rate_limits.window_start < now() - make_interval(secs => $2) then 1 else rate_limits.hits + 1 end,
       window_start = case when rate_limits.window_start < now() - make_interval(secs => $2) then now() else rate_limits.window_start end
     returning hits`,
    [key, windowSeconds],
  );
  return rows[0].hits <= limit;
}

/**
 * The part of a client's IP address that limits count it by: an IPv4 address whole, an IPv6
 * address by its /64, the network one subscriber is given (each of its hosts may take any of
 * 2^64 addresses, and did: 13 subscription requests from 2001:db8:1:2::1 to ::13 all passed a
 * limit of 10 per IP). An IPv4 address written as IPv6 (::ffff:192.0.2.1) is IPv4.
 */
export function clientKey(ip: string | undefined | null): string {
  if (!ip) return '';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1];
  if (!ip.includes(':')) return ip;
  const [head, tail = ''] = ip.toLowerCase().split('%')[0].split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  // "::" stands for as many zero groups as make eight: the first four are the network.
  const groups = ip.includes('::') ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/**
 * Keys carry addresses from strangers: one with control characters (NUL cannot be stored) or of
 * any length becomes its readable start and a hash, so that counting it can never fail.
 */
function storableKey(key: string): string {
  if (key.length <= 300 && !/[\u0000-\u001f\u007f]/.test(key)) return key;
  return `${key.slice(0, 100).replace(/[\u0000-\u001f\u007f]/g, '?')}#${crypto.createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}

/**
 * How many hits each key has in its current window, without counting one (0 for a key with no
 * window, or an expired one): for limits that count only failures, checked before the attempt.
 */
export async function currentHits(db: Queryable, keys: string[], windowSeconds: number): Promise<number[]> {
  const { rows } = await db.query<{ hits: number }>(
    `select coalesce(r.hits, 0) as hits
       from unnest($1::text[]) with ordinality as k(key, n)
       left join rate_limits r on r.key = k.key and r.window_start >= now() - make_interval(secs => $2)
      order by k.n`,
    [keys.map(storableKey), windowSeconds],
  );
  return rows.map((r) => r.hits);
}

/** Forgets a key (e.g. after a successful login). */
export async function clearHits(db: Queryable, key: string): Promise<void> {
  key = storableKey(key);
  await db.query('delete from rate_limits where key = $1', [key]);
}

/**
 * Drops expired windows, and the hits of sliding counts (lockSlidingCount) older than that;
 * called from periodic maintenance.
 */
export async function pruneRateLimits(db: Queryable, olderThanSeconds = 86_400): Promise<number> {
  const { rowCount } = await db.query('delete from rate_limits where window_start < now() - make_interval(secs => $1)', [olderThanSeconds]);
  const hits = await db.query('delete from rate_limit_hits where at <= now() - make_interval(secs => $1)', [olderThanSeconds]);
  return (rowCount ?? 0) + (hits.rowCount ?? 0);
}

/** When a sliding count, as countSlidingHits leaves it, takes more again. */
export interface SlidingRoom {
  /** the first moment its last `windowSeconds` hold fewer hits than the limit (now when they do) */
  endsAt: Date;
  /** seconds until then, by the database's clock (a Retry-After from this machine's would be off by its skew) */
  secondsLeft: number;
}

/**
 * Locks `key`'s sliding count until the transaction ends and returns its hits in the last
 * `windowSeconds` (by the database's clock), so that a caller can decide how many it may take
 * and count them with countSlidingHits in the same transaction: two processes taking from one
 * key wait for each other (an advisory lock, which holds for a key with no row yet), and a
 * transaction rolled back takes nothing. The key's hits older than the window are deleted here.
 * Unlike a fixed window, no `windowSeconds` ever hold more than the limit the caller keeps to.
 */
export async function lockSlidingCount(tx: Queryable, key: string, windowSeconds: number): Promise<number> {
  key = storableKey(key);
  await tx.query(`select pg_advisory_xact_lock(hashtext('rate-limit-hits'), hashtext($1))`, [key]);
  await tx.query('delete from rate_limit_hits where key = $1 and at <= now() - make_interval(secs => $2)', [key, windowSeconds]);
  const { rows } = await tx.query<{ hits: number }>('select coalesce(sum(hits), 0)::int as hits from rate_limit_hits where key = $1', [key]);
  return rows[0].hits;
}

/**
 * Counts `n` hits against a key lockSlidingCount locked in this transaction (none for 0), and
 * says when it has room under `limit` again: when enough of its oldest hits have left the window
 * that those after them are fewer than the limit.
 */
export async function countSlidingHits(tx: Queryable, key: string, n: number, limit: number, windowSeconds: number): Promise<SlidingRoom> {
  key = storableKey(key);
  // When they are taken (after any wait for the lock), so that they leave the window no earlier.
  if (n > 0) await tx.query('insert into rate_limit_hits (key, at, hits) values ($1, clock_timestamp(), $2)', [key, n]);
  const { rows } = await tx.query<{ ends_at: Date; seconds_left: number }>(
    `with w as (
       select at, hits, sum(hits) over (order by at desc rows unbounded preceding) - hits as after
         from rate_limit_hits where key = $1 and at > now() - make_interval(secs => $3)),
     room as (
       select case when (select coalesce(sum(hits), 0) from w) < $2 then now()
                   else (select min(at) from w where after < $2) + make_interval(secs => $3) end as ends_at)
     select ends_at, greatest(0, extract(epoch from ends_at - now()))::float8 as seconds_left from room`,
    [key, limit, windowSeconds],
  );
  return { endsAt: rows[0].ends_at, secondsLeft: rows[0].seconds_left };
}
