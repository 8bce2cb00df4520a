-- Search finds a word however it is punctuated, whatever the database's locale. PostgreSQL's
-- text-search parser takes every character beyond ASCII for a letter when the database's
-- LC_CTYPE is C or POSIX, as the embedded server's is: a word in typographic quotes, before a
-- dash or an ellipsis ("“vacuum”", "x–y", "really…", "«bien»") was indexed with them as one
-- word, and a search for vacuum did not find it. Under a UTF-8 locale the parser knows them for
-- punctuation. search_text(), which every search vector and query goes through, now writes them
-- as spaces first, so both kinds of database index the same words: C1 controls, Latin-1's
-- punctuation and symbols (U+0080-U+00BF, ×, ÷; the soft hyphen, which sits inside words, is
-- dropped), general punctuation (U+2000-U+206F, but the zero-width non-joiner and joiner, which
-- are parts of words in Persian and Indic scripts and of emoji), currency and letter-like
-- symbols, arrows, mathematical operators, box drawing, shapes and dingbats (U+2190-U+2BFF), CJK
-- and full-width punctuation, and emoji. src/db/search-words.ts has the same ranges for queries.
--
-- Messages indexed before on a C or POSIX database get their vectors again from the
-- search-vectors conversion job (src/core/conversions/search-vectors.ts); elsewhere it has
-- nothing to do.

create or replace function search_text(t text) returns text language plpgsql immutable strict parallel safe as $$
declare
  v text := t;
begin
  if v ~ '[\u00ad]' then
    v := replace(v, E'\u00ad', '');
  end if;
  if v ~ '[\u0080-\u00ac\u00ae-\u00bf\u00d7\u00f7\u2000-\u200b\u200e-\u206f\u20a0-\u20cf\u2100-\u214f\u2190-\u2bff\u3000-\u303f\ufe30-\ufe6f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\U0001f000-\U0001faff]' then
    v := regexp_replace(v, '[\u0080-\u00ac\u00ae-\u00bf\u00d7\u00f7\u2000-\u200b\u200e-\u206f\u20a0-\u20cf\u2100-\u214f\u2190-\u2bff\u3000-\u303f\ufe30-\ufe6f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\U0001f000-\U0001faff]', ' ', 'g');
  end if;
  if v !~ '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]' then
    return v;
  end if;
  return (select string_agg(
                   case when length(r.m[1]) > 1 and r.m[1] ~ '^[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]'
                        then ' ' || case when length(r.m[1]) <= 64
                                         then (select string_agg(substr(r.m[1], i, 2), ' ' order by i) from generate_series(1, length(r.m[1]) - 1) i)
                                         else (select string_agg(p.c || p.next, ' ' order by p.o)
                                                 from (select s.c, lead(s.c) over (order by s.o) as next, s.o
                                                         from regexp_split_to_table(r.m[1], '') with ordinality s(c, o)) p
                                                where p.next is not null) end || ' '
                        else r.m[1] end, '' order by r.n)
            from regexp_matches(v, '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+|[^\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+', 'g') with ordinality as r(m, n));
end $$;

insert into conversions (name) values ('search-vectors');
