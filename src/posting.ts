import type pg from 'pg';
import { insertHeld, claimHeldNotice, heldSameContent, takeUnnotifiedHeld, type HeldRow } from './db/held.ts';
import type { ListRow } from './db/lists.ts';
import { acceptIntoLists, listHasMessageId, type ArchiveResult } from './db/messages.ts';
import { GroupCommit } from './db/group-commit.ts';
import type { Queryable } from './db/pool.ts';
import { senderFacts, type SenderFacts } from './db/sender-rules.ts';
import { RejectedMessage } from './errors.ts';
import { log as rootLog, type Logger } from './log.ts';
import { listId } from './mail/list-headers.ts';
import type { ParsedMessage } from './mail/parse.ts';
import { decide, type Decision, type PostFacts } from './moderation.ts';
import { noticeToOwners, sendNotice } from './notices.ts';
import { keepRejected } from './retention.ts';

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
  | { kind: 'discarded'; decision: Decision }
  /** a different message under a Message-ID the list already has: kept aside, answered 554 */
  | { kind: 'refused'; error: RejectedMessage };

/**
 * The post pipeline. Posts that arrive together share one transaction (group commit, db/group-commit.ts),
 * committed before any sender hears 250: the sender facts of the whole batch are read in one
 * statement, the moderation rules decide each post, the accepted ones are archived with one
 * outbox row per member who takes each post in one more statement, and the others are held for a
 * moderator (kept out of the archive) or recorded as dropped by a rule.
 */
export function post(pool: pg.Pool, p: Post): Promise<PostOutcome> {
  let committer = committers.get(pool);
  if (!committer) {
    committer = new GroupCommit(pool, postBatch, {
      lockKeys: (q) => [q.message.messageId, ...(q.message.inReplyTo ? [q.message.inReplyTo] : []), ...q.message.references],
    });
    committers.set(pool, committer);
  }
  return committer.run(p);
}

const committers = new WeakMap<pg.Pool, GroupCommit<Post, PostOutcome>>();

async function postBatch(tx: pg.PoolClient, batch: Post[]): Promise<PostOutcome[]> {
  const senders = batch.map((p) => (p.message.fromEmail || p.envelopeFrom || '').toLowerCase());
  const facts = await senderFacts(tx, batch.map((p, i) => ({ listId: p.list.id, email: senders[i] })));
  // Decide on the list's settings as committed now, not as the listener's cache last saw them.
  const posts = batch.map((p, i) => (facts[i].list ? { ...p, list: { ...p.list, ...facts[i].list } } : p));
  const decisions = posts.map((p, i) => decide(postFacts(p, senders[i], facts[i])));

  const outcomes: PostOutcome[] = new Array(posts.length);
  const accepted = posts.flatMap((p, i) => (decisions[i].action === 'accept' ? [i] : []));
  const archived = await acceptIntoLists(tx, accepted.map((i) => posts[i]));
  for (const [k, i] of accepted.entries()) outcomes[i] = await afterAccept(tx, posts[i], archived[k]);
  for (const [i, p] of posts.entries()) outcomes[i] ??= await holdOrDrop(tx, p, decisions[i]);
  return outcomes;
}

function postFacts(p: Post, sender: string, facts: SenderFacts): PostFacts {
  return {
    list: { address: p.list.address, listId: listId(p.list.address), postPolicy: p.list.post_policy, maxMessageSize: p.list.max_message_size },
    sender: { email: sender, envelopeFrom: p.envelopeFrom, memberStatus: facts.memberStatus },
    senderRules: facts.rules.map((r) => ({ kind: r.kind, email: r.email, expiresAt: r.expires_at })),
    message: { size: p.raw.length, subject: p.message.subject, headers: p.message.headers },
    now: new Date(),
  };
}

