/*
 * The outbound queue (sql/0003_delivery.sql): one row per (message, recipient). Rows are written
 * in the transaction that accepts a post, claimed by workers with FOR UPDATE SKIP LOCKED, and
 * finished in bulk, one statement per batch.
 */

import type { PostChecks } from '../mail/post-checks.ts';
import type { Queryable } from './pool.ts';

export type OutboxKind = 'post' | 'digest' | 'notice';
export type OutboxState = 'queued' | 'sending' | 'sent' | 'failed' | 'cancelled';

// Also named in accept_post (sql/0007), which wakes the workers for every accepted post.
export const OUTBOX_CHANNEL = 'listkeeper_outbox';

export interface ClaimedRow {
  id: number;
  kind: OutboxKind;
  list_id: number | null;
  message_id: number | null;
  mail_id: number | null;
  member_id: number | null;
  member_token: string | null;
  recipient: string;
  domain: string;
  envelope_from: string;
  attempts: number;
  created_at: Date;
}

/** Wakes the workers once the current transaction commits (a hint: they poll as well). */
export async function notifyOutbox(db: Queryable): Promise<void> {
  await db.query(`select pg_notify($1, '')`, [OUTBOX_CHANNEL]);
}

/** Stores a composed message (notice, digest, forwarded mail) once, for any number of rows. */
export async function insertOutboundMail(db: Queryable, raw: Buffer): Promise<number> {
  const { rows } = await db.query<{ id: number }>('insert into outbound_mail (raw) values ($1) returning id', [raw]);
  return rows[0].id;
}

export interface MailRecipient {
  email: string;
  envelopeFrom: string;
  memberId?: number | null;
  memberToken?: string | null;
}

/** Queues a composed message for some recipients; returns the new rows' ids. */
export async function enqueueMail(db: Queryable, kind: OutboxKind, listId: number | null, mailId: number, recipients: MailRecipient[]): Promise<number[]> {
  if (recipients.length === 0) return [];
  const { rows } = await db.query<{ id: number }>(
    `insert into outbox (kind, list_id, mail_id, member_id, member_token, recipient, domain, envelope_from)
     select $1, $2, $3, u.member_id, u.token, u.email, split_part(u.email, '@', 2), u.envelope_from
       from unnest($4::text[], $5::text[], $6::bigint[], $7::text[]) as u(email, envelope_from, member_id, token)
     returning id`,
    [
      kind, listId, mailId,
      recipients.map((r) => r.email),
      recipients.map((r) => r.envelopeFrom),
      recipients.map((r) => r.memberId ?? null),
      recipients.map((r) => r.memberToken ?? null),
    ],
  );
  return rows.map((r) => r.id);
}

export interface Claim {
  /** rows to send now, locked by the worker */
  rows: ClaimedRow[];
  /** due rows settled as cancelled instead: nobody should get them any more (CANCEL_REASON) */
  cancelled: number;
}

/**
 * Why a due row is no longer to be sent, or null. A copy may wait days for a retry: meanwhile its
 * member can leave, be disabled, pause delivery or switch to digests, and a moderator can hide the
 * post. Notices (confirmations, probes) go whatever the member's state: they are about it.
 * Reads the member by primary key and the post through list_messages_pkey (it includes hidden_at).
 */
const CANCEL_REASON = `case
    when o.kind = 'notice' or o.member_id is null then null
    when m.status is distinct from 'active' then 'not sent: the member is ' || coalesce(m.status, 'gone')
    when o.kind = 'post' and lm.hidden_at is not null then 'not sent: the post was hidden by a moderator'
    when o.kind = 'post' and m.mode <> 'each' then 'not sent: the member now takes ' || m.mode
    when o.kind = 'digest' and m.mode = 'nomail' then 'not sent: the member paused delivery'
  end`;

/**
 * Claims up to `limit` due rows for one worker. Rows locked by another worker are skipped; rows
 * nobody should get any more are settled in the same statement, as cancelled with the reason.
 */
