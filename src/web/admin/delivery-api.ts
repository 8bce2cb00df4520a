import type pg from 'pg';
import type { ListRow } from '../../db/lists.ts';
import type { DeliveryMode } from '../../db/members.ts';
import type { Queryable } from '../../db/pool.ts';
import { TemporaryFailure } from '../../errors.ts';

/**
 * The delivery issue's moderation and subscription calls, as the panel uses them. This file is
 * the seam: the panel imports them from here only.
 */
export interface HeldSummary {
  id: number;
  message_id: string;
  from: string;
  subject: string;
  reason: string;
  received_at: Date;
  size: number;
}

export interface HeldMessage extends HeldSummary {
  list_id: number;
  raw: Buffer;
}

export interface ApprovalRequest {
  id: number;
  email: string;
  name: string | null;
  mode: DeliveryMode;
  created_at: Date;
  via: string;
}

export type HeldAction = 'approve' | 'reject' | 'discard';

const missing = (what: string) => new TemporaryFailure(`${what} is not available yet`);

export async function listHeld(_db: Queryable, _listId: number): Promise<HeldSummary[]> {
  return [];
}
export async function getHeld(_db: Queryable, _id: number): Promise<HeldMessage | null> {
  return null;
}
export async function moderate(_pool: pg.Pool, _id: number, _action: HeldAction, _opts: { reason?: string; by: string }): Promise<void> {
  throw missing('moderation');
}
export async function addSenderRule(_db: Queryable, _listId: number, _email: string, _kind: 'allow' | 'ban', _opts: { expiresAt?: Date | null; by: string }): Promise<void> {
  throw missing('sender rules');
}
export async function pendingApprovals(_db: Queryable, _listId: number): Promise<ApprovalRequest[]> {
  return [];
}
export async function decideSubscription(_pool: pg.Pool, _requestId: number, _decision: 'approve' | 'reject', _by: string): Promise<void> {
  throw missing('subscription approval');
}
export async function inviteMember(_pool: pg.Pool, _list: ListRow, _email: string, _opts: { name?: string; mode: DeliveryMode }): Promise<void> {
  throw missing('invitations');
}
