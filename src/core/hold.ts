/*
 * Holding a post and deciding it: a post the rules did not accept is held for a moderator (and
 * the owners and moderators told: held-notices.ts) or recorded as dropped; the moderation queue lists held posts; a moderator's
 * decision (CLI `held`/`moderate`, the web panel) approves one through the same path as an
 * accepted post (accept-post.ts), exactly once, or rejects (the sender is told) or discards it.
 */

import type pg from 'pg';
import { Conflict, InvalidInput, NotFound } from '../errors.ts';
import { decideHeld, discardHeldFromSender, heldById, heldSameContent, insertHeld, pendingHeld, type HeldListRow, type HeldRow } from '../db/held.ts';
import { recordAudit, recordAudits } from '../db/audit.ts';
import { getListById, keepList, type ListRow } from '../db/lists.ts';
import { listHasMessageId } from '../db/messages.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { upsertSenderRule } from '../db/sender-rules.ts';
import { log } from '../log.ts';
import { normalizeEmail, postSender } from '../mail/address.ts';
import { parse } from '../mail/parse.ts';
import { acceptPost, refuse, refuseByRule, type Post, type PostOutcome } from './accept-post.ts';
import type { Decision } from './moderation-rules.ts';
import { answersSender, notifyModeratorsOfHeld, tellSenderHeld } from './held-notices.ts';
import { sendNotice } from './notices.ts';
import type { CoreSettings } from './settings.ts';
import { senderKey } from './sender-rules.ts';
import { oneLine } from '../mail/parsed-message.ts';

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
  return (await pendingHeld(db, listId)).map(heldSummary);
}

/** A held post as `listkeeper held --json` and the REST API show it (they leave out `size`). */
export function heldSummary(h: HeldListRow): HeldSummary {
  return { id: h.id, message_id: h.message_id, from: h.from_email, subject: h.subject, reason: h.reason, received_at: h.received_at, size: h.size };
}

export type HeldMessage = HeldRow;

/** One held post with its raw bytes (any state: decided ones show who decided what). */
export async function getHeld(db: Queryable, id: number): Promise<HeldMessage | null> {
  return heldById(db, id);
}

export type ModerationAction = 'approve' | 'reject' | 'discard';

export interface ModerationOptions {
  /** who decides, for decided_by and the audit log: the panel's account, or `cli:USER` */
  actor: string;
  /** why (mailed to the sender on reject) */
  reason?: string;
  /** act only on a post held for this list (the panel: ids come from the browser) */
  listId?: number;
  /** also always accept (allow) or drop (ban) the post's sender on the list, in the same transaction */
  senderRule?: 'allow' | 'ban';
  /** what is kept of an approval refused for a reused Message-ID (RETENTION_*), and PUBLIC_URL */
  settings: Pick<CoreSettings, 'retention' | 'publicUrl'>;
  /** more work in the decision's transaction (moderation by mail: its answer, which is then queued exactly when the decision is) */
  alongside?: (tx: Queryable) => Promise<unknown>;
}

/**
 * A moderator's decision on one held post, in one transaction with its audit entry: approve
 * (accepted through the same path as any post, exactly once, byte for byte as held), reject
 * (the sender is told why) or discard. A second decision on the same post is a Conflict.
 */
export async function moderate(pool: pg.Pool, id: number, action: ModerationAction, opts: ModerationOptions): Promise<void> {
  if (!['approve', 'reject', 'discard'].includes(action)) throw new InvalidInput(`action must be approve, reject or discard (got "${action}")`);
  const peek = await heldById(pool, id);
  if (!peek || (opts.listId !== undefined && peek.list_id !== opts.listId)) throw new NotFound(`no held message ${id}`, 'no_such_held');
  // Parse before taking locks; the raw bytes of a held row never change.
  const message = action === 'approve' ? await parse(peek.raw, peek.received_at) : null;
  await withTransaction(pool, async (tx) => {
    // The list before the post, in the order a deletion of the list locks them (keepList).
    const held = (await keepList(tx, peek.list_id)) ? await heldById(tx, id, { forUpdate: true }) : null;
    if (!held) throw new NotFound(`no held message ${id}`, 'no_such_held');
    if (held.state !== 'held') {
      throw new Conflict(`held message ${id} was already ${held.state} by ${held.decided_by ?? 'someone'}`, 'already_decided');
    }
    const list = await getListById(tx, held.list_id);
    const reason = opts.reason?.trim() || null;
    const sender = normalizeEmail(held.from_email || held.envelope_from || '');
    if (opts.senderRule && sender) await upsertSenderRule(tx, list.id, sender, opts.senderRule, null, opts.actor);
    if (action === 'approve') {
      await decideHeld(tx, id, 'approved', opts.actor, reason);
      // Byte for byte as held: an approval links only to an equal archived message.
      const post = { list, raw: held.raw, message: message!, envelopeFrom: held.envelope_from, checks: held.checks ?? undefined, log: log.child({ messageId: message!.messageId, heldId: held.id }), settings: opts.settings };
      const outcome = await acceptPost(tx, post, { exact: true });
      if (outcome.kind === 'refused') {
        throw new Conflict(`held message ${id} cannot be approved: the archive of ${list.address} already has a different message with its Message-ID <${held.message_id}>; reject or discard it`, 'message_id_reused');
      }
    } else if (action === 'reject') {
      await decideHeld(tx, id, 'rejected', opts.actor, reason);
      // Not to a sender who may be forged (held as spam, automatic mail, a forgery): backscatter.
      if (answersSender(held.rule, held.checks, held.envelope_from)) {
        await tellSender(tx, list, [held.from_email, held.envelope_from], { subject: held.subject, messageId: held.message_id },
          reason ?? 'a moderator declined it.');
      }
    } else {
      await decideHeld(tx, id, 'discarded', opts.actor, reason);
    }
    await recordAudit(tx, {
      actor: opts.actor, action: `held.${action}${opts.senderRule ? `-${opts.senderRule}` : ''}`, list, target: held.message_id,
      detail: { id, from: held.from_email, subject: held.subject.slice(0, 200), ...(reason ? { reason } : {}) },
    });
    await opts.alongside?.(tx);
    log.info({ heldId: id, list: list.address, action, by: opts.actor }, 'held message moderated');
  });
}

