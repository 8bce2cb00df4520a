/*
 * `npm run bench -- --scale 1m` (or 100k, 250k, …): ten times the archive. The archive benchmark
 * (bench/archive.ts) at that many messages, its import rate over the whole run, search, message
 * and thread pages and the database's size per message; then one post to a list of 100,000
 * members (BENCH_SCALE_MEMBERS) fanned out by one worker (bench/delivery.ts): the time to queue
 * its copies and the deliveries per second. Run it at two sizes to see the growth curves
 * docs/scaling.md plans from.
 */

import { run as archive } from './archive.ts';
import { run as delivery } from './delivery.ts';

export const SCALE_GOALS =
  'scale goals (issue 14): import >= 2,000 msgs/s sustained; search p95 <= 30 ms (rare, common, phrases), worst <= 200 ms; message page p95 <= 5 ms; 100,000 members: >= 3,000 deliveries/s per worker';

/** "1m" → 1,000,000; "100k" → 100,000; a plain number as it is. */
export function scaleMessages(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(text.trim());
  if (!m) throw new Error(`--scale takes a number of messages like 1m, 250k or 50000, not "${text}"`);
  const n = Math.round(Number(m[1]) * { '': 1, k: 1e3, m: 1e6 }[m[2].toLowerCase() as '' | 'k' | 'm']);
  if (n < 1000) throw new Error(`--scale ${text}: at least 1,000 messages`);
  return n;
}

export async function run(args: string[] = []): Promise<void> {
  const messages = scaleMessages(args[0] ?? process.env.BENCH_SCALE ?? '1m');
  const members = Number(process.env.BENCH_SCALE_MEMBERS ?? 100_000);
  console.log(`scale: ${messages.toLocaleString('en-US')} messages, a list of ${members.toLocaleString('en-US')} members`);
  process.env.BENCH_MESSAGES = String(messages);
  // Uncached pages only: the scale figures are about the work a request does. The archive stays
  // while the big list posts: one site, its archive beside its members, on a server sized for both.
  const kept = await archive(['search', 'message', 'thread', 'size'], { keep: true });
  try {
    await delivery([], { sizes: [members], workers: [1] });
  } finally {
    await kept?.drop();
  }
  console.log(SCALE_GOALS);
}
