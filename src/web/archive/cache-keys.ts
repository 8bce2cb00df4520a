/*
 * The surrogate keys of archive pages: what each page shows, named so that a cache in front can
 * drop exactly the pages a change touches (PURGE_URL; docs/operations.md "Behind Varnish"). Pages
 * carry them in `Surrogate-Key` and `xkey` (setCacheHeaders); the triggers of sql/0055 queue the
 * same names when what they name changes, so the two must agree (test/purge-keys.test.ts).
 */

import type { MessageCopy } from '../../db/archive-messages.ts';

/** `/` and `/search`: every public list and message. */
export const SITE_KEY = 'site';
/** Every page of a list, and the message pages shown through it. */
export const listKey = (listId: number) => `list-${listId}`;
/** The list page and its feed: its latest messages. */
export const latestKey = (listId: number) => `latest-${listId}`;
/** A month page and its mbox (`YYYY-MM`, UTC). */
export const monthKey = (listId: number, month: string) => `month-${listId}-${month}`;
/** A thread's pages and mbox, and the pages of its messages (they show its replies and count). */
export const threadKey = (threadId: number) => `thread-${threadId}`;
/** A message's page, raw bytes and attachments (its row id, not its Message-ID). */
export const messageKey = (messageRowId: number) => `message-${messageRowId}`;

/** Keys of a page about messages, from the copies it was resolved from: each message and each list. */
export function copyKeys(copies: MessageCopy[]): string[] {
  return [...new Set([...copies.map((c) => messageKey(c.mid)), ...copies.map((c) => listKey(c.list_id))])];
}
