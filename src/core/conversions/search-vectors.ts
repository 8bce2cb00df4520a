/*
 * search-vectors: on a database whose LC_CTYPE is C or POSIX (the embedded server's), PostgreSQL's
 * text-search parser took punctuation beyond ASCII for letters, and a message's vector held
 * "“vacuum”" where a search looks for vacuum. search_text() writes such punctuation as spaces
 * since sql/0075; this job gives the messages indexed before, those holding any of it, their
 * vectors again. Under any other LC_CTYPE no vector changes, and the job is done at its first
 * batch. Until it has reached a message, that message is found as before.
 */

import { countMessagesAfter, firstMessageAfter } from '../../db/message-digests.ts';
import type { Queryable } from '../../db/pool.ts';
import { punctuationGlued, revectorMessages } from '../../db/search-vectors.ts';

export const searchVectors = {
  name: 'search-vectors',
  describe: 'search vectors again for messages with punctuation beyond ASCII, on a database whose LC_CTYPE is C or POSIX',
  estimate: async (db: Queryable, afterKey: number) => ((await punctuationGlued(db)) ? countMessagesAfter(db, afterKey) : 0),
  nextKey: (db: Queryable, afterKey: number) => firstMessageAfter(db, afterKey),
  async batch(tx: Queryable, afterKey: number, limit: number) {
    if (!(await punctuationGlued(tx))) return { lastKey: null, seen: 0, changed: 0 };
    return revectorMessages(tx, afterKey, limit);
  },
};
