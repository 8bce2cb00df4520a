/*
 * one-line-fields: a subject or author name with bidirectional embeddings, overrides or isolates
 * (U+202A–U+202E, U+2066–U+2069) reorders what a page shows after it: "Re: hi\u202E" made the
 * author beside it in a list of messages read backwards. Messages archived since sql/0084 are
 * stored without them (oneLine(), mail/parsed-message.ts); this job takes them out of the ones
 * archived before. Held posts, a short table, were cleaned by the migration itself. The previous
 * release, running beside this one during a rolling upgrade, still stores them: `behind` finds
 * such a message (sql/0088), and the job is opened again from it.
 */

import { countMessagesAfter, firstMessageAfter } from '../../db/message-digests.ts';
import { cleanMessageFields, firstMessageWithBidi } from '../../db/one-line-fields.ts';
import type { Queryable } from '../../db/pool.ts';
import { BIDI_CONTROLS } from '../../mail/parsed-message.ts';

export const oneLineFields = {
  name: 'one-line-fields',
  describe: 'bidirectional controls out of the subjects and author names of messages archived before',
  estimate: (db: Queryable, afterKey: number) => countMessagesAfter(db, afterKey),
  batch: (tx: Queryable, afterKey: number, limit: number) => cleanMessageFields(tx, afterKey, limit, BIDI_CONTROLS),
  nextKey: (db: Queryable, afterKey: number) => firstMessageAfter(db, afterKey),
  behind: (db: Queryable) => firstMessageWithBidi(db),
};
