/*
 * The post pipeline. Posts that arrive together share one transaction (group commit, db/group-commit.ts),
 * committed before any sender hears 250: the sender facts of the whole batch are read in one
 * statement, the moderation rules decide each post, the accepted ones are archived with one
 * outbox row per member who takes each post in one more statement (accept-post.ts), and the
 * others are held for a moderator (kept out of the archive) or recorded as dropped by a rule
 * (hold.ts).
 */

import type pg from 'pg';
import { GroupCommit } from '../db/group-commit.ts';
import { acceptIntoLists } from '../db/messages.ts';
import { senderFacts, type SenderFacts } from '../db/sender-rules.ts';
import { SYNCHRONOUS_COMMITS, type SynchronousCommit } from '../list-policies.ts';
import { oldSpelling, postSender } from '../mail/address.ts';
import { listId } from '../mail/list-headers.ts';
import { afterAccept, type Post, type PostOutcome } from './accept-post.ts';
import { holdOrDrop } from './hold.ts';
import { decide, type PostFacts } from './moderation-rules.ts';

export function post(pool: pg.Pool, p: Post): Promise<PostOutcome> {
  let committer = committers.get(pool);
  if (!committer) {
    committer = new GroupCommit(pool, postBatch, {
      lockKeys: (q) => [q.message.messageId, ...(q.message.inReplyTo ? [q.message.inReplyTo] : []), ...q.message.references],
      // A list that waits otherwise than the site (its own synchronous_commit) commits in a lane of
      // its own: its posts waiting for an absent standby neither take other lists' posts with them
      // nor keep them from a transaction (docs/operations.md, "250 means on two machines").
      lane: (q) => (q.list.synchronous_commit && q.list.synchronous_commit !== q.settings.postSynchronousCommit ? q.list.synchronous_commit : ''),
    });
    committers.set(pool, committer);
  }
  return committer.run(p);
}

const committers = new WeakMap<pg.Pool, GroupCommit<Post, PostOutcome>>();

async function postBatch(tx: pg.PoolClient, batch: Post[]): Promise<PostOutcome[]> {
  // One spelling per mailbox (bob@xn--bcher-kva.example is bob@bücher.example), as members and rules have it.
  const senders = batch.map((p) => postSender(p.message.fromEmail, p.envelopeFrom));
  const facts = await senderFacts(tx, batch.map((p, i) => ({ listId: p.list.id, email: senders[i], oldSpelling: oldSpelling(senders[i]) })));
  // Decide on the list's settings as committed now, not as the listener's cache last saw them.
  const posts = batch.map((p, i) => (facts[i].list ? { ...p, list: { ...p.list, ...facts[i].list } } : p));
  const decisions = posts.map((p, i) => decide(postFacts(p, senders[i], facts[i])));

  const outcomes: PostOutcome[] = new Array(posts.length);
  const accepted = posts.flatMap((p, i) => (decisions[i].action === 'accept' ? [i] : []));
  const archived = await acceptIntoLists(tx, accepted.map((i) => posts[i]));
  for (const [k, i] of accepted.entries()) outcomes[i] = await afterAccept(tx, posts[i], archived[k]);
  for (const [i, p] of posts.entries()) outcomes[i] ??= await holdOrDrop(tx, p, decisions[i]);
  // The batch commits once: it waits as long as its most demanding list asks.
  const wait = strongest(posts.map((p) => p.list.synchronous_commit ?? p.settings.postSynchronousCommit ?? null));
  if (wait) await tx.query(`set local synchronous_commit = ${wait}`);
  // A duplicate is answered 250 too, but a transaction that wrote no WAL commits without waiting
  // for anyone (a transaction id alone is not enough): a post whose COMMIT was cut off while it
  // waited for the standby (its backend terminated) is committed on the primary alone, and its
  // retry was answered at once. One WAL record makes this COMMIT wait as a new post's would, and
  // a standby that has it has everything committed before it.
  if (outcomes.some((o) => o.kind === 'duplicate')) await tx.query("select pg_logical_emit_message(true, 'listkeeper', 'duplicate post')");
  return outcomes;
}

/** The most demanding of the levels (SYNCHRONOUS_COMMITS is weakest first); null when none is set. */
export function strongest(levels: (SynchronousCommit | null)[]): SynchronousCommit | null {
  return levels.reduce<SynchronousCommit | null>((a, l) => (l && (!a || SYNCHRONOUS_COMMITS.indexOf(l) > SYNCHRONOUS_COMMITS.indexOf(a)) ? l : a), null);
}

function postFacts(p: Post, sender: string, facts: SenderFacts): PostFacts {
  return {
    list: {
      address: p.list.address, listId: listId(p.list.address), postPolicy: p.list.post_policy, maxMessageSize: p.list.max_message_size,
      spamHoldScore: p.list.spam_hold_score, spamRejectScore: p.list.spam_reject_score, authPolicy: p.list.auth_policy,
    },
    sender: { email: sender, envelopeFrom: p.envelopeFrom, memberStatus: facts.memberStatus },
    senderRules: facts.rules.map((r) => ({ kind: r.kind, email: r.email, expiresAt: r.expires_at })),
    message: { size: p.raw.length, subject: p.message.subject, headers: p.message.headers },
    spam: p.checks?.spam ?? null,
    auth: p.checks?.auth ?? null,
    now: facts.now,
  };
}
