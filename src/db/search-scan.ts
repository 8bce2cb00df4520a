/*
 * How a plain word search reads the archive, chosen here rather than by the planner at every
 * search. The ranked set is the most recent `cap` matches, and there are two ways to find them:
 *
 * - 'index': ask the GIN index for every match, then sort them by date. Cheap for a rare word (a
 *   few rows), ruinous for a common one (every match is read to be sorted).
 * - 'walk': walk the date index from the newest message, testing each, until `cap` match. Cheap
 *   for a common word (a few hundred rows), ruinous for a rare one (the whole archive is read).
 *
 * The planner makes this choice from the lexeme statistics ANALYZE keeps, but only when it plans
 * the statement for its values, and planning the search cost more than running it (1 ms of 1.7 on
 * a 10k archive). So the statement comes in two fixed shapes, planned once per connection, and
 * the choice is made here from the same statistics (pg_stats' most common lexemes of
 * messages.tsv), read once a few minutes per process.
 */

import type { Queryable } from './pool.ts';
import { queryAlternatives } from './search-words.ts';

export type Scan = 'index' | 'walk';

interface LexemeStats {
  /** frequency (share of rows) of each of the most common lexemes */
  freq: Map<string, number>;
  /** what a lexeme outside that list is taken to have, as PostgreSQL does: half the least listed */
  otherFreq: number;
  rows: number;
  /** ANALYZE's histogram of the messages' dates: bounds of equal shares of the rows, oldest first */
  dates: Date[];
  readAt: number;
}

const REFRESH_MS = 5 * 60_000;
/** before ANALYZE has seen the messages (a new archive), sooner */
const REFRESH_EMPTY_MS = 10_000;
const cache = new WeakMap<object, LexemeStats | Promise<LexemeStats>>();

async function readStats(db: Queryable): Promise<LexemeStats> {
  const { rows } = await db.query<{ elems: string[] | null; freqs: number[] | null; reltuples: number; dates: Date[] | null }>(
    `select s.most_common_elems::text::text[] as elems, s.most_common_elem_freqs as freqs, c.reltuples::float8 as reltuples,
            d.histogram_bounds::text::timestamptz[] as dates
       from pg_class c
       left join pg_stats s on s.schemaname = current_schema() and s.tablename = 'messages' and s.attname = 'tsv'
       left join pg_stats d on d.schemaname = current_schema() and d.tablename = 'messages' and d.attname = 'date'
      where c.oid = 'messages'::regclass`,
  );
  const r = rows[0];
  const freq = new Map<string, number>();
  const elems = r?.elems ?? [];
  // most_common_elem_freqs: one per lexeme, then the least and greatest frequency and the nulls'.
  const freqs = r?.freqs ?? [];
  elems.forEach((e, i) => freq.set(e, freqs[i]));
  const least = freqs.length > elems.length ? freqs[elems.length] : 0;
  return { freq, otherFreq: least > 0 ? least / 2 : 0.001, rows: Math.max(0, r?.reltuples ?? 0), dates: r?.dates ?? [], readAt: performance.now() };
}

/** The statistics for this pool, read again when older than a few minutes (the old ones meanwhile). */
async function lexemeStats(db: Queryable): Promise<LexemeStats> {
  const known = cache.get(db);
  if (known && !(known instanceof Promise)) {
    if (performance.now() - known.readAt > (known.freq.size === 0 ? REFRESH_EMPTY_MS : REFRESH_MS)) {
      known.readAt = performance.now(); // one refresh at a time
      readStats(db).then((s) => cache.set(db, s), () => undefined);
    }
    return known;
  }
  if (known) return known;
  const reading = readStats(db);
  cache.set(db, reading);
  try {
    const s = await reading;
    cache.set(db, s);
    return s;
  } catch (err) {
    cache.delete(db);
    throw err;
  }
}

/** Whether ANALYZE has seen the messages: before, there is nothing to choose by (a new or small archive). */
function ready(stats: Pick<LexemeStats, 'freq' | 'rows'>): boolean {
  return stats.rows > 0 && stats.freq.size > 0;
}

/**
 * How many messages a query is expected to match: a word's share from the statistics, and
 * alternatives combined. The words of one alternative are not independent (a first and a last
 * name, words of one topic): where the planner multiplies their shares, this takes the rarest
 * word's share times the square root of the others'. (On the bench corpus "Lena Young" matched
 * 779 messages; the product said 178.)
 */
export function expectedMatches(stats: Pick<LexemeStats, 'freq' | 'otherFreq' | 'rows'>, q: string): number {
  let none = 1;
  for (const words of queryAlternatives(q)) {
    const shares = [...new Set(words)].map((w) => stats.freq.get(w) ?? stats.otherFreq).sort((a, b) => a - b);
    const share = shares.slice(1).reduce((p, x) => p * Math.sqrt(x), shares[0]);
    none *= 1 - Math.min(1, share);
  }
  return (1 - none) * stats.rows;
}

