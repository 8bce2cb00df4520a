/*
 * attachment-text: the messages archived before sql/0070 get their text attachments' text
 * (messages.attachment_text), so that a search finds the words of an attached patch or log in
 * them too, as it does in messages archived since. Until the job has reached a message, a search
 * finds it by its subject, author and body only, as before.
 *
 * Only messages not read yet are read (attachments, attachment_text null), each parsed again from
 * its raw bytes, one at a time (a message can be megabytes), at most PARSED_PER_BATCH or
 * PARSED_BYTES_PER_BATCH of them in a batch so that a batch stays short whatever the batch size
 * and the messages' sizes. Attachments without text, and a message that no longer parses, store
 * '': read, not read again.
 *
 * The previous release, running beside this one during a rolling upgrade, archives messages
 * without their attachments' text (it calls archive_message() without it), also after the job has
 * passed them or finished. Such a message is found by `behind` (the partial index of sql/0073 holds
 * only messages not read yet), and the workers open the job again from it (core/conversions.ts).
 *
 * The texts are stored in one statement once all are parsed: an update of messages counts as an
 * archive change (sql/0011), and from that statement to the commit the web's page cache neither
 * serves nor keeps pages. Stored as each message was parsed, the cache was off for most of every
 * batch, and so for most of the hours the job runs on a large archive.
 */

import { firstUnreadMessage, messagesAfter, storeAttachmentTexts } from '../../db/attachment-text.ts';
import { countMessagesAfter, firstMessageAfter } from '../../db/message-digests.ts';
import { messageRaw } from '../../db/message-raw.ts';
import type { Queryable } from '../../db/pool.ts';
import { RejectedMessage } from '../../errors.ts';
import { storedAttachmentText } from '../../mail/attachment-text.ts';
import { parse } from '../../mail/parse.ts';

/** Messages with attachments parsed in one batch, at most (a few ms each). */
export const PARSED_PER_BATCH = 100;
/** Raw bytes parsed in one batch, at most, past its first message: 20 MB take more than a second. */
export const PARSED_BYTES_PER_BATCH = 8 * 1024 * 1024;

export const attachmentText = {
  name: 'attachment-text',
  describe: 'text of the text attachments of messages archived before, or by the previous release, for search',
  estimate: (db: Queryable, afterKey: number) => countMessagesAfter(db, afterKey),
  nextKey: (db: Queryable, afterKey: number) => firstMessageAfter(db, afterKey),
  behind: (db: Queryable) => firstUnreadMessage(db),
  async batch(tx: Queryable, afterKey: number, limit: number) {
    let lastKey: number | null = null;
    let seen = 0;
    let parsed = 0;
    let bytes = 0;
    const texts: { id: number; text: string }[] = [];
    for (const m of await messagesAfter(tx, afterKey, limit)) {
      if (m.unread) {
        if (parsed === PARSED_PER_BATCH || (parsed > 0 && bytes + m.size > PARSED_BYTES_PER_BATCH)) break;
        parsed++;
        bytes += m.size;
        // `unread` was read in this transaction, and the store checks it again.
        const raw = await messageRaw(tx, m.id);
        if (raw) texts.push({ id: m.id, text: await textOf(raw) });
      }
      lastKey = m.id;
      seen++;
    }
    return { lastKey, seen, changed: await storeAttachmentTexts(tx, texts) };
  },
};

/** What to store: the text, or '' when there is none or the message no longer parses. */
async function textOf(raw: Buffer): Promise<string> {
  try {
    return storedAttachmentText((await parse(raw)).attachments) ?? '';
  } catch (err) {
    if (err instanceof RejectedMessage) return '';
    throw err;
  }
}