export async function claimBatch(db: Queryable, worker: string, limit: number): Promise<Claim> {
  const { rows } = await db.query<ClaimedRow & { cancel: string | null }>(
    `with j as (select id from outbox where state = 'queued' and run_at <= now()
                 order by run_at, id limit $2 for update skip locked),
     c as (select o.id, ${CANCEL_REASON} as cancel
             from j join outbox o on o.id = j.id
             left join members m on m.id = o.member_id
             left join list_messages lm on lm.list_id = o.list_id and lm.message_id = o.message_id)
     update outbox o set state = case when c.cancel is null then 'sending' else 'cancelled' end,
                         locked_by = case when c.cancel is null then $1 end,
                         locked_at = case when c.cancel is null then now() else o.locked_at end,
                         last_error = coalesce(c.cancel, o.last_error)
       from c where o.id = c.id
     returning o.id, o.kind, o.list_id, o.message_id, o.mail_id, o.member_id, o.member_token,
               o.recipient, o.domain, o.envelope_from, o.attempts, o.created_at, c.cancel`,
    [worker, limit],
  );
  const claimed: ClaimedRow[] = [];
  for (const { cancel, ...row } of rows) if (cancel === null) claimed.push(row);
  return { rows: claimed, cancelled: rows.length - claimed.length };
}

type HourlyColumn = 'sent' | 'deferred' | 'failed' | 'bounced';

/**
 * The one statement that adds to this hour's counts (delivery_hourly): `count` is an SQL
 * expression, read from `from` when given (the rows a statement's `done` step changed).
 */
function addToHour(column: HourlyColumn, count: string, from = ''): string {
  return `insert into delivery_hourly (hour, ${column}) select date_trunc('hour', now()), ${count} ${from}
   on conflict (hour) do update set ${column} = delivery_hourly.${column} + excluded.${column}`;
}

const ROWS_DONE = ['count(*)', 'from done having count(*) > 0'] as const;

/**
 * A claimed row's result is written only while the row's attempts are what the claim read: the
 * write is then applied once, however often it is tried. A write whose commit was not heard (the
 * connection lost after it) is tried again, and counted attempts twice, pushed the retry further
 * out and counted the hour twice; a row requeued (reclaimStale) and sent again by another worker
 * has its result written by one of the two, not both. Rows requeued and not yet sent again still
 * take their result: what was sent is recorded, not sent twice.
 */
const CLAIMED = 'o.id = u.id and o.attempts = u.attempts';
/**
 * CLAIMED, and not another worker's now: a row requeued from this worker (it looked dead) and
 * claimed by another since is that worker's to settle. A late deferral or refusal written over it
 * put it back in the queue (or failed it) while the other worker was sending it, whose result then
 * matched nothing: the copy went out a third time, or its real result was lost. A late success
 * still counts (markSent): the copy did go out.
 */
const CLAIMED_NOT_TAKEN = (worker: string) => `${CLAIMED} and (o.state <> 'sending' or o.locked_by = ${worker})`;

/** A claimed row, by its id and the attempts the claim read. */
export interface ClaimedId {
  id: number;
  attempts: number;
}

/**
 * Marks rows delivered, in one statement. Returns the ids written: not those whose result another
 * worker wrote first, nor those of a write tried again after its commit went unheard.
 */
export async function markSent(db: Queryable, sent: ClaimedId[]): Promise<number[]> {
  if (sent.length === 0) return [];
  const { rows } = await db.query<{ id: number }>(
    `with done as (update outbox o set state = 'sent', sent_at = now(), attempts = o.attempts + 1, locked_by = null, last_error = null
                     from unnest($1::bigint[], $2::int[]) as u(id, attempts) where ${CLAIMED} returning o.id),
     counted as (${addToHour('sent', ...ROWS_DONE)})
     select id from done`,
    [sent.map((r) => r.id), sent.map((r) => r.attempts)],
  );
  return rows.map((r) => r.id);
}

export interface RowError extends ClaimedId {
  error: string;
}

/**
 * Puts rows back with exponential backoff (e^attempts seconds, capped at e^10); rows older than
 * the give-up period fail instead. Returns the ids written, put back or failed for good (as
 * markSent, not those another worker settled). One statement, with the hour's counts, so that it
 * is applied whole or not at all.
 */
