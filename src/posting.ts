import type pg from 'pg';
import { addDigestItem } from './db/digests.ts';
import { insertHeld, claimHeldNotice, takeUnnotifiedHeld, type HeldRow } from './db/held.ts';
import { recordIngestError } from './db/ingest-errors.ts';
import type { ListRow } from './db/lists.ts';
import { archiveMessage, type ArchiveResult } from './db/messages.ts';
import { enqueuePostCopies, notifyOutbox } from './db/outbox.ts';
import { batcherFor } from './db/batch.ts';
import { withTransaction, type Queryable } from './db/pool.ts';
import { senderFacts } from './db/sender-rules.ts';
import { log as rootLog, type Logger } from './log.ts';
import { listId } from './mail/list-headers.ts';
import type { ParsedMessage } from './mail/parse.ts';
import { decide, type Decision } from './moderation.ts';
import { noticeToOwners, sendNotice } from './notices.ts';

export interface Post {
  list: ListRow;
  raw: Buffer;
  message: ParsedMessage;
  envelopeFrom: string | null;
  log: Logger;
}

export type PostOutcome =
  | { kind: 'archived'; archive: ArchiveResult; copies: number }
  | { kind: 'duplicate'; archive?: ArchiveResult }
  | { kind: 'held'; heldId: number; decision: Decision }
  | { kind: 'discarded'; decision: Decision };

/**
 * The post pipeline. The moderation rules decide first (on facts gathered outside the
 * transaction); then, in one transaction committed before the sender hears 250, the post is
 * either archived with one outbox row per member who takes each post, or held for a moderator
 * (and kept out of the archive), or recorded as dropped by a rule.
 */
export async function post(pool: pg.Pool, p: Post): Promise<PostOutcome> {
  const decision = decide(await postFacts(pool, p));
  if (decision.action === 'accept') {
    // Accepted posts share commits with concurrent ones (group commit, db/batch.ts): still
    // committed before the sender hears 250, at a fraction of the per-transaction cost.
    const { messageId, inReplyTo, references } = p.message;
    return batcherFor(pool).run(
      (tx) => acceptPost(tx, p.list, p.raw, p.message, p.envelopeFrom, p.log),
      [messageId, ...(inReplyTo ? [inReplyTo] : []), ...references],
    );
  }
  return withTransaction(pool, async (tx) => {
    if (await alreadyInList(tx, p.list.id, p.message.messageId)) return { kind: 'duplicate' } as const;
    const heldId = await insertHeld(tx, {
      listId: p.list.id,
      messageId: p.message.messageId,
      raw: p.raw,
      fromEmail: p.message.fromEmail || (p.envelopeFrom ?? '').toLowerCase(),
      fromName: p.message.fromName,
      subject: p.message.subject,
      envelopeFrom: p.envelopeFrom,
      reason: decision.reason,
      rule: decision.rule,
      state: decision.action === 'hold' ? 'held' : 'discarded',
    });
    if (heldId === null) return { kind: 'duplicate' } as const;
    p.log.info({ list: p.list.address, rule: decision.rule, action: decision.action, heldId }, decision.action === 'hold' ? 'post held' : 'post dropped by rule');
    if (decision.action === 'hold') {
      await notifyOwnersOfHeld(tx, p.list);
      return { kind: 'held', heldId, decision } as const;
    }
    if (decision.action === 'reject') await tellSender(tx, p.list, p.message.fromEmail || p.envelopeFrom, p.message, decision.reason);
    return { kind: 'discarded', decision } as const;
  });
}

async function postFacts(db: Queryable, p: Post) {
  const sender = (p.message.fromEmail || p.envelopeFrom || '').toLowerCase();
  const facts = sender ? await senderFacts(db, p.list.id, sender) : { memberStatus: null, rules: [] };
  return {
    list: { address: p.list.address, listId: listId(p.list.address), postPolicy: p.list.post_policy, maxMessageSize: p.list.max_message_size },
    sender: { email: sender, memberStatus: facts.memberStatus },
    senderRules: facts.rules.map((r) => ({ kind: r.kind, email: r.email, expiresAt: r.expires_at })),
    message: { size: p.raw.length, subject: p.message.subject, headers: p.message.headers },
    now: new Date(),
  };
}

