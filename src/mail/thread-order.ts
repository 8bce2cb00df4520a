/*
 * A thread's reading order as its page shows it: each reply under the message it answers, siblings
 * by date, with each message's depth and the message it hangs from.
 *
 * Worked out here from the thread's rows (id, parent, date, whether the list shows it) rather than
 * by a recursive query: the query joined every message of the thread once per level of depth, so a
 * chain of 3,000 replies (a bot answering itself, an import) took 1.5 s a view, and 10,000 about
 * ten times that. This is one pass over the messages whatever their depth, over typed arrays
 * (threadOrder: the pages', from db/thread-nodes.ts); readingOrder gives the same order from rows.
 */

export interface ThreadNode {
  id: number;
  /** the message it answers (messages.parent_id), in this thread or not, or null */
  parent_id: number | null;
  /** its date in milliseconds since the epoch: siblings are read in this order, then by id */
  ms: number;
  /** shown in this list (archived there and not hidden) */
  visible: boolean;
}

export interface ThreadPlace {
  id: number;
  /** 0 for a message that starts a branch */
  depth: number;
  /** the nearest ancestor this list shows, or null */
  parent: number | null;
}

/** As deep as a reply is placed under its parent; deeper ones start a branch of their own. */
export const MAX_DEPTH = 10_000;

/**
 * A thread's messages as the database gives them to be ordered, as parallel arrays: one entry per
 * message of the thread, sorted by date in whole milliseconds, then by id (the order siblings are
 * read in), so that ordering needs no sort and keeps no object per message.
 */
export interface ThreadNodes {
  ids: Float64Array;
  /** the index (in these arrays) of the message it answers, or -1: none, or not in this thread */
  parents: Int32Array;
  /** 1 when this list shows it */
  visible: Uint8Array;
}

/** The visible messages in reading order, as parallel arrays (what threadOrder() returns). */
export interface ThreadOrder {
  ids: Float64Array;
  depths: Int32Array;
  /** the nearest visible ancestor's id, or 0 (ids start at 1) */
  parents: Float64Array;
}

/**
 * The visible messages in reading order, from the thread's rows in any order (threadOrder over
 * them, sorted). A message hangs from its nearest visible ancestor in the thread (hidden messages
 * and messages of other lists are stepped over); one with none starts a branch. Messages that no
 * branch reaches (caught in a reference cycle, or deeper than MAX_DEPTH) are placed as branches of
 * their own, by their date, with their parent named.
 */
export function readingOrder(nodes: readonly ThreadNode[]): ThreadPlace[] {
  const sorted = [...nodes].sort((a, b) => a.ms - b.ms || a.id - b.id);
  const index = new Map<number, number>();
  for (let i = 0; i < sorted.length; i++) index.set(sorted[i].id, i);
  const n = sorted.length;
  const arrays: ThreadNodes = { ids: new Float64Array(n), parents: new Int32Array(n), visible: new Uint8Array(n) };
  for (let i = 0; i < n; i++) {
    const x = sorted[i];
    arrays.ids[i] = x.id;
    arrays.parents[i] = x.parent_id === null ? -1 : (index.get(x.parent_id) ?? -1);
    arrays.visible[i] = x.visible ? 1 : 0;
  }
  const order = threadOrder(arrays);
  const places: ThreadPlace[] = [];
  for (let k = 0; k < order.ids.length; k++) places.push({ id: order.ids[k], depth: order.depths[k], parent: order.parents[k] || null });
  return places;
}

/**
 * readingOrder() over the arrays of ThreadNodes, in a few passes over typed arrays: 100,000
 * messages take a few milliseconds, where maps and an object per message took 0.2 s of the event
 * loop. Siblings, and the branches that start the thread, come in the order of the arrays.
 */
