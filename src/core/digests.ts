/*
 * Digests: when a list's waiting posts reach its size threshold, or the oldest has waited a day
 * (digest_interval_hours), whichever comes first, members in digest mode get one message: MIME
 * or RFC 1153 plain text, as each prefers; a backlog goes out at once in several issues, each of
 * bounded size. Run by the delivery workers' maintenance; the list row lock makes sure only one
 * worker builds a given issue.
 */

import type pg from 'pg';
import { digestDue, digestMembers, dropDigestItems, dropHiddenDigestItems, lockListForDigest, nextDigestIssue, takeDigestItems } from '../db/digests.ts';
import { enqueueMail, insertOutboundMail, notifyOutbox } from '../db/outbox.ts';
import { withTransaction } from '../db/pool.ts';
import { log } from '../log.ts';
import { mimeDigest, plainDigest, type DigestInfo, type DigestMessage } from '../mail/digest.ts';
import { verpAddress } from '../mail/address.ts';
import { listKey } from '../db/list-key.ts';
import { DIGEST_FORMATS } from '../list-policies.ts';

/**
 * The most posts' bytes one issue carries (unless a single post is larger: it then goes alone),
 * so that building an issue holds a bounded amount in memory and the digest stays well under a
 * relay's size limit (a refused digest is lost for every reader: its posts were taken).
 */
export const DIGEST_ISSUE_MAX_BYTES = 10 * 1024 * 1024;

/**
 * Queues every waiting post of a list now, whatever their size, in as many issues as needed:
 * each takes the oldest posts up to the list's digest_size_threshold or DIGEST_ISSUE_MAX_BYTES
 * (see takeDigestItems), in its own transaction, so one issue is in memory at a time.
 * False when there was nothing to send.
 */
export async function sendDigest(pool: pg.Pool, listId: number, publicUrl: string, maxBytes = DIGEST_ISSUE_MAX_BYTES): Promise<boolean> {
  let sent = false;
  while (await sendDigestIssue(pool, listId, publicUrl, maxBytes, false)) sent = true;
  return sent;
}

/**
 * sendDigest() for a list found due a moment ago, if it still is once locked. Two workers can find
 * it due together; the second one got the lock after the first had sent everything, and sent the
 * posts that had come in since as a digest of their own, hours before it was due.
 */
export async function sendDueDigest(pool: pg.Pool, listId: number, publicUrl: string, maxBytes = DIGEST_ISSUE_MAX_BYTES): Promise<boolean> {
  if (!(await sendDigestIssue(pool, listId, publicUrl, maxBytes, true))) return false;
  await sendDigest(pool, listId, publicUrl, maxBytes);
  return true;
}

/** Builds and queues one issue; false when there was nothing (more) to send, or, `ifDue`, when it is not due. */
async function sendDigestIssue(pool: pg.Pool, listId: number, publicUrl: string, maxBytes: number, ifDue: boolean): Promise<boolean> {
  return withTransaction(pool, async (tx) => {
    const list = await lockListForDigest(tx, listId);
    if (!list) return false;
    if (ifDue && !(await digestDue(tx, listId))) return false;
    const members = await digestMembers(tx, listId);
    if (members.length === 0) {
      await dropDigestItems(tx, listId); // nobody reads digests: the waiting posts are simply let go
      return false;
    }
    await dropHiddenDigestItems(tx, listId);
    // The posts leave digest_items in this transaction: if queueing the issue fails, they wait on.
    const items = await takeDigestItems(tx, listId, list.digest_size_threshold, maxBytes);
    if (items.length === 0) return false;
    const { volume, issue } = await nextDigestIssue(tx, listId);
    const info: DigestInfo = {
      list: { address: list.address, key: await listKey(tx, list.id), publicUrl, name: list.name, domain: list.domain },
      volume,
      issue,
      date: new Date(),
    };
    const messages: DigestMessage[] = items.map((m) => ({
      messageId: m.message_id, raw: m.raw, subject: m.subject, fromName: m.from_name, fromEmail: m.from_email, date: m.date, text: m.body,
    }));
    for (const format of DIGEST_FORMATS) {
      const readers = members.filter((m) => m.digest_format === format);
      if (readers.length === 0) continue;
      const mailId = await insertOutboundMail(tx, format === 'mime' ? mimeDigest(info, messages) : plainDigest(info, messages));
      await enqueueMail(tx, 'digest', list.id, mailId, readers.map((m) => ({
        email: m.email, envelopeFrom: verpAddress(list.address, m.token), memberId: m.id, memberToken: m.token,
      })));
    }
    await notifyOutbox(tx);
    log.info({ list: list.address, volume, issue, messages: messages.length, readers: members.length }, 'digest queued');
    return true;
  });
}
