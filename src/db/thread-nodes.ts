/*
 * A thread's messages as its page orders them: per message its id, parent, date in whole
 * milliseconds and whether the list shows it, read from the database as one bytea sent in slices
 * and decoded into typed arrays (mail/thread-order.ts orders them).
 *
 * Read as rows, a thread of 100,000 messages (a bot answering itself on a public list, an imported
 * notification thread) cost node-postgres an object per row and the ordering a Map and an object
 * per message: 0.41-0.64 s a view of any of its pages, 0.28-0.47 s of it on the event loop in
 * stretches of 0.16-0.28 s while every other request of the process waited. Each slice's hex is
 * decoded as it arrives, and decoding the nodes and ordering them are a few milliseconds each
 * (threadTree gives the event loop a turn in between).
 */

import type { ThreadNodes } from '../mail/thread-order.ts';
import type { Queryable } from './pool.ts';

/** Bytes per message in the nodes' bytea: id, parent id, date in ms (int8 each), shown (1 byte). */
const NODE_BYTES = 25;
/** The slices the bytea is sent in: 1,600 messages each. */
const CHUNK_BYTES = 1600 * NODE_BYTES;

/**
 * The thread's messages, shown in the list or not, in one statement (one snapshot): per message
 * its id, parent, date in whole milliseconds (rounded by the database: the order is the same on
 * every read) and whether the list shows it, in the thread index's order (date, id), as one bytea
 * sent in slices of CHUNK_BYTES. A row per message cost node-postgres an object each, 0.1 s of the
 * event loop for 100,000; one bytea of 2.5 MB was decoded (as 5 MB of hex) in one go, 20-40 ms
 * long, where each slice is decoded as it arrives.
 *
 * Whether the list shows each message is one index probe per message (a lateral join with a
 * limit), never a hash of the list's every row: an `exists` here was planned, once the prepared
 * statement went generic, or for a thread of a few thousand, as a hashed subplan over the whole
 * of list_messages: 157-197 ms for a thread of 300 in a list of 200,000 messages, and 152 ms for
 * one of 3,000, against 1-5 ms probed (100,000 messages: 124-135 against 194-209 ms).
 */
export async function readThreadNodes(db: Queryable, listId: number, threadId: number): Promise<ThreadNodes> {
  const { rows } = await db.query<{ nodes: Buffer }>({
    name: 'archive-thread-nodes',
    text: `select substring(t.nodes from k * ${CHUNK_BYTES} + 1 for ${CHUNK_BYTES}) as nodes
             from (select coalesce(string_agg(int8send(id) || int8send(coalesce(parent_id, 0)) || int8send(ms) || case when visible then '\\x01'::bytea else '\\x00'::bytea end, ''::bytea), ''::bytea) as nodes
                     from (select m.id, m.parent_id, (extract(epoch from m.date) * 1000)::bigint as ms, shown.one is not null as visible
                             from messages m
                             left join lateral (select 1 as one from list_messages lm
                                                 where lm.list_id = $1 and lm.message_id = m.id and lm.hidden_at is null limit 1) shown on true
                            where m.thread_id = $2
                            order by m.date, m.id) s) t
            cross join generate_series(0, greatest(0, (length(t.nodes) - 1) / ${CHUNK_BYTES})) k
            order by k`,
    values: [listId, threadId],
  });
  return decodeNodes(rows.length === 1 ? rows[0].nodes : Buffer.concat(rows.map((r) => r.nodes)));
}

/**
 * The nodes of readThreadNodes's bytea, in the order siblings are read in: by date in
 * milliseconds, then id. The database gives them by (date, id), which differs only among messages
 * of the same millisecond; any such stretch is put in order here (any other order too, by a sort).
 */
export function decodeNodes(bytes: Buffer): ThreadNodes {
  const n = bytes.length / NODE_BYTES;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // int8 as two halves: exact below 2^53, without a BigInt per value.
  const int8 = (at: number) => view.getInt32(at) * 4294967296 + view.getUint32(at + 4);
  let ids = new Float64Array(n);
  let parentIds = new Float64Array(n);
  let ms = new Float64Array(n);
  let visible = new Uint8Array(n);
  let sorted = true;
  for (let i = 0, at = 0; i < n; i++, at += NODE_BYTES) {
    ids[i] = int8(at);
    parentIds[i] = int8(at + 8);
    ms[i] = int8(at + 16);
    visible[i] = bytes[at + 24];
    if (i > 0 && (ms[i] < ms[i - 1] || (ms[i] === ms[i - 1] && ids[i] < ids[i - 1]))) sorted = false;
  }
  if (!sorted) {
    const byDate = Array.from({ length: n }, (_, i) => i).sort((a, b) => ms[a] - ms[b] || ids[a] - ids[b]);
    const pick = <T extends Float64Array | Uint8Array>(from: T, to: T) => {
      for (let i = 0; i < n; i++) to[i] = from[byDate[i]];
      return to;
    };
    ids = pick(ids, new Float64Array(n));
    parentIds = pick(parentIds, new Float64Array(n));
    ms = pick(ms, new Float64Array(n));
    visible = pick(visible, new Uint8Array(n));
  }
  const index = new IdIndex(ids);
  const parents = new Int32Array(n);
  for (let i = 0; i < n; i++) parents[i] = parentIds[i] === 0 ? -1 : index.get(parentIds[i]);
  return { ids, parents, visible };
}

/**
 * Where each id is in `ids` (ids are 1 and up): open addressing over typed arrays. A Map of
 * 100,000 numbers took 30-50 ms to fill; this takes a few.
 */
class IdIndex {
  private keys: Float64Array;
  private at: Int32Array;
  private mask: number;

  constructor(ids: Float64Array) {
    let size = 16;
    while (size < ids.length * 2) size *= 2;
    this.keys = new Float64Array(size);
    this.at = new Int32Array(size);
    this.mask = size - 1;
    for (let i = 0; i < ids.length; i++) {
      let slot = this.slot(ids[i]);
      while (this.keys[slot] !== 0) slot = (slot + 1) & this.mask;
      this.keys[slot] = ids[i];
      this.at[slot] = i;
    }
  }

  /** The index of `id`, or -1. */
  get(id: number): number {
    for (let slot = this.slot(id); this.keys[slot] !== 0; slot = (slot + 1) & this.mask) if (this.keys[slot] === id) return this.at[slot];
    return -1;
  }

  private slot(id: number): number {
    return Math.imul((id | 0) ^ ((id / 4294967296) | 0), 0x9e3779b1) & this.mask;
  }
}