export async function markRetry(db: Queryable, worker: string, errors: RowError[], giveUpHours: number): Promise<{ queued: number[]; failed: number[] }> {
  if (errors.length === 0) return { queued: [], failed: [] };
  const { rows } = await db.query<{ id: number; state: OutboxState }>(
    `with u as (select * from unnest($1::bigint[], $2::text[], $4::int[]) as u(id, error, attempts)),
     done as (
       update outbox o set
         attempts = o.attempts + 1,
         last_error = u.error,
         locked_by = null,
         state = case when o.created_at < now() - make_interval(secs => $3 * 3600) then 'failed' else 'queued' end,
         run_at = greatest(now(), o.run_at) + exp(least(o.attempts + 1, 10)) * interval '1 second'
       from u where ${CLAIMED_NOT_TAKEN('$5')}
       returning o.id, o.state),
     counted as (
       insert into delivery_hourly (hour, deferred, failed)
       select date_trunc('hour', now()), count(*) filter (where state = 'queued'), count(*) filter (where state = 'failed') from done having count(*) > 0
       on conflict (hour) do update set deferred = delivery_hourly.deferred + excluded.deferred, failed = delivery_hourly.failed + excluded.failed)
     select id, state from done`,
    [errors.map((e) => e.id), errors.map((e) => e.error.slice(0, 1000)), giveUpHours, errors.map((e) => e.attempts), worker],
  );
  const ids = (state: OutboxState) => rows.filter((r) => r.state === state).map((r) => r.id);
  return { queued: ids('queued'), failed: ids('failed') };
}

/** A row refused for good; `bounceStage`: the SMTP stage refused, when the refusal has follow-ups to record (core/refusals.ts). */
export interface Refusal extends RowError {
  bounceStage: string | null;
}

/**
 * Marks rows failed for good (a permanent 5xx answer). A row with follow-ups is marked with its
 * stage in the same statement (db/outbox-refusals.ts), so that they are recorded even if this
 * worker dies right after. Returns the ids written: a row whose result another worker wrote first
 * (it was requeued and sent again) is not among them, nor one whose commit went unheard and was
 * tried again.
 */
export async function markFailed(db: Queryable, worker: string, errors: Refusal[]): Promise<number[]> {
  if (errors.length === 0) return [];
  const { rows } = await db.query<{ id: number }>(
    `with done as (
       update outbox o set state = 'failed', attempts = o.attempts + 1, last_error = u.error, locked_by = null, bounce_stage = u.stage
         from unnest($1::bigint[], $2::text[], $3::int[], $4::text[]) as u(id, error, attempts, stage) where ${CLAIMED_NOT_TAKEN('$5')} returning o.id),
     counted as (${addToHour('failed', ...ROWS_DONE)})
     select id from done`,
    [errors.map((e) => e.id), errors.map((e) => e.error.slice(0, 1000)), errors.map((e) => e.attempts), errors.map((e) => e.bounceStage), worker],
  );
  return rows.map((r) => r.id);
}

async function countHourly(db: Queryable, column: HourlyColumn, n: number) {
  if (n <= 0) return;
  await db.query(addToHour(column, '$1::integer'), [n]);
}

/**
 * Claimed rows a stopping worker did not get to go back to the queue, untouched: only while they
 * are still this worker's. A worker that lost its lock had its rows requeued (reclaimStale) and
 * perhaps claimed by another, which was sending them when this one gave them back; a third then
 * sent them again.
 */
export async function releaseRows(db: Queryable, ids: number[], worker: string): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `update outbox set state = 'queued', locked_by = null, locked_at = null where id = any($1::bigint[]) and state = 'sending' and locked_by = $2`,
    [ids, worker],
  );
}

// Workers that count as alive: a heartbeat younger than their own lease (the caller's, for
// workers from before sql/0020) and, for those that take one, their session lock held. One
// definition for reclaiming and for `queue`.
const LIVE_WORKER = `w.heartbeat_at > now() - make_interval(secs => coalesce(w.lease_seconds, $1))
  and (w.lock_key is null or w.lock_key in (select delivery_worker_locks()))`;

/**
 * Rows claimed by a worker that is gone go back to the queue: its lock is free (it died, or lost
 * its connection), or its heartbeat is older than the lease (it is wedged). So does a row of a live
 * worker whose own lease has run out (row_leases, sql/0100): the worker's heartbeat renews the
 * lease of every row it holds but those whose send is stuck past its deadline. `except` names the
 * worker asking, which knows its own rows are in flight even while its lock connection is being
 * reopened (its rows whose lease ran out still go). Returns how many.
 */
