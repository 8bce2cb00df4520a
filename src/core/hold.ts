import type pg from 'pg';
import { Conflict, InvalidInput, NotFound } from '../errors.ts';
import { decideHeld, heldById, pendingHeld, type HeldRow } from '../db/held.ts';
import { getListById } from '../db/lists.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { deleteSenderRule, senderRules, upsertSenderRule, type SenderRuleRow } from '../db/sender-rules.ts';
import { log } from '../log.ts';
import { normalizeEmail } from '../mail/address.ts';
import { parse } from '../mail/parse.ts';
import { release, tellSender } from './accept-post.ts';

/**
 * The moderation queue: held posts and what moderators do with them (CLI `held`/`moderate`,
 * the web panel). Approving goes through the same path as an accepted post, exactly once.
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

export async function listHeld(db: Queryable, listId: number): Promise<HeldSummary[]> {
  return (await pendingHeld(db, listId)).map((h) => ({
    id: h.id,
    message_id: h.message_id,
    from: h.from_email,
    subject: h.subject,
    reason: h.reason,
    received_at: h.received_at,
    size: h.size,
  }));
}

export type HeldMessage = HeldRow;

/** One held post with its raw bytes (any state: decided ones show who decided what). */
export async function getHeld(db: Queryable, id: number): Promise<HeldMessage | null> {
  return heldById(db, id);
}

export type ModerationAction = 'approve' | 'reject' | 'discard';

export async function moderate(pool: pg.Pool, id: number, action: ModerationAction, opts: { reason?: string; by: string }): Promise<void> {
  if (!['approve', 'reject', 'discard'].includes(action)) throw new InvalidInput(`action must be approve, reject or discard (got "${action}")`);
  const peek = await heldById(pool, id);
  if (!peek) throw new NotFound(`no held message ${id}`, 'no_such_held');
  // Parse before taking locks; the raw bytes of a held row never change.
  const message = action === 'approve' ? await parse(peek.raw, peek.received_at) : null;
  await withTransaction(pool, async (tx) => {
    const held = await heldById(tx, id, { forUpdate: true });
    if (!held) throw new NotFound(`no held message ${id}`, 'no_such_held');
    if (held.state !== 'held') {
      throw new Conflict(`held message ${id} was already ${held.state} by ${held.decided_by ?? 'someone'}`, 'already_decided');
    }
    const list = await getListById(tx, held.list_id);
    const reason = opts.reason?.trim() || null;
    if (action === 'approve') {
      await decideHeld(tx, id, 'approved', opts.by, reason);
      const outcome = await release(tx, list, held, message!);
      if (outcome.kind === 'refused') {
        throw new Conflict(`held message ${id} cannot be approved: the archive of ${list.address} already has a different message with its Message-ID <${held.message_id}>; reject or discard it`, 'message_id_reused');
      }
    } else if (action === 'reject') {
      await decideHeld(tx, id, 'rejected', opts.by, reason);
      await tellSender(tx, list, held.from_email || held.envelope_from, { subject: held.subject, messageId: held.message_id },
        reason ?? 'a moderator declined it.');
    } else {
      await decideHeld(tx, id, 'discarded', opts.by, reason);
    }
    log.info({ heldId: id, list: list.address, action, by: opts.by }, 'held message moderated');
  });
}

/** Always accept (allow) or silently drop (ban) a sender's posts on a list; `email` may be '@domain'. */
export async function addSenderRule(db: Queryable, listId: number, email: string, kind: 'allow' | 'ban', opts: { expiresAt?: Date | null; by: string }): Promise<SenderRuleRow> {
  const key = senderKey(email);
  if (kind !== 'allow' && kind !== 'ban') throw new InvalidInput('a sender rule is allow or ban');
  return upsertSenderRule(db, listId, key, kind, opts.expiresAt ?? null, opts.by);
}

export async function removeSenderRule(db: Queryable, listId: number, email: string): Promise<boolean> {
  return deleteSenderRule(db, listId, senderKey(email));
}

export async function listSenderRules(db: Queryable, listId: number): Promise<SenderRuleRow[]> {
  return senderRules(db, listId);
}

function senderKey(email: string): string {
  const value = email.trim().toLowerCase();
  if (value.startsWith('@') && normalizeEmail(`x${value}`)) return value;
  const address = normalizeEmail(value);
  if (!address) throw new InvalidInput(`"${email}" is not an e-mail address or @domain`, 'invalid_email');
  return address;
}