/** Keeps a post the rules did not accept: held for a moderator, or recorded as dropped. */
async function holdOrDrop(tx: Queryable, p: Post, decision: Decision): Promise<PostOutcome> {
  // A Message-ID names one message per list: a redelivery is a duplicate, and another message
  // is refused, so that what waits for a moderator is never confused with what the list has. A
  // post the rules drop (a loop above all: our own copy, changed) is only recorded, never refused:
  // a refusal would bounce back to whoever sent it, perhaps our own bounce address.
  const archived = await listHasMessageId(tx, p.list.id, p.message.messageId, p.raw);
  if (archived === 'same') return { kind: 'duplicate' };
  if (archived === 'different' && decision.action === 'hold') return refuse(tx, p, 'the archive of the list');
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
  if (heldId === null) {
    // A post with this Message-ID already waits for a moderator: the same one sent again, or not.
    return (await heldSameContent(tx, p.list.id, p.message.messageId, p.raw)) ? { kind: 'duplicate' } : refuse(tx, p, 'the moderation queue of the list');
  }
  p.log.info({ list: p.list.address, rule: decision.rule, action: decision.action, heldId }, decision.action === 'hold' ? 'post held' : 'post dropped by rule');
  if (decision.action === 'hold') {
    await notifyOwnersOfHeld(tx, p.list);
    return { kind: 'held', heldId, decision };
  }
  if (decision.action === 'reject') await tellSender(tx, p.list, p.message.fromEmail || p.envelopeFrom, p.message, decision.reason);
  return { kind: 'discarded', decision };
}

/**
 * Archives a post and queues its copies, inside the caller's transaction: the path of approved
 * held posts (accepted ones take it in bulk, in postBatch). A Message-ID the list already has is a
 * duplicate (a retry, a loop) when it is the same message, and refused when it is another one.
 * `exact`: link only to a byte-for-byte equal archived message (an approval sends what was held).
 */
export async function acceptPost(tx: Queryable, list: ListRow, raw: Buffer, message: ParsedMessage, envelopeFrom: string | null, log: Logger, opts: { exact?: boolean } = {}): Promise<PostOutcome> {
  const [archived] = await acceptIntoLists(tx, [{ list, raw, message, exact: opts.exact }]);
  return afterAccept(tx, { list, raw, message, envelopeFrom, log }, archived);
}

async function afterAccept(tx: Queryable, p: Post, archived: ArchiveResult & { copies: number }): Promise<PostOutcome> {
  const { copies, ...archive } = archived;
  if (!archive.addedToList) {
    return archive.sameContent ? { kind: 'duplicate', archive } : refuse(tx, p, 'the archive of the list');
  }
  p.log.info({ messageId: p.message.messageId, list: p.list.address, threadId: archive.threadId, created: archive.created, copies }, 'message archived');
  return { kind: 'archived', archive, copies };
}

/**
 * Someone reused a Message-ID the list already has, with other content: the list's message stays
 * as it is, and this one is kept aside with the reason (committed with the batch) and refused.
 */
async function refuse(tx: Queryable, p: Post, where: string): Promise<PostOutcome> {
  const reason = `Message-ID <${p.message.messageId}> already names a different message in ${where} ${p.list.address}`;
  await keepRejected(tx, {
    listId: p.list.id,
    envelopeFrom: p.envelopeFrom,
    recipients: [p.list.address],
    messageId: p.message.messageId,
    reason,
    raw: p.raw,
  });
  p.log.warn({ messageId: p.message.messageId, list: p.list.address }, 'reused Message-ID with different content refused and kept aside');
  return { kind: 'refused', error: new RejectedMessage(`5.7.0 ${reason}; the message was kept for the list owner`, 'message_id_reused', 554) };
}

/** Approves a held post: archived and sent exactly once, through acceptPost, byte for byte as held. */
export async function release(tx: Queryable, list: ListRow, held: HeldRow, message: ParsedMessage): Promise<PostOutcome> {
  return acceptPost(tx, list, held.raw, message, held.envelope_from, rootLog.child({ messageId: message.messageId, heldId: held.id }), { exact: true });
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