export async function reclaimStale(db: Queryable, leaseSeconds: number, except: string | null = null): Promise<number> {
  const { rowCount } = await db.query(
    `with live as materialized (select w.name, w.row_leases, coalesce(w.lease_seconds, $1) as lease from delivery_workers w where ${LIVE_WORKER})
     update outbox o set state = 'queued', locked_by = null, locked_at = null
      where o.state = 'sending'
        and (((o.locked_by is null or o.locked_by not in (select name from live)) and ($2::text is null or o.locked_by is distinct from $2))
             or exists (select 1 from live l where l.name = o.locked_by and l.row_leases and o.locked_at < now() - make_interval(secs => l.lease)))`,
    [leaseSeconds, except],
  );
  return rowCount ?? 0;
}

/** Forgets finished rows (and composed mail nobody needs any more) after `keepDays`. */
export async function pruneFinished(db: Queryable, keepDays: number): Promise<number> {
  const { rowCount } = await db.query(
    `delete from outbox where state in ('sent', 'failed', 'cancelled')
        and coalesce(sent_at, created_at) < now() - make_interval(days => $1)`,
    [keepDays],
  );
  await db.query(
    `delete from outbound_mail m where m.created_at < now() - interval '1 hour'
        and not exists (select 1 from outbox o where o.mail_id = m.id)`,
  );
  return rowCount ?? 0;
}

export interface QueueStats {
  counts: Record<Exclude<OutboxState, 'cancelled'>, number>;
  /** queued rows waiting for a retry (attempted at least once) */
  deferred: number;
  /** rows settled as nobody should get them any more, apart from the counts of deliveries */
  cancelled: number;
  /** the oldest row still waiting to be sent */
  oldest: { id: number; recipient: string; kind: OutboxKind; created_at: Date; run_at: Date; attempts: number; last_error: string | null } | null;
  /** how long the oldest has waited, by the database's clock (0 when nothing waits): never the reader's, which may be off */
  oldestSeconds: number;
  /** stale: its session lock is gone (the process died) or its heartbeat is older than the lease */
  workers: { name: string; host: string; pid: number; started_at: Date; heartbeat_at: Date; stale: boolean }[];
}

/**
 * The queue's depth for the Prometheus gauges, read at every scrape: unlike queueStats it counts
 * only queued and sending rows (partial indexes), not the days of sent ones.
 */
export async function outboxDepth(db: Queryable): Promise<{ queued: number; sending: number; oldestQueuedSeconds: number }> {
  const { rows } = await db.query<{ queued: number; sending: number; oldest: number }>(
    `select (select count(*) from outbox where state = 'queued')::int as queued,
            (select count(*) from outbox where state = 'sending')::int as sending,
            coalesce((select extract(epoch from now() - min(created_at)) from outbox where state = 'queued'), 0)::float8 as oldest`,
  );
  return { queued: rows[0].queued, sending: rows[0].sending, oldestQueuedSeconds: rows[0].oldest };
}

/**
 * Counts by state, the oldest waiting row and the workers, stale or not (`listkeeper queue
 * --json`). `leaseSeconds` judges the heartbeat of workers that did not record their own lease.
 */
export async function queueStats(db: Queryable, leaseSeconds: number): Promise<QueueStats> {
  const { rows } = await db.query<{ state: OutboxState; n: number; deferred: number }>(
    `select state, count(*)::int as n, (count(*) filter (where attempts > 0))::int as deferred from outbox group by state`,
  );
  const counts: QueueStats['counts'] = { queued: 0, sending: 0, sent: 0, failed: 0 };
  let deferred = 0;
  let cancelled = 0;
  for (const r of rows) {
    if (r.state === 'cancelled') cancelled = r.n;
    else counts[r.state] = r.n;
    if (r.state === 'queued') deferred = r.deferred;
  }
  const oldest = await db.query<NonNullable<QueueStats['oldest']> & { age: number }>(
    `select id, recipient, kind, created_at, run_at, attempts, last_error, extract(epoch from now() - created_at)::float8 as age from outbox
      where state in ('queued', 'sending') order by created_at, id limit 1`,
  );
  const first = oldest.rows[0];
  const workers = await db.query<QueueStats['workers'][number]>(
    `select name, host, pid, started_at, heartbeat_at, not (${LIVE_WORKER}) as stale
       from delivery_workers w order by started_at`,
    [leaseSeconds],
  );
  return { counts, deferred, cancelled, oldest: first ? { id: first.id, recipient: first.recipient, kind: first.kind, created_at: first.created_at, run_at: first.run_at, attempts: first.attempts, last_error: first.last_error } : null, oldestSeconds: first?.age ?? 0, workers: workers.rows };
}