export function threadOrder(nodes: ThreadNodes): ThreadOrder {
  const { ids, visible } = nodes;
  const n = ids.length;
  // Each visible message's nearest visible ancestor (index, or -1).
  const up = nearestShown(nodes);
  let shown = 0;
  for (let i = 0; i < n; i++) if (visible[i]) shown++;

  // Each visible message's visible children, in the arrays' order (by date): counted, then placed.
  const first = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) if (visible[i] && up[i] >= 0) first[up[i] + 1]++;
  for (let i = 0; i < n; i++) first[i + 1] += first[i];
  const children = new Int32Array(first[n]);
  const fill = first.slice(0, n);
  for (let i = 0; i < n; i++) if (visible[i] && up[i] >= 0) children[fill[up[i]]++] = i;

  // Depth first from each start (a visible message with no visible ancestor), with an explicit
  // stack, as a chain may be thousands deep; a message at MAX_DEPTH does not take its replies along.
  const branchAt = new Int32Array(n).fill(-1); // a start's index -> where its branch begins in `walk`
  const branchEnd = new Int32Array(n); // ... and where it ends
  const walk = new Int32Array(shown);
  const walkDepth = new Int32Array(shown);
  const reached = new Uint8Array(n);
  const stack = new Int32Array(shown);
  const stackDepth = new Int32Array(shown);
  let w = 0;
  for (let s = 0; s < n; s++) {
    if (!visible[s] || up[s] >= 0) continue;
    branchAt[s] = w;
    let top = 0;
    stack[top] = s;
    stackDepth[top++] = 0;
    while (top > 0) {
      const x = stack[--top];
      const depth = stackDepth[top];
      reached[x] = 1;
      walk[w] = x;
      walkDepth[w++] = depth;
      if (depth >= MAX_DEPTH) continue;
      for (let c = first[x + 1] - 1; c >= first[x]; c--) {
        stack[top] = children[c];
        stackDepth[top++] = depth + 1;
      }
    }
    branchEnd[s] = w;
  }

  // The branches, and the messages no branch reached (alone, with their parent named), by date.
  const out: ThreadOrder = { ids: new Float64Array(shown), depths: new Int32Array(shown), parents: new Float64Array(shown) };
  let k = 0;
  for (let h = 0; h < n; h++) {
    if (!visible[h]) continue;
    if (branchAt[h] >= 0) {
      for (let j = branchAt[h]; j < branchEnd[h]; j++) {
        const x = walk[j];
        out.ids[k] = ids[x];
        out.depths[k] = walkDepth[j];
        out.parents[k++] = up[x] >= 0 ? ids[up[x]] : 0;
      }
    } else if (!reached[h]) {
      out.ids[k] = ids[h];
      out.depths[k] = 0;
      out.parents[k++] = up[h] >= 0 ? ids[up[h]] : 0;
    }
  }
  return out;
}

/**
 * For each visible message, the index of the nearest visible message above it in the thread, or
 * -1: none, a message outside the thread, or a cycle of hidden messages. What a walk finds for a
 * hidden message is kept, so a long hidden stretch is walked once.
 */
function nearestShown(nodes: ThreadNodes): Int32Array {
  const { parents, visible } = nodes;
  const n = parents.length;
  const up = new Int32Array(n).fill(-1);
  const UNKNOWN = -2;
  const stepped = new Int32Array(n).fill(UNKNOWN); // a hidden message -> the nearest visible one above it
  const onPath = new Int32Array(n).fill(-1); // the walk (by the visible message it started from) a hidden message is on
  const path = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (!visible[i]) continue;
    let length = 0;
    let found = -1;
    let at = parents[i];
    while (at >= 0) {
      if (visible[at]) {
        found = at;
        break;
      }
      if (stepped[at] !== UNKNOWN) {
        found = stepped[at];
        break;
      }
      if (onPath[at] === i) break; // a cycle of hidden messages: no visible ancestor
      onPath[at] = i;
      path[length++] = at;
      at = parents[at];
    }
    for (let p = 0; p < length; p++) stepped[path[p]] = found;
    up[i] = found;
  }
  return up;
}
