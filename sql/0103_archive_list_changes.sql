-- Last-Modified of a list's archive pages moves forwards for changes that are not an arrival, a
-- hiding or a showing again. It was the newest message's arrival or the latest hiding/showing
-- (src/db/archive.ts listLastModified), so a message deleted with SQL (an operator removing it for
-- good, docs/operations.md) left it where it was, or moved it backwards when the newest message
-- went; a renamed list too. The ETag changed, but a client that sends only If-Modified-Since was
-- answered 304 and kept the page with the message (or the old name) on it.
--
-- archive_list_changes holds, per list, the time of the latest such change, written by triggers
-- whatever makes the change; the pages' Last-Modified takes the latest of the three. Row 0 is `/`
-- as anonymous readers see it: a public list deleted, or one made public or no longer public.
-- clock_timestamp(), not now(): a change in a transaction that began before a message arrived
-- still moves past that arrival.
create table archive_list_changes (
  list_id bigint primary key,
  changed_at timestamptz not null
);

create function archive_list_changed(p_lists bigint[]) returns void
language sql as $$
  insert into archive_list_changes (list_id, changed_at)
  select u.list_id, clock_timestamp() from unnest(p_lists) as u(list_id)
   where u.list_id = 0 or exists (select 1 from lists l where l.id = u.list_id)
  on conflict (list_id) do update set changed_at = greatest(archive_list_changes.changed_at, excluded.changed_at)
$$;

-- Messages leaving a list: deleted from it, or deleted altogether (the foreign key's cascade). A
-- list being deleted is gone by then: it gets no row.
create function archive_list_messages_deleted() returns trigger
language plpgsql as $$
begin
  perform archive_list_changed(array_agg(distinct list_id)) from old_rows having count(*) > 0;
  return null;
end $$;

create function archive_list_messages_truncated() returns trigger
language plpgsql as $$
begin
  perform archive_list_changed(array_agg(id)) from lists having count(*) > 0;
  return null;
end $$;

create trigger list_messages_archive_deleted after delete on list_messages
  referencing old table as old_rows
  for each statement execute function archive_list_messages_deleted();
create trigger list_messages_archive_truncated after truncate on list_messages
  for each statement execute function archive_list_messages_truncated();

-- A list: created (it appears on `/`), what its pages show of it changed (the columns of sql/0102
-- that pages show), or deleted. On insert OLD is null: 'public' in (null, …) is true or null.
create function archive_list_updated() returns trigger
language plpgsql as $$
begin
  if tg_op = 'DELETE' then
    delete from archive_list_changes where list_id = old.id;
    if old.archive = 'public' then perform archive_list_changed(array[0::bigint]); end if;
    return null;
  end if;
  perform archive_list_changed(case when 'public' in (old.archive, new.archive) then array[new.id, 0] else array[new.id] end);
  return null;
end $$;

create trigger lists_archive_updated after update on lists
  for each row
  when (old.address is distinct from new.address
     or old.local_part is distinct from new.local_part
     or old.domain is distinct from new.domain
     or old.name is distinct from new.name
     or old.description is distinct from new.description
     or old.archive is distinct from new.archive)
  execute function archive_list_updated();
create trigger lists_archive_inserted after insert on lists
  for each row execute function archive_list_updated();
create trigger lists_archive_deleted after delete on lists
  for each row execute function archive_list_updated();

-- As every function a trigger runs (sql/0071): the tables are found whatever the writer's search_path.
do $$
declare
  v_schema text := current_schema();
  f regprocedure;
begin
  foreach f in array array[
    'archive_list_changed(bigint[])', 'archive_list_messages_deleted()', 'archive_list_messages_truncated()', 'archive_list_updated()'
  ]::regprocedure[] loop
    execute format('alter function %s set search_path = %I', f, v_schema);
  end loop;
end $$;
