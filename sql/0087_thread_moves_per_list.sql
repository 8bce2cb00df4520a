-- A thread's old address redirects only in a list it was shown in. A thread that merged into
-- another (a missing parent arrived) kept answering at /lists/ANY/thread/OLD with a 301 to the new
-- one, whatever list the URL named: a private list's reply that a public message adopted (allowed
-- by sql/0086, the public list being the adopter) gave its private thread number a redirect in
-- the public list, telling its readers that a private list had replied in that thread.
--
-- thread_moves now records the lists whose messages moved (`lists`), and the web redirects only
-- for one of them (src/db/archive.ts movedThread, which also asks that the list shows a message of
-- the thread it redirects to). Moves recorded before this have no lists (null): for them only
-- that last test holds.

alter table thread_moves add column lists bigint[];

create or replace function record_thread_moves() returns trigger language plpgsql as $$
begin
  insert into thread_moves (old_thread, new_thread, lists)
    select o.thread_id, n.thread_id, coalesce(array_agg(distinct lm.list_id) filter (where lm.list_id is not null), '{}')
      from old_rows o join new_rows n on n.id = o.id
      left join list_messages lm on lm.message_id = o.id
     where o.thread_id <> n.thread_id
       -- a thread that still has messages was split, not moved
       and not exists (select 1 from messages m where m.thread_id = o.thread_id)
     group by o.thread_id, n.thread_id
  on conflict (old_thread) do update
    set new_thread = excluded.new_thread, moved_at = now(),
        lists = array(select distinct x from unnest(coalesce(thread_moves.lists, '{}') || excluded.lists) x order by x);
  return null;
end $$;

-- create or replace drops the search_path sql/0071 gave it: given again, by name.
do $$
begin
  execute format('alter function record_thread_moves() set search_path = %I', current_schema());
end $$;
