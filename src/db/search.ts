/*
 * Full-text search as pgarchives does it: the `listkeeper` text-search configuration (no e-mail
 * addresses, URLs or host names as words), subject weighted A above body D, websearch syntax
 * ("a phrase", or, -word), ranked, with ts_headline excerpts.
 *
 * Ranking every match of a common word is what makes searches slow (it reads every matching
 * tsvector), so only the most recent `cap` matches are ranked: the date index finds them quickly
 * whatever the word. When there were more, the result says so (`capped`), and the pages after
 * the ranked set list the older matches by date.
 */

import { InvalidInput } from '../errors.ts';
import { LIST_KEY } from './list-key.ts';
import type { Queryable } from './pool.ts';

export interface SearchQuery {
  /** websearch syntax; null to list by the filters alone, newest first */
  q: string | null;
  /** lists to search: those the reader may read, narrowed by the list filter */
  listIds: number[];
  /** an address (exact) or part of a name */
  from: string | null;
  /** inclusive */
  after: Date | null;
  /** exclusive */
  before: Date | null;
  limit: number;
  offset: number;
  cap: number;
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
  /** the first of the searched lists the message is in, and its URL key */
  list_id: number;
  list_key: string;
}

export interface SearchResult {
  hits: SearchHit[];
  /** matches considered (at most cap + 1) */
  candidates: number;
  /** more matches than the cap: only the most recent were ranked */
  capped: boolean;
  /** this page comes from the ranked set (else: older matches by date) */
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

/** Whether a websearch query has any word left once stop words are dropped. */
export async function hasSearchTerms(db: Queryable, q: string): Promise<boolean> {
  try {
    const { rows } = await db.query<{ n: number }>(`select numnode(websearch_to_tsquery('listkeeper', $1)) as n`, [websearchText(q)]);
    return rows[0].n > 0;
  } catch (err) {
    throw searchRefused(err);
  }
}

/**
 * One page of results. Offsets inside the ranked set (the most recent `cap` matches) are ranked;
 * beyond it, older matches follow by date. The tsquery is written inline (not in a CTE) so the
 * planner sees it: for a common word it walks the date index, for a rare one it uses GIN.
 */
export async function searchMessages(db: Queryable, s: SearchQuery): Promise<SearchResult> {
  try {
    return await runSearch(db, { ...s, q: s.q === null ? null : websearchText(s.q) });
  } catch (err) {
    throw searchRefused(err);
  }
}

async function runSearch(db: Queryable, s: SearchQuery): Promise<SearchResult> {
  const byAddress = s.from && s.from.includes('@') ? s.from.trim().toLowerCase() : null;
  const byName = s.from && !byAddress ? `%${s.from.trim().replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
  const ranked = s.offset < s.cap;
  const { rows } = await db.query<SearchHit & { candidates: number }>(
    `with cand as (
       select m.id, m.date, m.tsv
         from messages m
        where ($1::text is null or m.tsv @@ websearch_to_tsquery('listkeeper', $1))
          and exists (select 1 from list_messages lm where lm.message_id = m.id and lm.list_id = any($2::bigint[]) and lm.hidden_at is null)
          and ($3::text is null or m.from_email = $3)
          and ($4::text is null or m.from_name ilike $4 or m.from_email ilike $4)
          and ($5::timestamptz is null or m.date >= $5)
          and ($6::timestamptz is null or m.date < $6)
        order by m.date desc
        limit case when $10 then $7 + 1 else $8 end
        offset case when $10 then 0 else $9 end
     ),
     numbered as (select c.*, row_number() over (order by c.date desc) as n from cand c),
     page as (
       select c.id, c.date,
              case when $1::text is null or not $10 then 0 else ts_rank_cd(c.tsv, websearch_to_tsquery('listkeeper', $1)) end as rank,
              (select count(*) from cand)::int as candidates
         from numbered c
        where not $10 or c.n <= $7
        order by rank desc, c.date desc
        limit $8 offset case when $10 then $9 else 0 end
     )
     select m.message_id, m.subject, m.from_name, m.from_email, m.date, p.rank, p.candidates,
            case when $1::text is null then left(m.body, 300)
                 else ts_headline('listkeeper', left(m.body, 4000), websearch_to_tsquery('listkeeper', $1),
                        'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "')
            end as excerpt,
            l.id as list_id,
            ${LIST_KEY} as list_key
       from page p join messages m on m.id = p.id
       cross join lateral (select l.* from list_messages lm join lists l on l.id = lm.list_id
                            where lm.message_id = m.id and lm.list_id = any($2::bigint[]) and lm.hidden_at is null order by l.id limit 1) l
      order by p.rank desc, p.date desc`,
    [s.q, s.listIds, byAddress, byName, s.after, s.before, s.cap, s.limit, s.offset, ranked],
  );
  const candidates = ranked ? (rows[0]?.candidates ?? 0) : s.cap + 1;
  return { hits: rows, candidates, capped: candidates > s.cap, ranked };
}
