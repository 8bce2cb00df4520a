/*
 * (Un)subscription requests waiting for the address to confirm (state confirm) or for an owner
 * (state approval). The token itself is never stored, only its SHA-256.
 */

import type { DeliveryMode } from '../list-policies.ts';
import type { Queryable } from './pool.ts';

export type RequestAction = 'subscribe' | 'unsubscribe';
export type RequestState = 'confirm' | 'approval' | 'done' | 'rejected';
export type RequestVia = 'web' | 'mail' | 'admin';

export interface SubscriptionRequestRow {
  id: number;
  list_id: number;
  email: string;
  name: string | null;
  mode: DeliveryMode;
  action: RequestAction;
  via: RequestVia;
  state: RequestState;
  created_at: Date;
  expires_at: Date;
  confirmed_at: Date | null;
  decided_at: Date | null;
  decided_by: string | null;
}

export interface NewRequest {
  listId: number;
  email: string;
  name: string | null;
  mode: DeliveryMode;
  action: RequestAction;
  via: RequestVia;
  tokenHash: string;
  state: RequestState;
  expiresInHours: number;
}

export async function insertRequest(db: Queryable, r: NewRequest): Promise<SubscriptionRequestRow> {
  const { rows } = await db.query<SubscriptionRequestRow>(
    `insert into subscription_requests (list_id, email, name, mode, action, via, token_hash, state, expires_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(hours => $9))
     returning *`,
    [r.listId, r.email, r.name, r.mode, r.action, r.via, r.tokenHash, r.state, r.expiresInHours],
  );
  return rows[0];
}

/** The request a token confirms, locked, when it is still waiting for confirmation and not expired. */
export async function requestForConfirmation(db: Queryable, tokenHash: string): Promise<(SubscriptionRequestRow & { expired: boolean }) | null> {
  const { rows } = await db.query<SubscriptionRequestRow & { expired: boolean }>(
    `select *, expires_at <= now() as expired from subscription_requests where token_hash = $1 for update`,
    [tokenHash],
  );
  return rows[0] ?? null;
}

/** A request by token, without locking (pages that show what a link would do). */
export async function requestByToken(db: Queryable, tokenHash: string): Promise<(SubscriptionRequestRow & { expired: boolean; list_address: string }) | null> {
  const { rows } = await db.query<SubscriptionRequestRow & { expired: boolean; list_address: string }>(
    `select r.*, r.expires_at <= now() as expired, l.address as list_address
       from subscription_requests r join lists l on l.id = r.list_id where r.token_hash = $1`,
    [tokenHash],
  );
  return rows[0] ?? null;
}

export async function requestById(db: Queryable, id: number, opts: { forUpdate?: boolean } = {}): Promise<SubscriptionRequestRow | null> {
  const { rows } = await db.query<SubscriptionRequestRow>(
    `select * from subscription_requests where id = $1 ${opts.forUpdate ? 'for update' : ''}`,
    [id],
  );
  return rows[0] ?? null;
}

export async function setRequestState(db: Queryable, id: number, state: RequestState, by: string | null): Promise<void> {
  await db.query(
    `update subscription_requests set state = $2,
        confirmed_at = case when state = 'confirm' and $2 <> 'rejected' then now() else confirmed_at end,
        decided_at = case when $2 in ('done', 'rejected') then now() else decided_at end,
        decided_by = coalesce($3, decided_by)
      where id = $1`,
    [id, state, by],
  );
}

export async function requestsAwaitingApproval(db: Queryable, listId: number): Promise<SubscriptionRequestRow[]> {
  const { rows } = await db.query<SubscriptionRequestRow>(
    `select * from subscription_requests where list_id = $1 and state = 'approval' order by created_at, id`,
    [listId],
  );
  return rows;
}

/**
 * Whether a request to join `listId` for `email` already waits for an owner. Asked under a lock
 * of that address on that list (xact advisory lock), so that two asks at once see each other.
 */
export async function awaitsApproval(db: Queryable, listId: number, email: string): Promise<boolean> {
  await db.query(`select pg_advisory_xact_lock(hashtext('subscription-approval'), hashtext($1 || ' ' || $2))`, [String(listId), email]);
  const { rowCount } = await db.query(
    `select 1 from subscription_requests where list_id = $1 and email = $2 and action = 'subscribe' and state = 'approval'`,
    [listId, email],
  );
  return (rowCount ?? 0) > 0;
}

/** Drops requests nobody confirmed in time. */
export async function pruneExpiredRequests(db: Queryable): Promise<number> {
  const { rowCount } = await db.query(
    `delete from subscription_requests where state = 'confirm' and expires_at < now() - interval '7 days'`,
  );
  return rowCount ?? 0;
}
