/*
 * Digests: when a list's waiting posts reach its size threshold, or the oldest has waited a day
 * (digest_interval_hours), whichever comes first, members in digest mode get one message: MIME
 * or RFC 1153 plain text, as each prefers. Run by the delivery workers' maintenance; the list
 * row lock makes sure only one worker builds a given digest.
 */

import type pg from 'pg';
import { digestMembers, lockListForDigest, nextDigestIssue, takeDigestItems } from '../db/digests.ts';
import { enqueueMail, insertOutboundMail, notifyOutbox } from '../db/outbox.ts';
import { withTransaction } from '../db/pool.ts';
import { log } from '../log.ts';
import { mimeDigest, plainDigest, type DigestInfo, type DigestMessage } from '../mail/digest.ts';
import { verpAddress } from '../mail/address.ts';
import { listKey } from '../db/list-key.ts';
import { DIGEST_FORMATS } from '../list-policies.ts';

/** Builds and queues a list's digest now, whatever its size; false when there was nothing to send. */
export async function sendDigest(pool: pg.Pool, listId: number, publicUrl: string): Promise<boolean> {
  return withTransaction(pool, async (tx) => {
    const list = await lockListForDigest(tx, listId);
    if (!list) return false;
    const items = await takeDigestItems(tx, listId);
    if (items.length === 0) return false;
    const members = await digestMembers(tx, listId);
    if (members.length === 0) return false; // nobody reads digests: the waiting posts are simply let go
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
