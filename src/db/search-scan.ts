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
  readAt: number;
}

const REFRESH_MS = 5 * 60_000;
/** before ANALYZE has seen the messages (a new archive), sooner */
const REFRESH_EMPTY_MS = 10_000;
const cache = new WeakMap<object, LexemeStats | Promise<LexemeStats>>();

async function readStats(db: Queryable): Promise<LexemeStats> {
  const { rows } = await db.query<{ elems: string[] | null; freqs: number[] | null; reltuples: number }>(
    `select s.most_common_elems::text::text[] as elems, s.most_common_elem_freqs as freqs, c.reltuples::float8 as reltuples
       from pg_class c left join pg_stats s on s.schemaname = current_schema() and s.tablename = 'messages' and s.attname = 'tsv'
      where c.oid = 'messages'::regclass`,
  );
  const r = rows[0];
  const freq = new Map<string, number>();
  const elems = r?.elems ?? [];
  // most_common_elem_freqs: one per lexeme, then the least and greatest frequency and the nulls'.
  const freqs = r?.freqs ?? [];
  elems.forEach((e, i) => freq.set(e, freqs[i]));
  const least = freqs.length > elems.length ? freqs[elems.length] : 0;
  return { freq, otherFreq: least > 0 ? least / 2 : 0.001, rows: Math.max(0, r?.reltuples ?? 0), readAt: Date.now() };
}

/** The statistics for this pool, read again when older than a few minutes (the old ones meanwhile). */
async function lexemeStats(db: Queryable): Promise<LexemeStats> {
  const known = cache.get(db);
  if (known && !(known instanceof Promise)) {
    if (Date.now() - known.readAt > (known.freq.size === 0 ? REFRESH_EMPTY_MS : REFRESH_MS)) {
      known.readAt = Date.now(); // one refresh at a time
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
 * rows × (cap + 1) / matches rows, at about 1 µs each; the index path reads, ranks and sorts every
 * match, at about 8 µs each (measured on a 10k archive: for 582 matches, 2 ms walking against
 * 5 ms by the index). So walking wins when 8 × matches² > rows × (cap + 1).
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
  return 8 * m * m > stats.rows * (cap + 1) ? 'walk' : 'index';
}

/** Whether a websearch query quotes two or more words that are not stop words. */
function hasPhrase(q: string): boolean {
  return q.split('"').some((part, i) => i % 2 === 1 && queryAlternatives(part).some((words) => new Set(words).size > 1));
}

/** Whether ANALYZE's statistics of the lexemes are at hand (chooseScan() then chose by them). */
export async function hasLexemeStats(db: Queryable): Promise<boolean> {
  return ready(await lexemeStats(db));
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
