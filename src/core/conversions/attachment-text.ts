/*
 * attachment-text: the messages archived before sql/0070 get their text attachments' text
 * (messages.attachment_text), so that a search finds the words of an attached patch or log in
 * them too, as it does in messages archived since. Until the job has reached a message, a search
 * finds it by its subject, author and body only, as before.
 *
 * Only messages with attachments are read, each parsed again from its raw bytes, one at a time
 * (a message can be megabytes), at most PARSED_PER_BATCH in a batch so that a batch stays short
 * whatever the batch size. A message that no longer parses is left as it is, not retried.
 */

import { messagesAfter, rawWithoutAttachmentText, storeAttachmentText } from '../../db/attachment-text.ts';
import { countMessagesAfter } from '../../db/message-digests.ts';
import type { Queryable } from '../../db/pool.ts';
import { RejectedMessage } from '../../errors.ts';
import { attachmentSearchText } from '../../mail/attachment-text.ts';
import { parse } from '../../mail/parse.ts';

/** Messages with attachments parsed in one batch, at most (a few ms each). */
export const PARSED_PER_BATCH = 100;

export const attachmentText = {
  name: 'attachment-text',
  describe: 'text of the text attachments of messages archived before, for search',
  estimate: (db: Queryable, afterKey: number) => countMessagesAfter(db, afterKey),
  async batch(tx: Queryable, afterKey: number, limit: number) {
    let lastKey: number | null = null;
    let seen = 0;
    let changed = 0;
    let parsed = 0;
    for (const m of await messagesAfter(tx, afterKey, limit)) {
      if (m.has_attachments) {
        if (parsed === PARSED_PER_BATCH) break;
        parsed++;
        const text = await textOf(await rawWithoutAttachmentText(tx, m.id));
        if (text !== null && (await storeAttachmentText(tx, m.id, text))) changed++;
      }
      lastKey = m.id;
      seen++;
    }
    return { lastKey, seen, changed };
  },
};

async function textOf(raw: Buffer | null): Promise<string | null> {
  if (!raw) return null;
  try {
    return attachmentSearchText((await parse(raw)).attachments);
  } catch (err) {
    if (err instanceof RejectedMessage) return null;
    throw err;
  }
}
