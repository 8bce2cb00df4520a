import type pg from 'pg';
import { recordIngestError } from './db/ingest-errors.ts';
import type { ListRow } from './db/lists.ts';
import { archiveMessage, type ArchiveResult } from './db/messages.ts';
import { withTransaction } from './db/pool.ts';
import type { Logger } from './log.ts';
import type { ParsedMessage } from './mail/parse.ts';

export interface Post {
  list: ListRow;
  raw: Buffer;
  message: ParsedMessage;
  envelopeFrom: string | null;
  log: Logger;
}

export type PostOutcome = { kind: 'archived'; archive: ArchiveResult } | { kind: 'duplicate'; archive: ArchiveResult };

/**
 * The post pipeline, in one transaction: nothing is acknowledged to the sender before this commits.
 * A Message-ID the list already has is a duplicate (a retry, a loop): it is not stored again.
 */
export async function post(pool: pg.Pool, p: Post): Promise<PostOutcome> {
  return withTransaction(pool, async (tx) => {
    const archive = await archiveMessage(tx, p.list.id, p.raw, p.message);
    if (!archive.created && !archive.sameContent) {
      // Someone reused a Message-ID with different content: the archived message stays as it is,
      // and this one is kept aside with the reason rather than lost.
      await recordIngestError(tx, {
        listId: p.list.id,
        envelopeFrom: p.envelopeFrom,
        recipients: [p.list.address],
        messageId: p.message.messageId,
        reason: `Message-ID <${p.message.messageId}> is already archived with different content; the archived message was kept`,
        raw: p.raw,
      });
      p.log.warn({ messageId: p.message.messageId }, 'reused Message-ID with different content kept aside');
    }
    if (!archive.addedToList) return { kind: 'duplicate', archive };
    p.log.info({ messageId: p.message.messageId, list: p.list.address, threadId: archive.threadId, created: archive.created }, 'message archived');
    return { kind: 'archived', archive };
  });
}
