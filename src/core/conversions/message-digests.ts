/*
 * message-digests: every archived message gets the SHA-256 of its raw bytes in message_digests.
 * Messages archived since sql/0056 have it from a trigger; this job gives it to the ones archived
 * before (and to any a restore or a bulk load left without one). The raw download serves it as
 * Repr-Digest (RFC 9530), so that a mirror or an auditor can check the bytes it got; until the
 * job has reached a message, the web computes it from the bytes instead.
 */

import { countMessagesAfter, fillMessageDigests, firstMessageAfter } from '../../db/message-digests.ts';
import type { Queryable } from '../../db/pool.ts';

export const messageDigests = {
  name: 'message-digests',
  describe: 'SHA-256 of every archived message (served as Repr-Digest by the raw download)',
  estimate: (db: Queryable, afterKey: number) => countMessagesAfter(db, afterKey),
  batch: (tx: Queryable, afterKey: number, limit: number) => fillMessageDigests(tx, afterKey, limit),
  nextKey: (db: Queryable, afterKey: number) => firstMessageAfter(db, afterKey),
};