export interface HourlyCounts {
  hour: Date;
  sent: number;
  deferred: number;
  failed: number;
  bounced: number;
}

/** Deliveries, deferrals, failures and bounces per hour over the last `days` (oldest first). */
export async function deliveryHistory(db: Queryable, days = 7): Promise<HourlyCounts[]> {
  const { rows } = await db.query<HourlyCounts>(
    `select hour, sent, deferred, failed, bounced from delivery_hourly
      where hour >= date_trunc('hour', now()) - make_interval(days => $1) order by hour`,
    [days],
  );
  return rows;
}

export async function countBounceHourly(db: Queryable): Promise<void> {
  await countHourly(db, 'bounced', 1);
}

/** Raw sources for a batch: archived messages by id. */
export async function messageSources(db: Queryable, ids: number[]) {
  const { rows } = await db.query<{ id: number; message_id: string; raw: Buffer; subject: string; from_name: string; from_email: string; checks: PostChecks | null }>(
    'select id, message_id, raw, subject, from_name, from_email, checks from messages where id = any($1::bigint[])',
    [ids],
  );
  return rows;
}

/** Raw sources for a batch: composed mail by id. */
export async function mailSources(db: Queryable, ids: number[]) {
  const { rows } = await db.query<{ id: number; raw: Buffer }>('select id, raw from outbound_mail where id = any($1::bigint[])', [ids]);
  return rows;
}

// ---- workers ----

/**
 * Takes a new worker's session lock (sql/0020) on the connection that will hold it; returns its
 * key, or null if the lock could not be had (a key still held after the sequence wrapped).
 */
export async function takeNewWorkerLock(db: Queryable): Promise<number | null> {
  const { rows } = await db.query<{ key: number; ok: boolean }>(
    `select k as key, delivery_worker_lock(k) as ok from (select nextval('delivery_worker_lock_keys')::integer as k) s`,
  );
  return rows[0].ok ? rows[0].key : null;
}

/** Takes a worker's lock again after its connection was lost; false while another session has it. */
export async function retakeWorkerLock(db: Queryable, key: number): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select delivery_worker_lock($1) as ok', [key]);
  return rows[0].ok;
}

export interface WorkerIdentity {
  name: string;
  host: string;
  pid: number;
  lockKey: number | null;
  leaseSeconds: number;
}

/**
 * The worker's heartbeat, and the lease of every row it holds renewed, but `stuck`'s (rows whose
 * send is past its deadline: they go back to the queue when their lease runs out, reclaimStale).
 * A row is renewed once a sixth of its lease has gone (beats come every third of it, so none is
 * left more than about half its lease unrenewed): most copies, sent within a second, are never
 * written by it.
 */
export async function heartbeat(db: Queryable, w: WorkerIdentity, stuck: number[] = []): Promise<void> {
  await db.query(
    `with beat as (
       insert into delivery_workers (name, host, pid, lock_key, lease_seconds, row_leases) values ($1, $2, $3, $4, $5, true)
       on conflict (name) do update set heartbeat_at = now(), lock_key = excluded.lock_key, lease_seconds = excluded.lease_seconds, row_leases = true)
     update outbox set locked_at = now()
      where state = 'sending' and locked_by = $1 and locked_at < now() - make_interval(secs => $5::float8 / 6) and id <> all($6::bigint[])`,
    [w.name, w.host, w.pid, w.lockKey, w.leaseSeconds, stuck],
  );
}

export async function removeWorker(db: Queryable, name: string): Promise<void> {
  await db.query('delete from delivery_workers where name = $1', [name]);
  await db.query(`update outbox set state = 'queued', locked_by = null, locked_at = null where state = 'sending' and locked_by = $1`, [name]);
}

export async function forgetDeadWorkers(db: Queryable, leaseSeconds: number): Promise<void> {
  await db.query(`delete from delivery_workers where heartbeat_at < now() - make_interval(secs => $1 * 10)`, [leaseSeconds]);
}
