import type { Queryable } from './pool.ts';

/**
 * Full-text search as pgarchives does it: the `listkeeper` text-search configuration (no e-mail
 * addresses, URLs or host names as words), subject weighted A above body D, websearch syntax
 * ("a phrase", or, -word), ranked, with ts_headline excerpts.
 *
 * Ranking every match of a common word is what makes searches slow (it reads every matching
 * tsvector), so only the most recent `cap` matches are ranked: the date index finds them quickly
 * whatever the word. When there were more, the result says so (`capped`).
 */
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
  list_id: number;
}

export interface SearchResult {
  hits: SearchHit[];
  /** matches considered (at most cap + 1) */
  candidates: number;
  /** more matches than the cap: only the most recent were ranked */
  capped: boolean;
}

/** Whether a websearch query has any word left once stop words are dropped. */
export async function hasSearchTerms(db: Queryable, q: string): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(`select numnode(websearch_to_tsquery('listkeeper', $1)) as n`, [q]);
  return rows[0].n > 0;
}

export async function searchMessages(db: Queryable, s: SearchQuery): Promise<SearchResult> {
  const byAddress = s.from && s.from.includes('@') ? s.from.trim().toLowerCase() : null;
  const byName = s.from && !byAddress ? `%${s.from.trim().replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
  const { rows } = await db.query<SearchHit & { candidates: number }>(
    `with q as (select case when $1::text is null then null else websearch_to_tsquery('listkeeper', $1) end as query),
     cand as (
       select m.id, m.date, m.tsv
         from messages m, q
        where ($1::text is null or m.tsv @@ q.query)
          and m.hidden_at is null
          and exists (select 1 from list_messages lm where lm.message_id = m.id and lm.list_id = any($2::bigint[]))
          and ($3::text is null or m.from_email = $3)
          and ($4::text is null or m.from_name ilike $4 or m.from_email ilike $4)
          and ($5::timestamptz is null or m.date >= $5)
          and ($6::timestamptz is null or m.date < $6)
        order by m.date desc
        limit $7 + 1
     ),
     ranked as (
       select c.id, c.date, case when $1::text is null then 0 else ts_rank_cd(c.tsv, q.query) end as rank,
              count(*) over ()::int as candidates
         from cand c, q
        order by rank desc, c.date desc
        limit $8 offset $9
     )
     select m.message_id, m.subject, m.from_name, m.from_email, m.date, r.rank, r.candidates,
            case when $1::text is null then left(m.body, 300)
                 else ts_headline('listkeeper', left(m.body, 8000), q.query,
                        'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "')
            end as excerpt,
            (select min(lm.list_id) from list_messages lm where lm.message_id = m.id and lm.list_id = any($2::bigint[])) as list_id
       from ranked r join messages m on m.id = r.id, q
      order by r.rank desc, r.date desc`,
    [s.q, s.listIds, byAddress, byName, s.after, s.before, s.cap, s.limit, s.offset],
  );
  const candidates = rows[0]?.candidates ?? 0;
  return { hits: rows, candidates, capped: candidates > s.cap };
}
