-- Search the way people type it (issue 13): the author's display name becomes searchable (weight
-- B, between subject A and body D), and text in scripts written without spaces (Chinese,
-- Japanese, Korean, Thai, Lao, Khmer, Myanmar) is indexed as overlapping two-character words, so
-- that 日本語 is found inside 日本語のテキスト (the parser sees a whole run as one word). Addresses
-- stay out of the words: `from:` searches them by column.
--
-- search_text() is the one place that turns text into what the parser is given; src/db/search.ts
-- sends the query through it too, so a query's bigrams line up with the document's. pg_trgm was
-- not used: its trigrams skip non-ASCII letters under the C locale the embedded server runs with,
-- and it would add a second large index.
--
-- COST: a generated STORED column cannot change its expression in place before PostgreSQL 17, so
-- the new column is added (one rewrite of the messages table, computing every tsvector again),
-- indexed, and only then is the old column dropped. On the 10,000-message bench corpus this took
-- about 5 s; it holds an exclusive lock on messages meanwhile (archiving waits; reading waits).
-- The bigrams of each run of such characters, space-separated (a lone character stays as it is).
create function search_bigrams(t text) returns text language sql immutable strict parallel safe as $$
  select string_agg(
           case when length(r.m[1]) > 1 and r.m[1] ~ '^[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]'
                then ' ' || (select string_agg(substr(r.m[1], i, 2), ' ' order by i) from generate_series(1, length(r.m[1]) - 1) i) || ' '
                else r.m[1] end, '' order by r.n)
    from regexp_matches(t, '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+|[^\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+', 'g') with ordinality as r(m, n)
$$;

-- Text as the parser is to see it. A single expression so that PostgreSQL inlines it: most text
-- has none of these scripts and then costs one regular-expression test.
create function search_text(t text) returns text language sql immutable parallel safe as $$
  select case when t ~ '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]' then search_bigrams(t) else t end
$$;

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
