/*
 * Accepting a post: archived, threaded, one outbox copy per member who takes it, or refused when
 * its Message-ID already names another message of the list. The pipeline (post.ts) accepts in
 * bulk; an approval (hold.ts) accepts one held post.
 */

import type { ListRow } from '../db/lists.ts';
import { acceptIntoLists, type ArchiveResult } from '../db/messages.ts';
import type { Queryable } from '../db/pool.ts';
import { RejectedMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ParsedMessage } from '../mail/parse.ts';
import type { PostChecks } from '../mail/post-checks.ts';
import type { Decision } from './moderation-rules.ts';
import { keepRejected } from './retention.ts';
import type { CoreSettings } from './settings.ts';

export interface Post {
  list: ListRow;
  raw: Buffer;
  message: ParsedMessage;
  envelopeFrom: string | null;
  /** what was learnt as it arrived (core/post-checks.ts); stored with the message */
  checks?: PostChecks;
  log: Logger;
  /** what is kept of a refused post (RETENTION_*); PUBLIC_URL for the links of held notices */
  settings: Pick<CoreSettings, 'retention' | 'publicUrl'> & Partial<Pick<CoreSettings, 'postSynchronousCommit'>>;
}

export type PostOutcome =
  | { kind: 'archived'; archive: ArchiveResult; copies: number }
  | { kind: 'duplicate'; archive?: ArchiveResult }
  | { kind: 'held'; heldId: number; decision: Decision }
  | { kind: 'discarded'; decision: Decision }
  /** kept aside and answered with the error: a different message under a Message-ID the list already has (554), or a post a rule rejects (550 5.7.1) */
  | { kind: 'refused'; error: RejectedMessage };

/**
 * Archives a post and queues its copies, inside the caller's transaction: the path of approved
 * held posts (accepted ones take it in bulk, in post.ts). A Message-ID the list already has is a
 * duplicate (a retry, a loop) when it is the same message, and refused when it is another one.
 * `exact`: link only to a byte-for-byte equal archived message (an approval sends what was held).
 */
export async function acceptPost(tx: Queryable, p: Post, opts: { exact?: boolean } = {}): Promise<PostOutcome> {
  const [archived] = await acceptIntoLists(tx, [{ ...p, exact: opts.exact }]);
  return afterAccept(tx, p, archived);
}

/** What became of an accepted post, once accept_post has run: archived, a duplicate, or refused. */
export async function afterAccept(tx: Queryable, p: Post, archived: ArchiveResult & { copies: number }): Promise<PostOutcome> {
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
export async function refuse(tx: Queryable, p: Post, where: string): Promise<PostOutcome> {
  const reason = `Message-ID <${p.message.messageId}> already names a different message in ${where} ${p.list.address}`;
  await keepRejected(tx, {
    listId: p.list.id,
    envelopeFrom: p.envelopeFrom,
    recipients: [p.list.address],
    messageId: p.message.messageId,
    reason,
    raw: p.raw,
  }, p.settings.retention);
  p.log.warn({ messageId: p.message.messageId, list: p.list.address }, 'reused Message-ID with different content refused and kept aside');
  return { kind: 'refused', error: new RejectedMessage(`5.7.0 ${reason}; the message was kept for the list owner`, 'message_id_reused', 554) };
}

/**
 * A post a rule refuses (auth_policy=reject, spam over the reject threshold): kept aside with the
 * reason, like any refused mail (committed with the batch), and answered 550 at the end of DATA.
 * The refusal goes to the server that is handing the post over, which tells its real sender; a
 * notice mailed to From would go to whoever was forged (backscatter).
 */
export async function refuseByRule(tx: Queryable, p: Post, decision: Decision): Promise<PostOutcome> {
  await keepRejected(tx, {
    listId: p.list.id,
    envelopeFrom: p.envelopeFrom,
    recipients: [p.list.address],
    messageId: p.message.messageId,
    reason: `refused by the ${decision.rule} rule: ${decision.reason}`,
    raw: p.raw,
  }, p.settings.retention);
  p.log.info({ messageId: p.message.messageId, list: p.list.address, rule: decision.rule }, 'post refused by rule');
  return { kind: 'refused', error: new RejectedMessage(`${decision.smtpStatus ?? '5.7.1'} ${decision.reason}: refused by the policy of ${p.list.address}`, `refused_${decision.rule}`, 550) };
}
