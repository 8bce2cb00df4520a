/*
 * A thread's reading order as its page shows it: each reply under the message it answers, siblings
 * by date, with each message's depth and the message it hangs from.
 *
 * Worked out here from the thread's rows (id, parent, date, whether the list shows it) rather than
 * by a recursive query: the query joined every message of the thread once per level of depth, so a
 * chain of 3,000 replies (a bot answering itself, an import) took 1.5 s a view, and 10,000 about
 * ten times that. This is one pass over the messages whatever their depth.
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
 * The visible messages in reading order. A message hangs from its nearest visible ancestor in the
 * thread (hidden messages and messages of other lists are stepped over); one with none starts a
 * branch. Messages that no branch reaches (caught in a reference cycle, or deeper than MAX_DEPTH)
 * are placed as branches of their own, by their date, with their parent named.
 */
export function readingOrder(nodes: readonly ThreadNode[]): ThreadPlace[] {
  const byId = new Map<number, ThreadNode>();
  for (const n of nodes) byId.set(n.id, n);
  const shown = new Map<number, number | null>(); // visible id -> its nearest visible ancestor
  const stepped = new Map<number, number | null>(); // hidden id -> the nearest visible message above it
  for (const n of nodes) if (n.visible) shown.set(n.id, nearestShown(n.parent_id, byId, stepped));

  const children = new Map<number, ThreadNode[]>();
  const starts: ThreadNode[] = [];
  for (const [id, parent] of shown) {
    const n = byId.get(id)!;
    if (parent === null) starts.push(n);
    else {
      const list = children.get(parent);
      if (list) list.push(n);
      else children.set(parent, [n]);
    }
  }
  const byDate = (a: ThreadNode, b: ThreadNode) => a.ms - b.ms || a.id - b.id;
  for (const list of children.values()) list.sort(byDate);

  // Depth first from each start; an explicit stack, as a chain may be thousands deep.
  const placed = new Map<number, ThreadPlace[]>(); // a start's id -> its branch in order
  const reached = new Set<number>();
  for (const start of starts) {
    const branch: ThreadPlace[] = [];
    const stack: { node: ThreadNode; depth: number }[] = [{ node: start, depth: 0 }];
    while (stack.length > 0) {
      const { node, depth } = stack.pop()!;
      reached.add(node.id);
      branch.push({ id: node.id, depth, parent: shown.get(node.id)! });
      const below = depth < MAX_DEPTH ? children.get(node.id) : undefined;
      if (below) for (let i = below.length - 1; i >= 0; i--) stack.push({ node: below[i], depth: depth + 1 });
    }
    placed.set(start.id, branch);
  }
  // What no branch reached stands alone, ordered with the branches by its date.
  const alone: ThreadNode[] = [];
  for (const id of shown.keys()) if (!reached.has(id)) alone.push(byId.get(id)!);
  const heads = [...starts, ...alone].sort(byDate);
  const order: ThreadPlace[] = [];
  for (const h of heads) {
    const branch = placed.get(h.id);
    if (branch) for (const p of branch) order.push(p);
    else order.push({ id: h.id, depth: 0, parent: shown.get(h.id)! });
  }
  return order;
}

/**
 * The nearest visible message at or above `id` in the thread, or null: none, a message outside the
 * thread, or a cycle of hidden messages. What a walk finds for a hidden message is kept, so a long
 * hidden stretch is walked once.
 */
function nearestShown(id: number | null, byId: Map<number, ThreadNode>, stepped: Map<number, number | null>): number | null {
  const path: number[] = [];
  const onPath = new Set<number>();
  let found: number | null = null;
  let at = id;
  while (at !== null) {
    const n = byId.get(at);
    if (!n) break; // outside the thread
    if (n.visible) {
      found = n.id;
      break;
    }
    if (stepped.has(at)) {
      found = stepped.get(at) ?? null;
      break;
    }
    if (onPath.has(at)) break; // a cycle of hidden messages: no visible ancestor
    onPath.add(at);
    path.push(at);
    at = n.parent_id;
  }
  for (const p of path) stepped.set(p, found);
  return found;
}