/**
 * Discards every post of the list still held from an address or a whole '@domain' (a flood), and
 * with `ban` also bans that sender, in one transaction with an audit entry per post. Posts decided
 * meanwhile are left alone, so a second click does nothing. Returns the posts discarded.
 */
export async function discardHeldFrom(pool: pg.Pool, list: ListRow, sender: string, opts: { actor: string; ban?: boolean; reason?: string }): Promise<{ sender: string; discarded: HeldListRow[] }> {
  const key = senderKey(sender);
  const reason = opts.reason?.trim() || null;
  return withTransaction(pool, async (tx) => {
    if (!(await keepList(tx, list.id))) throw new NotFound(`no list ${list.address}`, 'no_such_list');
    if (opts.ban) {
      await upsertSenderRule(tx, list.id, key, 'ban', null, opts.actor);
      await recordAudit(tx, { actor: opts.actor, action: 'sender.ban', list, target: key, detail: { from: 'held queue' } });
    }
    const discarded = await discardHeldFromSender(tx, list.id, key, opts.actor, reason);
    await recordAudits(tx, discarded.map((h) => ({
      actor: opts.actor, action: `held.discard${opts.ban ? '-ban' : ''}`, list, target: h.message_id,
      detail: { id: h.id, from: h.from_email, subject: h.subject.slice(0, 200), sender: key, ...(reason ? { reason } : {}) },
    })));
    log.info({ list: list.address, sender: key, discarded: discarded.length, ban: !!opts.ban, by: opts.actor }, 'held messages discarded by sender');
    return { sender: key, discarded };
  });
}

/** Keeps a post the rules did not accept: held for a moderator, or recorded as dropped. */
export async function holdOrDrop(tx: Queryable, p: Post, decision: Decision): Promise<PostOutcome> {
  // A Message-ID names one message per list: a redelivery is a duplicate, and another message
  // is refused, so that what waits for a moderator is never confused with what the list has. A
  // post the rules drop (a loop above all: our own copy, changed) is only recorded, never refused:
  // a refusal would bounce back to whoever sent it, perhaps our own bounce address.
  const archived = await listHasMessageId(tx, p.list.id, p.message.messageId, p.raw);
  if (archived === 'same') return { kind: 'duplicate' };
  if (archived === 'different' && decision.action === 'hold') return refuse(tx, p, 'the archive of the list');
  if (decision.action === 'reject') return refuseByRule(tx, p, decision);
  const heldId = await insertHeld(tx, {
    listId: p.list.id,
    messageId: p.message.messageId,
    raw: p.raw,
    // As the rules read it, so that "discard all from this sender" and a ban meet every spelling.
    fromEmail: postSender(p.message.fromEmail, p.envelopeFrom),
    fromName: p.message.fromName,
    subject: p.message.subject,
    envelopeFrom: p.envelopeFrom,
    reason: decision.reason,
    rule: decision.rule,
    state: decision.action === 'hold' ? 'held' : 'discarded',
    checks: p.checks,
  });
  if (heldId === null) {
    // A post with this Message-ID already waits for a moderator: the same one sent again, or not.
    return (await heldSameContent(tx, p.list.id, p.message.messageId, p.raw)) ? { kind: 'duplicate' } : refuse(tx, p, 'the moderation queue of the list');
  }
  p.log.info({ list: p.list.address, rule: decision.rule, action: decision.action, heldId }, decision.action === 'hold' ? 'post held' : 'post dropped by rule');
  if (decision.action === 'hold') {
    await notifyModeratorsOfHeld(tx, p.list, p.settings);
    await tellSenderHeld(tx, { list: p.list, heldId, decision, message: p.message, envelopeFrom: p.envelopeFrom, checks: p.checks, publicUrl: p.settings.publicUrl });
    return { kind: 'held', heldId, decision };
  }
  return { kind: 'discarded', decision };
}

/**
 * Tells a sender their post was rejected, with the reason: at the first of `addresses` (From, then
 * the envelope sender) that is an address. A From that parse() took but is none
 * ('"john smith"@example.org', 'x@[192.0.2.1]') made sendNotice() throw, and with it the
 * moderator's reject, by mail too: such a post could only be discarded.
 */
export async function tellSender(tx: Queryable, list: ListRow, addresses: Array<string | null>, message: { subject: string; messageId: string }, reason: string): Promise<void> {
  const to = addresses.map((a) => (a ? normalizeEmail(a) : null)).find((a) => a !== null);
  if (!to) return;
  await sendNotice(tx, {
    to,
    list,
    subject: `Your message to ${list.address} was rejected`,
    inReplyTo: message.messageId,
    autoSubmitted: 'auto-replied',
    text: [`Your message "${oneLine(message.subject) || '(no subject)'}" to ${list.address} was not distributed to the list.`, '', `Reason: ${oneLine(reason)}`, ''].join('\n'),
  });
}