/**
 * The cheaper way to find a query's `cap` most recent matches. Walking tests about
 * rows × (cap + 1) / matches rows, reading each one's tsvector; the index path reads every
 * match's row to date it and ranks only the `cap + 1` newest. Each costs a few µs a row, alike
 * (on the 10k bench archive, 2026-12-06, medians of 50 alternated runs of the statement: a word in
 * 602 messages 2.6 ms by the index against 3.6 walking, in 905 3.9 against 3.8, in 1,515 5.7
 * against 3.4). So walking wins for one word when matches² > rows × (cap + 1).
 *
 * Words that must all be there (two or more, not a phrase) match fewer messages than the reckoning
 * (`expectedMatches` takes the rarest word's share times the square root of the others'): 400 of
 * 683 reckoned, 706 of 1,103. A walk costs by the real matches, so it wins later: each of the
 * bench's twenty pairs of common words (reckoned at 0.5 to 1.05 of the bound above) took 2.5–3.9 ms
 * by the index and 4.5–7.3 walking, and a pair at 2.5 times the bound walked faster (2.8 against
 * 3.4 ms). Such queries walk past twice the bound. (With 8 µs a match for the index, when it ranked
 * every match, a word walked from a third of the bound: a pair of words in one message in 206
 * messages took 16 ms walking against 5 by the index.)
 */
export async function chooseScan(db: Queryable, q: string, cap: number): Promise<Scan> {
  return scanFor(await lexemeStats(db), q, cap);
}

/** chooseScan() for the statistics given. */
export function scanFor(stats: Pick<LexemeStats, 'freq' | 'otherFreq' | 'rows'>, q: string, cap: number): Scan {
  if (!ready(stats)) return 'index';
  // Only the listed lexemes' shares are known; any other is rarer than the least listed, often
  // far rarer. Taken at half of it (the planner's guess), a word in 186 of 524,000 messages was
  // expected in 3,200 and walked 240 ms through the archive. Walking is chosen only on the
  // statistics' word: an unlisted word asks the index, which costs at most 8 µs per match for
  // the least listed share of the rows (a bound), where a wrong walk reads the whole archive.
  const m = expectedMatches({ ...stats, otherFreq: 0 }, q);
  // A phrase of two or more words matches far fewer messages than its words together (6 against
  // 1,142 for one pair), by an unknown factor: the walk could read the whole archive (820 ms),
  // while the index rechecks each message with all the words (8 µs each). Walk only where even
  // reading the whole archive would cost less than that.
  if (hasPhrase(q)) return 8 * m > stats.rows ? 'walk' : 'index';
  const bound = stats.rows * (cap + 1) * (severalWords(q) ? 2 : 1);
  return m * m > bound ? 'walk' : 'index';
}

/**
 * The index shape reads every match to date it: a fetch from the heap each, about 15 µs when the
 * page is not in shared_buffers. For a word in thousands of messages that is most of a search (a
 * word in 7,262 of a million: 7,173 pages, 100-150 ms), while its `cap + 1` most recent matches lie
 * in the newest few per cent of the archive. So where such a word may be asked for, the index
 * shape first looks at the matches since a date (a bitmap of the date index's newest entries ANDed
 * with the word's: a few hundred pages), and reads them all only when fewer than `cap + 1` are
 * there (search.ts). This is that date: where the newest 2 × (cap + 1) / m of the messages begin,
 * from ANALYZE's histogram of the dates, for m the matches the statistics reckon (a word they do
 * not list taken at the planner's guess, half the least listed share). Null when that is more
 * than a tenth of the archive (a small archive, or rare words): then the window saves little and
 * the bitmap of its dates costs more; and for a phrase.
 */
export async function recentWindow(db: Queryable, q: string, cap: number): Promise<RecentWindow | null> {
  return windowFor(await lexemeStats(db), q, cap);
}

/** The newest part of the archive: messages dated `since` or later, about `share` of them. */
export interface RecentWindow {
  since: Date;
  share: number;
}

/** recentWindow() for the statistics given. */
export function windowFor(stats: Pick<LexemeStats, 'freq' | 'otherFreq' | 'rows' | 'dates'>, q: string, cap: number): RecentWindow | null {
  // A phrase matches far fewer messages than its words (16 against 7,523 for one pair): its
  // window would hold too few, and reading it first is then only a cost.
  if (!ready(stats) || stats.dates.length < 3 || hasPhrase(q)) return null;
  const share = (2 * (cap + 1)) / expectedMatches(stats, q);
  if (!(share <= MAX_WINDOW)) return null;
  // Bounds split the rows into equal shares; rounding down widens the window.
  const steps = stats.dates.length - 1;
  const at = Math.floor((1 - share) * steps);
  return { since: stats.dates[at], share: (steps - at) / steps };
}

/** The largest share of the archive a recent window covers. */
const MAX_WINDOW = 0.1;

/** Whether some alternative of the query needs two or more different words. */
function severalWords(q: string): boolean {
  return queryAlternatives(q).some((words) => new Set(words).size > 1);
}

/** Whether a websearch query quotes two or more words that are not stop words. */
function hasPhrase(q: string): boolean {
  return q.split('"').some((part, i) => i % 2 === 1 && severalWords(part));
}

/** How many messages the archive holds, as ANALYZE last counted (0 before it has). */
export async function archiveRows(db: Queryable): Promise<number> {
  return (await lexemeStats(db)).rows;
}

/** expectedMatches() from the statistics at hand, rounded; null before ANALYZE has seen messages. */
export async function estimateMatches(db: Queryable, q: string): Promise<number | null> {
  const stats = await lexemeStats(db);
  return ready(stats) ? Math.round(expectedMatches(stats, q)) : null;
}
