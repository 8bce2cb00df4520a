/*
 * Hiding an archived message from one list's readers (privacy, spam, legal) and showing it again:
 * it leaves the archive, search, feeds and downloads of that list, and the change is audited in
 * its transaction. `actor` is the moderator's account. Showing a message that is not hidden changes
 * nothing and records nothing (as removing a role or a sender rule that is not there).
 */

import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import type { ListRow } from '../db/lists.ts';
import { messageInList } from '../db/message-admin.ts';
import { hideMessage as markHidden, unhideMessage as markShown } from '../db/messages.ts';
import { withTransaction } from '../db/pool.ts';
import { NotFound } from '../errors.ts';

/** Why a message may be hidden (the panel's choices, the REST API's values). */
export const HIDE_REASONS = ['privacy', 'spam', 'legal'] as const;

export async function hideMessage(pool: pg.Pool, list: ListRow, messageId: string, opts: { category: string; note?: string; actor: string }): Promise<void> {
  await withTransaction(pool, async (tx) => {
    await mustBeInList(tx, list, messageId);
    await markHidden(tx, list.id, messageId, opts.note ? `${opts.category}: ${opts.note}` : opts.category, opts.actor);
    await recordAudit(tx, { actor: opts.actor, action: 'message.hide', list, target: messageId, detail: { reason: opts.category, ...(opts.note ? { note: opts.note } : {}) } });
  });
}

/** Shows a hidden message again; false when it was not hidden (nothing changed, nothing audited). */
export async function unhideMessage(pool: pg.Pool, list: ListRow, messageId: string, opts: { actor: string }): Promise<boolean> {
  return withTransaction(pool, async (tx) => {
    await mustBeInList(tx, list, messageId);
    const shown = await markShown(tx, list.id, messageId);
    if (shown) await recordAudit(tx, { actor: opts.actor, action: 'message.unhide', list, target: messageId });
    return shown;
  });
}

async function mustBeInList(tx: pg.PoolClient, list: ListRow, messageId: string): Promise<void> {
  if (!(await messageInList(tx, list.id, messageId))) throw new NotFound(`No message <${messageId}> in the archive of ${list.address}.`);
}
