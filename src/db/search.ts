/*
 * Full-text search as pgarchives does it: the `listkeeper` text-search configuration (no e-mail
 * addresses, URLs or host names as words), subject weighted A, author's name B, body D
 * (sql/0050_search.sql; CJK and Thai text as bigrams through search_text()), websearch syntax
 * ("a phrase", or, -word), ranked, with excerpts whose matched words are marked
 * (search-excerpt.ts). The operators typed in the box are taken apart before this
 * (web/archive/search-operators.ts) and arrive as fields. A search is one statement: the lists
 * the reader may read are worked out in it, and plain word searches take one of two plans fixed
 * in advance (search-scan.ts) instead of being planned each time.
 *
 * Ranking every match of a common word is what makes searches slow (it reads every matching
 * tsvector), so only the most recent `cap` matches are ranked: the date index finds them quickly
 * whatever the word. When there were more, the result says so (`capped`), the pages after the
 * ranked set list the older matches by date, and the count is the planner's estimate, or exact
 * where the GIN index gave every match (the index shape reads them all anyway).
 */

import { InvalidInput } from '../errors.ts';
import { mailboxSpellings } from '../mail/address.ts';
import { LIST_KEY } from './list-key.ts';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Queryable } from './pool.ts';
import type { Reader } from './archive.ts';
import { EXCERPT_CHARS, EXCERPT_LEAD, excerptWindow, markExcerpt } from './search-excerpt.ts';
import { archiveRows, chooseScan, estimateMatches, recentWindow, type RecentWindow, type Scan } from './search-scan.ts';
import { NO_SPACES_RUN, queryLexemes, spacedSymbols } from './search-words.ts';

export type SearchSort = 'relevance' | 'date';

export interface SearchQuery {
  /** websearch syntax; null to list by the filters alone, newest first */
  q: string | null;
  /** websearch syntax matched against subjects only (the subject: operator); null for none */
  subject: string | null;
  /** lists to search (null: all); only those the reader may read are searched */
  listIds: number[] | null;
  reader: Reader;
  /** each an address (exact) or part of a name or address; all must match */
  from: string[];
  /**
   * The reader sees addresses without their domain (anonymous): a part of an author is looked for
   * in the name and the address before its @ only. Else each guess at a piece of a domain
   * (`from:ietdom`) told whether it was one, and a domain could be read a letter at a time.
   */
  domainsHidden?: boolean;
  /** inclusive */
  after: Date | null;
  /** exclusive */
  before: Date | null;
  /** relevance ranks the most recent `cap` matches; date lists every match newest first */
  sort: SearchSort;
  limit: number;
  offset: number;
  cap: number;
  /** for a plain word search, this way of reading rather than search-scan.ts's choice (tests compare them) */
  scan?: Scan;
  /** for the index shape, this recent window (null: none) rather than search-scan.ts's (tests compare them) */
  window?: RecentWindow | null;
}

export interface SearchHit {
  message_id: string;
  subject: string;
  from_name: string;
  from_email: string;
  date: Date;
  rank: number;
  /** body excerpt with matches between \u0001 and \u0002 */
  excerpt: string;
  /** the excerpt is of a text attachment: the first typed word is there and not in the body */
  inAttachment: boolean;
  /** the first of the searched lists the message is in, and its URL key */
  list_id: number;
  list_key: string;
}

export interface SearchResult {
  /** the page, plus one more row when there is a next page (see `more`) */
  hits: SearchHit[];
  /** whether a later page has matches */
  more: boolean;
  /** how many messages match: exact, or the planner's estimate when `exact` is false */
  total: number;
  exact: boolean;
  /** `total` is only a lower bound (the search leaves out lists whose messages the estimates would count) */
  atLeast?: boolean;
  /** more matches than the cap: only the most recent were ranked */
  capped: boolean;
  /** this page is ranked by relevance (else: by date, newest first) */
  ranked: boolean;
}

/**
 * What a visitor types, made safe for websearch_to_tsquery without changing what it finds.
 * PostgreSQL keeps pending operators on a stack of 32 (tsquery.c); in websearch syntax only NOT
 * (a '-' where a word may start) piles up there, and 33 of them fail with "tsquery stack too
 * small", an internal error. A run of NOTs means what its parity says, so a run of more than two
 * keeps its first one or two. Inside quotes a '-' is text: the quoted parts are left alone.
 */
// A run of '-' where a word may start: at the beginning, or after a space or an operator
// character that websearch_to_tsquery skips (ISOPERATOR in tsquery.c).
const NOT_RUN = /(^|[ \t\n\v\f\r!&|()<])((?:-[ \t\n\v\f\r!&|()<]*)+)/g;

