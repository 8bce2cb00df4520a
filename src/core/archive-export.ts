import type { Writable } from 'node:stream';
import { mboxRows, type MboxScope } from '../db/archive-mbox.ts';
import type { Queryable } from '../db/pool.ts';
import { mboxrdEntry } from '../mail/mbox.ts';
import { drained } from '../writable.ts';

/**
 * Writes a list's messages (or a month, or a thread) as mboxrd, page by page, waiting for the
 * reader whenever the output is full: memory stays bounded by one page of messages.
 * Stops early, without error, when the output is closed (a download cancelled, a closed pipe).
 */
export async function exportMbox(db: Queryable, scope: MboxScope, out: Writable): Promise<number> {
  let count = 0;
  for await (const row of mboxRows(db, scope)) {
    if (out.destroyed || out.writableEnded) break;
    const ok = out.write(mboxrdEntry(row.raw, row.from_email, row.date));
    count++;
    if (!ok) await drained(out);
  }
  return count;
}