/**
 * Archives a post and queues its copies, inside the caller's transaction. The same path serves
 * accepted posts and approved held ones. A Message-ID the list already has is a duplicate (a
 * retry, a loop): nothing is stored or sent again.
 */
export async function acceptPost(tx: Queryable, list: ListRow, raw: Buffer, message: ParsedMessage, envelopeFrom: string | null, log: Logger): Promise<PostOutcome> {
  const archive = await archiveMessage(tx, list.id, raw, message);
  if (!archive.created && !archive.sameContent) {
    // Someone reused a Message-ID with different content: the archived message stays as it is,
    // and this one is kept aside with the reason rather than lost.
    await recordIngestError(tx, {
      listId: list.id,
      envelopeFrom,
      recipients: [list.address],
      messageId: message.messageId,
      reason: `Message-ID <${message.messageId}> is already archived with different content; the archived message was kept`,
      raw,
    });
    log.warn({ messageId: message.messageId }, 'reused Message-ID with different content kept aside');
  }
  if (!archive.addedToList) return { kind: 'duplicate', archive };
  // VERP: each copy's envelope sender is LIST-bounces+TOKEN@ (mail/list-headers.ts verpAddress).
  const copies = await enqueuePostCopies(tx, list.id, archive.id, `${list.local_part}-bounces+`, list.domain);
  await addDigestItem(tx, list.id, archive.id);
  if (copies > 0) await notifyOutbox(tx);
  log.info({ messageId: message.messageId, list: list.address, threadId: archive.threadId, created: archive.created, copies }, 'message archived');
  return { kind: 'archived', archive, copies };
}

/** Approves a held post: archived and sent exactly once, through acceptPost. */
export async function release(tx: Queryable, list: ListRow, held: HeldRow, message: ParsedMessage): Promise<PostOutcome> {
  return acceptPost(tx, list, held.raw, message, held.envelope_from, rootLog.child({ messageId: message.messageId, heldId: held.id }));
}

async function alreadyInList(db: Queryable, listId: number, messageId: string): Promise<boolean> {
  const { rows } = await db.query(
    `select 1 from list_messages lm join messages m on m.id = lm.message_id where lm.list_id = $1 and m.message_id = $2`,
    [listId, messageId],
  );
  return rows.length > 0;
}

/**
 * Tells the owners about held posts, at most once per the list's notice interval: the first
 * held post of a quiet list is announced at once; a flood is summed up in the next notice
 * (sent by the delivery worker's maintenance when the interval has passed).
 */
export async function notifyOwnersOfHeld(tx: Queryable, list: ListRow): Promise<boolean> {
  if (!(await claimHeldNotice(tx, list.id))) return false;
  const held = await takeUnnotifiedHeld(tx, list.id);
  if (held.length === 0) return false;
  const lines = held.map((h) => `  #${h.id}  ${h.from_email}: ${h.subject || '(no subject)'}\n         ${h.reason}`);
  await noticeToOwners(tx, list, `${held.length} post${held.length === 1 ? '' : 's'} held for moderation on ${list.address}`,
    [`${held.length === 1 ? 'A post is' : `${held.length} posts are`} waiting for a moderator on ${list.address}:`, '', ...lines, '',
      'Approve, reject or discard them in the list\'s moderation queue, or with', `  listkeeper moderate ID approve|reject|discard`].join('\n'));
  return true;
}

/** Tells a sender their post was rejected, with the reason. */
export async function tellSender(tx: Queryable, list: ListRow, to: string | null, message: { subject: string; messageId: string }, reason: string): Promise<void> {
  if (!to) return;
  await sendNotice(tx, {
    to,
    list,
    subject: `Your message to ${list.address} was rejected`,
    inReplyTo: message.messageId,
    autoSubmitted: 'auto-replied',
    text: [`Your message "${message.subject || '(no subject)'}" to ${list.address} was not distributed to the list.`, '', `Reason: ${reason}`, ''].join('\n'),
  });
}