export function websearchText(q: string): string {
  if (!q.includes('-')) return q;
  return q
    .split('"')
    .map((part, i) => (i % 2 === 1 ? part : part.replace(NOT_RUN, (whole, before: string, run: string) => {
      const dashes = [...run.matchAll(/-/g)].map((m) => m.index);
      if (dashes.length <= 2) return whole;
      const keep = dashes.length % 2 === 1 ? 1 : 2;
      // The kept NOTs, then what followed the last one (the separator before the next word).
      return before + run.slice(0, dashes[keep - 1] + 1) + run.slice(dashes[dashes.length - 1] + 1);
    })))
    .join('"');
}

/**
 * PostgreSQL's refusals of a search's text (SQLSTATE 22 and 54: a word too long, a query too
 * large; and the operator stack websearchText() guards against), as a 400 with a plain message.
 */
function searchRefused(err: unknown): unknown {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const tsquery = typeof e.message === 'string' && /tsquery/.test(e.message);
  if (code.startsWith('22') || code.startsWith('54') || (code === 'XX000' && tsquery)) {
    return new InvalidInput('This search cannot be run: it has too many operators, or a word that is too long. Shorten it and try again.', 'bad_search');
  }
  return err;
}


/**
 * The query text as the database is to parse it: its punctuation beyond ASCII as spaces, as
 * search_text() writes a document's (spacedSymbols()), websearchText(), and each run of CJK (etc.)
 * characters outside quotes made a phrase and put through search_text(), as documents are, so
 * that 日本語 becomes the bigrams 日本 <-> 本語 (found where they stand together). Only such a
 * query asks the database, once, before the search: the search's SQL then holds a plain
 * parameter wherever the tsquery appears.
 */
async function queryText(db: Queryable, q: string): Promise<string> {
  const safe = websearchText(spacedSymbols(q));
  if (!safe.match(NO_SPACES_RUN)) return safe;
  const quoted = safe.split('"').map((part, i) => (i % 2 === 1 ? part : part.replace(NO_SPACES_RUN, (run) => `"${run}"`))).join('"');
  const { rows } = await db.query<{ t: string }>('select search_text($1) as t', [quoted]);
  return rows[0].t;
}

const TSQUERY = (param: string) => `websearch_to_tsquery('listkeeper', ${param})`;

/**
 * A query of ASCII letters, digits, spaces, quotes and '-' alone: PostgreSQL's parser makes only
 * words, numbers and hyphenated words of it, and the `listkeeper` configuration keeps every such
 * token but the stop words, which search-words.ts has as the same list.
 */
const PLAIN_QUERY = /^[A-Za-z0-9\s"-]*$/;

/**
 * Whether a websearch query has any word left once stop words are dropped. Asked after a search
 * found nothing, to tell "nothing matches" from "nothing to search for". Where the query is plain
 * and a word of it is found here, the answer is yes without asking the database (a typo's search
 * then costs one statement, not two); otherwise, or when no word is found here, the database says.
 */
export async function hasSearchTerms(db: Queryable, q: string): Promise<boolean> {
  if (PLAIN_QUERY.test(q) && queryLexemes(q).size > 0) return true;
  try {
    const { rows } = await db.query<{ n: number }>(`select numnode(${TSQUERY('$1')}) as n`, [await queryText(db, q)]);
    return rows[0].n > 0;
  } catch (err) {
    throw searchRefused(err);
  }
}

/** How a statement finds the matches: planned for its values, or one of search-scan.ts's two fixed shapes. */
type Mode = 'planned' | Scan;

/**
 * The CTEs, WHERE clause and parameters of a search. $1-$3 always name the lists: the ones asked
 * for (null: all) narrowed to those the reader may read, by the one rule (can_read_archive), in
 * the same statement, so that a search costs one trip to the database.
 */
function filters(s: Texts, mode: Mode) {
  const params: unknown[] = [s.listIds, s.reader.emails, s.reader.siteAdmin];
  const p = (v: unknown) => `$${params.push(v)}`;
  const ctes = [`readable as materialized (select coalesce(array_agg(l.id), '{}') as ids from lists l
                  where ($1::bigint[] is null or l.id = any($1::bigint[])) and can_read_archive(l.id, l.archive, $2::text[], $3::boolean))`];
  const where: string[] = [];
  const parts: string[] = [];
  if (mode === 'planned') {
    // Written inline (not in a CTE) so the planner sees it (folded to a constant): for a common
    // word it walks the date index, for a rare one it uses GIN.
    if (s.q) parts.push(TSQUERY(p(s.q)));
  } else {
    // One fixed plan for any words: the tsquery is computed once (an InitPlan), not per row.
    ctes.push(`q as materialized (select ${TSQUERY(p(s.q))} as q)`);
    parts.push('(select q from q)');
  }
  if (s.subject) {
    const subject = TSQUERY(p(s.subject));
    parts.push(subject);
    // The index finds the words anywhere; the subject alone is checked on those rows.
    where.push(`to_tsvector('listkeeper', search_text(m.subject)) @@ ${subject}`);
  }
  const tsquery = parts.length ? parts.join(' && ') : null;
  // A function call rather than the operator: no index can serve it, so the plan walks by date.
  if (tsquery) where.push(mode === 'walk' ? `ts_match_vq(m.tsv, ${tsquery})` : `m.tsv @@ (${tsquery})`);
  /** the spellings of an author's address that has several (parameters): whereSpelled has a clause for each */
  let spelled: string[] = [];
  for (const f of s.from) {
    const v = f.trim();
    if (isAuthorAddress(v)) {
      // Archived messages keep From as it was sent: an address is looked for in each spelling of
      // its mailbox, its domain in U-labels and in A-labels (mailboxSpellings). An ASCII domain has one.
      const spellings = mailboxSpellings(v).map(p);
      if (spellings.length === 1) where.push(`m.from_email = ${spellings[0]}`);
      else if (spelled.length === 0) spelled = spellings;
      else where.push(`m.from_email in (${spellings.join(', ')})`);
    } else {
      // One expression, as indexed by messages_author_trgm (sql/0051): trigrams find the substring.
      // The newline between name and address is never in the value (its white space is made
      // spaces), so a match cannot run from the name into the address.
      const like = p(`%${v.replace(/\s+/g, ' ').replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      where.push(`(m.from_name || E'\\n' || m.from_email) ilike ${like}`);
      // Checked on the rows the index finds: the same value without the domain.
      if (s.domainsHidden) where.push(`(m.from_name || E'\\n' || regexp_replace(m.from_email, '@[^@]*$', '')) ilike ${like}`);
    }
  }
  if (s.after) where.push(`m.date >= ${p(s.after)}`);
  if (s.before) where.push(`m.date < ${p(s.before)}`);
  /** the list check of a row `alias` that has the message's id */
  const readable = (alias: string) => `exists (select 1 from list_messages lm where ${inReadableList(alias)})`;
  /** the first readable list of a row `alias` (null: none): the list check and the list shown, in one lookup */
  const firstList = (alias: string) => `(select min(lm.list_id) from list_messages lm where ${inReadableList(alias)})`;
  /** the conditions on the message: the author's spellings all, or only the one given */
  const on = (one?: string) => (spelled.length === 0 ? where : [...where, one ? `m.from_email = ${one}` : `m.from_email in (${spelled.join(', ')})`]);
  const all = (one?: string) => [readable('m'), ...on(one)].join('\n and ');
  return {
    ctes, params, p, tsquery, firstList,
    where: all(),
    /** the conditions on the message alone, without the list check (the index shape's first step) */
    whereMessage: on().join('\n and '),
    // The same test with the list check asked of each row found (a subquery PostgreSQL does not
    // turn into a join): where the matches are few but their number unknown, the planner would
    // otherwise hash every list_messages row of the archive to join them (2.2 ms on 10,000).
    whereEach: [`(select true from list_messages lm where ${inReadableList('m')} limit 1)`, ...on()].join('\n and '),
    /** `where` for each spelling of an author's address that has several, one `=` each; none otherwise */
    whereSpelled: spelled.map((e) => all(e)),
  };
}

/** An author filter that is an address, matched exactly; anything else is part of a name or address. */
export function isAuthorAddress(from: string): boolean {
  const v = from.trim();
  return v.includes('@') && !/\s/.test(v);
}

/**
 * Whether the trigram index can find a part of a name: it needs three letters or digits in a row.
 * Shorter, every message was read for it (`from:zq`: 0.35 s on 300,000 messages, 19 of them
 * 0.7 s, and as many again with the next two letters, past the page cache).
 */
export function authorFragmentSearchable(from: string): boolean {
  return /[\p{L}\p{N}]{3}/u.test(from);
}

const READABLE = '(select ids from readable)::bigint[]';

/** `lm` is a visible copy of message `alias` in a list the reader may read. */
const inReadableList = (alias: string) => `lm.message_id = ${alias}.id and lm.list_id = any(${READABLE}) and lm.hidden_at is null`;

/**
 * One page of results, one row more than the page when there is a next one. Ranked (relevance,
 * words given, inside the ranked set): the most recent `cap` matches are ranked and the page
 * taken from them; past the ranked set, or sorted by date, matches follow newest first.
 */
export async function searchMessages(db: SearchPools, s: SearchQuery): Promise<SearchResult> {
  try {
    const pool = db.readPool;
    const q = s.q === null ? null : await queryText(pool, s.q);
    const subject = s.subject === null ? null : await queryText(pool, s.subject);
    return await runSearch(db, Object.assign({}, s, { q, subject }), s);
  } catch (err) {
    throw searchRefused(err);
  }
}

/** A search whose texts went through queryText(). */
type Texts = SearchQuery;

/** The pools a search uses: archive reads, and the one whose connections keep generic plans. */
export interface SearchPools {
  readPool: pg.Pool;
  /** connections with plan_cache_mode = force_generic_plan (database.ts); readPool when absent */
  searchPool?: pg.Pool;
}

async function runSearch(db: SearchPools, s: Texts, typed: SearchQuery): Promise<SearchResult> {
  const ranked = s.sort === 'relevance' && (s.q !== null || s.subject !== null) && s.offset < s.cap;
  // Words alone, over every readable list: one of two fixed shapes, planned once. Anything else
  // (a list, an author, dates, a subject, sorting by date) is planned for its values.
  const plain = ranked && s.q !== null && s.subject === null && s.listIds === null && s.from.length === 0 && !s.after && !s.before;
  const mode: Mode = plain ? (s.scan ?? (await chooseScan(db.readPool, typed.q!, s.cap))) : 'planned';
  // An author alone, on the first pages: a few fixed texts (one per page and bound), kept
  // planned on the search pool as the word searches are: planning it cost 0.85 ms of 2.2.
  const authorOnly = !ranked && s.q === null && s.subject === null && s.listIds === null && !s.after && !s.before && s.from.length === 1 && s.offset < s.cap;
  const f = filters(s, mode);
  /** the page's rows carry their list (the index shape found it checking each match) */
  const listCarried = ranked && mode === 'index';
  let page: string;
  /** by date: up to how many matches are counted exactly (fewMatches()) */
  let few = 0;
  /** the recent window the index shape looked in first, if any */
  let window: RecentWindow | null = null;
  /** the index shape's count of the matches; negative: of those in the window, which held enough */
  let count = 'null::bigint';
  if (ranked) {
    // Ranked as they are found, in the scan that finds them, so the rows carried on are narrow (no
    // tsvector through a window or a sort: that cost four times the scan). ts_rank, not
    // ts_rank_cd: over 300 candidates it cost a third as much, and the weights (subject A,
    // name B, body D) are what order them. The `cap + 1`th match only says there are more. The
    // limits are written into the text: a generic plan takes a parameter's limit for a tenth of
    // the rows, and would walk the date index for a rare word.
    //
    // The index shape reads its matches behind `offset 0`, which keeps the date order away from
    // them: a generic plan takes any tsquery for 0.5% of the rows, and on a 524,000-message
    // archive it walked the date index for a word in 186 of them (320 ms) instead of asking GIN.
    //
    // Walking, a match's tsvector has just been read to test it, and it is ranked there. Otherwise
    // only the `cap + 1` most recent matches are ranked, after they are chosen: ranking reads the
    // whole tsvector (out of line, in TOAST, for most messages), and a word in several hundred
    // messages of a million-message archive was read, ranked and sorted in full for the 101 kept.
    const limit = Math.trunc(s.cap) + 1;
    if (mode === 'walk') {
      f.ctes.push(`cand as materialized (
              select m.id, m.date, ts_rank(m.tsv, ${f.tsquery}) as rank from messages m where ${f.where}
               order by date desc limit ${limit})`);
    } else if (mode === 'index') {
      // The index shape reads every match (the GIN index knows no dates), sorts them by date and
      // checks each one's lists: all of them are counted exactly in the same statement (a second
      // statement to count read them again, 25 ms for 314 on a million messages).
      // Each match's list check finds its first readable list, which is carried to the page: the
      // lookup the list shown would otherwise make again for each hit (7 µs a hit with the join).
      const matches = (since: string) => `select y.id, y.date, y.list_id from (select m.id, m.date, ${f.firstList('m')} as list_id from messages m where ${f.whereMessage}${since}
                                           order by m.date desc offset 0) y where y.list_id is not null`;
      f.ctes.push(`matched as materialized (${matches('')})`);
      let chosen = `select * from matched order by date desc limit ${limit}`;
      count = '(select count(*) from matched)';
      // A word that may be in thousands of messages: its most recent matches are looked for in the
      // newest part of the archive first (search-scan.ts, recentWindow), and all of them are read
      // only when that part holds fewer than `limit` (the second branch, and the count of all,
      // run only then). Whatever is older than the window is older than each of the `limit` found
      // in it. The window's matches (a few hundred at most) are all kept: their number, over the
      // window's share of the archive, is the estimate of the whole.
      window = s.window !== undefined ? s.window : await recentWindow(db.readPool, typed.q!, s.cap);
      if (window) {
        f.ctes.push(`recent as materialized (${matches(` and m.date >= ${f.p(window.since)}`)})`);
        chosen = `select * from (select * from recent order by date desc limit ${limit}) r where (select count(*) from recent) >= ${limit}
                  union all
                  select * from (${chosen}) a where (select count(*) from recent) < ${limit}`;
        count = `case when (select count(*) from recent) >= ${limit} then -(select count(*) from recent) else ${count} end`;
      }
      f.ctes.push(`cand as materialized (
              select x.id, x.date, ts_rank(r.tsv, ${f.tsquery}) as rank, x.list_id
                from (${chosen}) x
                join messages r on r.id = x.id)`);
    } else {
      f.ctes.push(`cand as materialized (
              select x.id, x.date, ts_rank(r.tsv, ${f.tsquery}) as rank
                from (select * from (select m.id, m.date from messages m where ${f.where}) z order by date desc limit ${limit}) x
                join messages r on r.id = x.id)`);
    }
    page = `select c.id, c.date, c.rank, ${listCarried ? 'c.list_id' : 'null::bigint as list_id'}, (select count(*) from cand) as candidates, ${count} as matched
              from (select * from cand order by date desc limit ${Math.trunc(s.cap)}) c
             order by c.rank desc, c.date desc limit ${f.p(s.limit + 1)} offset ${f.p(s.offset)}`;
  } else {
    // By date; past the ranked set this goes on from the first match not ranked (the ranked set
    // is the `cap` most recent, so the same offset). Up to fewMatches() matches are first taken in
    // any order, as the planner finds them best (an author's trigrams, a word's postings): when
    // that is all of them, the page is cut from those, sorted. Only when there are more does the
    // statement walk the date index, testing each message until the page is full (the second
    // branch is gated by the count, so it does not start otherwise). Walking for an author with
    // 144 of 10,000 messages tested 1,600 of them (2.3 ms) where the few matches took 0.5 ms.
    // The matches are counted from the same set: exactly, up to `few`.
    //
    // Planned once (an author alone), the limits are in the text: a generic plan takes a
    // parameter's limit for a tenth of the rows, and would sort a frequent author's every message
    // instead of walking.
    const pageOf = authorOnly ? String(Math.trunc(s.limit) + 1) : f.p(s.limit + 1);
    const offset = authorOnly ? String(Math.trunc(s.offset)) : f.p(s.offset);
    few = await fewMatches(db.readPool, s.limit + s.offset);
    f.ctes.push(`few as materialized (select m.id, m.date from messages m where ${f.whereEach} limit ${few + 1})`);
    const walk = (where: string, n: string, from: string | null) => `select m.id, m.date from messages m where (select count(*) from few) > ${few} and ${where}
                      order by m.date desc limit ${n}${from === null ? '' : ` offset ${from}`}`;
    // An address with several spellings (mailboxSpellings) is walked one spelling at a time, each
    // newest first on messages_from_date as an address of one spelling is, and the walks merged:
    // PostgreSQL reads `from_email in (...)` from that index one value after the other, not by
    // date, and the plan walked the date index instead. For an author of 500 messages in 30,000
    // that tested 1,253 messages for the first page and 3,653 for the third; the two walks read
    // 22 and 62. A ranked search keeps `in (...)`: walked apart, a spelling none of whose
    // messages had the words walked the date index to the archive's start.
    let walked = walk(f.where, pageOf, offset);
    if (f.whereSpelled.length > 0) {
      const upTo = authorOnly ? String(Math.trunc(s.limit) + 1 + Math.trunc(s.offset)) : f.p(s.limit + 1 + s.offset);
      walked = `select * from (${f.whereSpelled.map((w) => `(${walk(w, upTo, null)})`).join(' union all ')}) w
                 order by date desc limit ${pageOf} offset ${offset}`;
    }
    page = `select u.id, u.date, 0::real as rank, null::bigint as list_id, (select count(*) from few) as candidates, null::bigint as matched
              from ((select id, date from few where (select count(*) from few) <= ${few} order by date desc limit ${pageOf} offset ${offset})
                    union all
                    (${walked})) u`;
  }
  // The text around the first place where the first typed word (its start, for other forms of
  // it) occurs, for the shown hits only; the words are marked here (markExcerpt), not by
  // ts_headline, whose parsing cost 0.1 ms a hit, more than the rest of a rare word's search.
  // A body of a few KB is sent whole and the place found here (excerptWindow(), the same
  // window): lowering, searching and cutting it in the database cost 8 µs a hit, more than
  // sending it. A longer one is cut there, and so is any body when the word is not ASCII (the
  // database's lower() is then the one that decides).
  const hint = excerptHint(typed);
  const shown = f.tsquery ? f.p(s.limit) : '';
  // A function, so that the hint becomes a parameter only when the statement cuts somewhere.
  const cut = () => `substr(m.body, greatest(1, strpos(${lowered('m.body', hint)}, ${f.p(hint)}) - ${EXCERPT_LEAD}), ${EXCERPT_CHARS})`;
  // A hit may match in a text attachment alone (sql/0070): its excerpt is then cut there, in the
  // database, only for the hits with attachment text (most have none: a null test, no read).
  const attachmentCut = () => `(select substr(m.attachment_text, greatest(1, a.at - ${EXCERPT_LEAD}), ${EXCERPT_CHARS})
                                  from (select strpos(${lowered('m.attachment_text', hint)}, ${f.p(hint)}) as at) a where a.at > 0)`;
  const excerpts = !f.tsquery
    ? 'null::text as body, left(m.body, 300) as excerpt, null::text as attachment_excerpt'
    : `${ASCII.test(hint)
      ? `case when p.n <= ${shown} and octet_length(m.body) <= ${WHOLE_BODY_BYTES} then m.body end as body,
         case when p.n <= ${shown} and octet_length(m.body) > ${WHOLE_BODY_BYTES} then ${cut()} end as excerpt`
      : `null::text as body, case when p.n <= ${shown} then ${cut()} end as excerpt`},
       ${hint === '' ? 'null::text' : `case when p.n <= ${shown} and m.attachment_text is not null then ${attachmentCut()} end`} as attachment_excerpt`;
  const list = listCarried
    ? 'join lists l on l.id = p.list_id'
    : `cross join lateral (select l.* from list_messages lm join lists l on l.id = lm.list_id
                            where ${inReadableList('m')} order by l.id limit 1) l`;
  const sql = `with ${f.ctes.join(',\n')},
     page as (select p0.*, row_number() over (order by p0.rank desc, p0.date desc) as n from (${page}) p0)
     select m.message_id, m.subject, m.from_name, m.from_email, m.date, p.rank, p.candidates, p.matched, ${excerpts},
            l.id as list_id, ${LIST_KEY} as list_key
       from page p join messages m on m.id = p.id
       ${list}
      order by p.n`;
  const { rows } = await run<SearchHit & { candidates: string | null; matched: string | null; body: string | null; attachment_excerpt: string | null }>(db, mode === 'planned' && !authorOnly ? 'planned' : 'fixed', sql, f.params);
  const candidates = Number(rows[0]?.candidates ?? 0);
  // The last ranked page cannot fetch the row after it (the page is cut from the ranked set):
  // when more matched than were ranked, the pages by date follow it.
  const more = rows.length > s.limit || (ranked && candidates > s.cap && s.offset + s.limit >= s.cap);
  const words = f.tsquery ? queryLexemes(`${typed.q ?? ''} ${typed.subject ?? ''}`) : null;
  // Each hit is written out field by field: a copy with fields added (`{ ...row, excerpt }`, or a
  // rest pattern) takes V8's slow path, 3-4 µs a hit here against 0.05.
  const hits = rows.slice(0, s.limit).map((r): SearchHit => {
    let excerpt = r.body !== null ? excerptWindow(r.body, hint) : r.excerpt ?? '';
    // Where the body does not have the first typed word and an attachment does, the attachment's text shows.
    const inAttachment = r.attachment_excerpt !== null && !excerpt.toLowerCase().includes(hint);
    if (inAttachment) excerpt = r.attachment_excerpt!;
    // The body's own \u0001 and \u0002 go: only the marks made here may become <mark>.
    excerpt = withoutMarks(excerpt);
    return {
      message_id: r.message_id, subject: r.subject, from_name: r.from_name, from_email: r.from_email, date: r.date, rank: r.rank,
      excerpt: words ? markExcerpt(excerpt, words) : excerpt, inAttachment, list_id: r.list_id, list_key: r.list_key,
    };
  });
  let total: number | null;
  let capped = false;
  /** what the estimate past the ranked set is at least */
  const floor = s.cap + 1;
  const matched = rows[0]?.matched == null ? null : Number(rows[0].matched);
  if (ranked) {
    capped = candidates > s.cap;
    total = capped ? null : candidates;
    if (matched !== null && matched >= 0) total = matched;
    // The ranked set came from the recent window: the window's matches scaled to the archive
    // (a word in 7,262 of a million messages: 293 in a window of 4%, 7,325).
    else if (matched !== null && window) {
      return { hits, more, total: Math.max(Math.round(-matched / window.share), floor), exact: false, capped, ranked };
    }
  } else if (s.offset === 0 && !more) total = hits.length;
  // A page past the last has no row to carry the count: counted apart.
  else total = rows.length > 0 ? (candidates > few ? null : candidates) : await boundedCount(db, s, s.cap);
  if (total !== null) return { hits, more, total, exact: true, capped, ranked };
  // Plain words: search-scan.ts's reckoning, from the statistics it read at most minutes ago,
  // without asking the database again. The planner's estimate (an EXPLAIN: 0.7 ms of a frequent
  // pair's 5 ms) comes from the same statistics but multiplies the words' shares as if they were
  // independent, which undercounts words of one topic several-fold ("Lena Young": 178 against 779
  // real on the bench corpus): for plain words it was never the larger. Anything else, or before
  // ANALYZE has seen the messages, gets the planner's estimate.
  //
  // Both count the messages of every list, hidden ones too: where the search leaves out a list
  // with messages (one this reader may not read, or not asked for), they would tell how often the
  // words occur where the reader may not look. Then the matches are counted among what is
  // searched, up to a bound. Messages a moderator hid are taken off the estimate, counted exactly
  // (a site has few; where it has more hidden copies than the bound, the matches are counted).
  const hidden = await hiddenMatches(db, s);
  if (hidden === null) {
    const counted = await boundedCount(db, s, COUNT_BOUND);
    return counted === null
      ? { hits, more, total: COUNT_BOUND + 1, exact: false, capped, ranked, atLeast: true }
      : { hits, more, total: counted, exact: true, capped, ranked };
  }
  const reckoned = mode !== 'planned' ? await estimateMatches(db.readPool, typed.q!) : null;
  const guess = reckoned ?? (await estimate(db, s));
  return { hits, more, total: Math.max(guess - hidden, floor), exact: false, capped, ranked };
}

/**
 * Up to how many matches a search that leaves lists out counts, rather than estimating (1,000
 * matches: a few ms); and up to how many hidden copies an estimate takes the hidden matches off.
 */
const COUNT_BOUND = 1000;

/**
 * How many of the messages the estimates count match and are not the reader's to see: the
 * hidden ones (hidden in every list that has them), counted among at most COUNT_BOUND hidden
 * copies. Null where the estimates may not be used at all: a list with messages is outside this
 * search (not asked for, or not readable by its reader), or more copies are hidden than that.
 * One statement: the hidden copies come from their partial index (list_messages_hidden), and
 * where there are none it costs a probe of an empty index.
 */
async function hiddenMatches(db: SearchPools, s: Texts): Promise<number | null> {
  // The same conditions as the estimate's (without the check of names and local parts only).
  const f = filters(s.domainsHidden ? { ...s, domainsHidden: false } : s, 'planned');
  const { rows } = await db.readPool.query<{ every: boolean; copies: number; matched: number }>(
    `with ${f.ctes.join(',\n')},
          hidden as materialized (select lm.message_id from list_messages lm where lm.hidden_at is not null limit ${COUNT_BOUND + 1})
     select not exists (select 1 from lists l
                         where not (($1::bigint[] is null or l.id = any($1::bigint[])) and can_read_archive(l.id, l.archive, $2::text[], $3::boolean))
                           and exists (select 1 from list_messages lm where lm.list_id = l.id)) as every,
            (select count(*) from hidden)::int as copies,
            (select count(*) from messages m where m.id in (select message_id from hidden) and ${f.firstList('m')} is null
                and ${f.whereMessage || 'true'})::int as matched`,
    f.params,
  );
  const r = rows[0];
  return r.every && r.copies <= COUNT_BOUND ? r.matched : null;
}

const MARKS = /[\u0001\u0002]/g;

function withoutMarks(text: string): string {
  return text.includes('\u0001') || text.includes('\u0002') ? text.replace(MARKS, '') : text;
}

/**
 * Runs a search statement. The fixed shapes are named after their text and run on connections
 * that keep generic plans: planned once per connection, since planning the search for its values
 * cost more than running it. The rest run unnamed, so planned for their values each time: the
 * best plan for an author, a list or a date range depends on them.
 */
async function run<R extends pg.QueryResultRow>(db: SearchPools, plan: 'planned' | 'fixed', text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  if (plan === 'planned') return db.readPool.query<R>(text, values);
  return (db.searchPool ?? db.readPool).query<R>({ name: statementName(text), text, values });
}

/** The fixed shapes are a handful of texts: each is hashed once, not at every search. */
const names = new Map<string, string>();

function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `search-${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    if (names.size < 64) names.set(text, name);
  }
  return name;
}

/**
 * Where a body's excerpt starts: near the first typed word, found by its start (so that "indexes"
 * finds "index"); an empty string when there is no word, and strpos() then gives the beginning.
 */
function excerptHint(s: SearchQuery): string {
  const word = `${s.q ?? ''} ${s.subject ?? ''}`.toLowerCase().match(/[\p{L}\p{N}]{2,}/gu)?.find((w) => w !== 'or') ?? '';
  return word.length > 4 ? word.slice(0, Math.max(4, word.length - 3)) : word;
}

/**
 * A text column (the body; an attachment's text), its first 20,000 characters, in lower case, where
 * the excerpt's hint is looked for. lower() with the database's collation maps every character
 * through the C library, and left() counts characters to copy them: together 15 µs a hit on 1 KB
 * bodies, most of the excerpt's cost. A text within 20,000 bytes is within 20,000 characters and
 * is taken whole; and a hint of ASCII alone is found as well where only ASCII letters are lowered,
 * which the "C" collation does byte by byte, without changing where anything stands (8.6 µs a hit
 * for both).
 */
function lowered(column: string, hint: string): string {
  const text = `case when octet_length(${column}) > 20000 then left(${column}, 20000) else ${column} end`;
  return ASCII.test(hint) ? `lower((${text}) collate "C")` : `lower(${text})`;
}

const ASCII = /^[\x00-\x7f]*$/;

/**
 * Bodies up to this size are sent whole for their excerpt to be cut in node (excerptWindow()).
 * Cutting in the database cost 12 µs a row more than sending the body at 2 and at 4 KB, and
 * 4.5 µs more at 8.5 KB, about what node then spends reading that much (pgbench, 20 rows).
 */
const WHOLE_BODY_BYTES = 8192;

/**
 * Up to how many matches a listing by date sorts rather than walking the date index for. Walking
 * tests about rows × wanted / matches messages, sorting fetches every match first, and the
 * frequent case pays for that first step too before it walks. On 10,000 messages a walked row
 * cost ~1.4 µs and a fetched match ~2.4 µs (the square root of rows × wanted × 0.6: 350); on a
 * million, a fetched match cost 20–30 µs (scattered over a 3.8 GB heap, each checked against its
 * lists) while the walk reads the heap in date order, and a bound of 4,096 cost the most frequent
 * authors 66–106 ms before their walk began. So the bound stays small, 128 or 256: a rare author
 * is sorted, a frequent one pays at most a few milliseconds more than walking alone.
 */
async function fewMatches(db: Queryable, wanted: number): Promise<number> {
  const rows = await archiveRows(db);
  return Math.sqrt(rows * (wanted + 1) * 0.6) > 128 ? 256 : 128;
}

/** How many match, counted up to `bound`; null past it. */
async function boundedCount(db: SearchPools, s: Texts, bound: number): Promise<number | null> {
  const f = filters(s, 'planned');
  const { rows } = await run<{ n: number }>(db, 'planned', `with ${f.ctes.join(',\n')} select count(*)::int as n from (select 1 from messages m where ${f.where} limit ${f.p(bound + 1)}) x`, f.params);
  return rows[0].n > bound ? null : rows[0].n;
}

/**
 * The planner's estimate of how many match: from the statistics ANALYZE keeps of the lexemes
 * (exact for a single word it has seen often), without reading a row. Counting a common word's
 * matches exactly reads every one of them, which is what the ranked set avoids.
 */
async function estimate(db: SearchPools, s: Texts): Promise<number> {
  // Without the check of an author part against names and local parts only (domainsHidden): the
  // planner has no statistics for it, and its default share made "from=Lena Young" (500 matches)
  // read as 100. The estimate is shown only past the ranked set's matches, found with the check.
  const f = filters(s.domainsHidden ? { ...s, domainsHidden: false } : s, 'planned');
  const { rows } = await db.readPool.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(`explain (format json) with ${f.ctes.join(',\n')} select 1 from messages m where ${f.where}`, f.params);
  return Math.round(rows[0]['QUERY PLAN'][0].Plan['Plan Rows']);
}
