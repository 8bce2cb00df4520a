-- Purges for a cache in front of the archive (PURGE_URL, src/cache/purger.ts). Archive pages name
-- what they show in their Surrogate-Key and xkey headers (src/web/archive/cache-keys.ts); every
-- change to what they show queues the keys of exactly the pages it changes, here, from triggers on
-- the same tables whose changes the page cache counts (sql/0011): so whatever writes (posting,
-- import, hide, retention, list settings, list delete, any process or psql) queues its purges in its
-- own transaction, and a purge is never lost between a commit and a crash.
--
-- Keys (the same names as cache-keys.ts builds):
--   site                 /  and /search
--   list-L               every page of list L, and message pages shown through it
--   latest-L             the list page and its feed
--   month-L-YYYY-MM      a month page and its mbox (months in UTC, as mail/months.ts)
--   thread-T             a thread's pages and mbox, and the pages of the messages in it
--   message-M            a message's page, raw bytes and attachments (M: messages.id)
--
-- Rows are only ever inserted by writers (no conflicts, so concurrent posts never wait on each
-- other's purge rows); the purger coalesces rows with the same key when it claims them.
create table purges (
  id          bigserial primary key,
  key         text not null,
  queued_at   timestamptz not null default now(),
  run_at      timestamptz not null default now(),
  attempts    integer not null default 0,
  locked_by   text,
  locked_at   timestamptz,
  last_error  text
);
create index purges_key on purges (key);
create index purges_due on purges (run_at);

-- Whether anything is in front to purge: the worker's purger turns it on when PURGE_URL is set and
-- off when it is not (src/cache/purger.ts). Off, the triggers below do not fire at all, so a site
-- without a cache pays nothing for them (they tripled an mbox import's time).
create table purge_switch (
  only_row   boolean primary key default true check (only_row),
  enabled    boolean not null default false,
  changed_at timestamptz not null default now()
);
insert into purge_switch default values;

create function purging() returns boolean language sql stable as $$
  select coalesce((select enabled from purge_switch), false)
$$;

-- Messages reaching, leaving, hidden in or shown again in lists (rows of list_messages). Only
-- public archives are shared by a cache; a list whose archive stops being public is purged whole
-- by the lists trigger. Neighbours by date: their pages link to the message ("next by date").
-- Each neighbour is found by date through the (list_id, date) index, then by row id among the
-- few messages of that very date (ordering by (date, message_id) sorted every earlier message of
-- the list; `offset 0` keeps max() from walking the message_id index instead). A thread's other
-- months: their month pages count the thread's messages. plpgsql, not sql: its plans are kept
-- per session, where an SQL function's statement is planned again at every call (sql/0010).
create function queue_archive_purges(p_lists bigint[], p_messages bigint[], p_dates timestamptz[]) returns void
language plpgsql as $$
begin
  -- Many messages at once (an import, a list's archive hidden or deleted): the list's pages
  -- whole, rather than each message's neighbours and months, which cost more than the import.
  if cardinality(p_messages) > 50 then
    insert into purges (key)
    select 'site' union select 'list-' || l.id from lists l where l.id = any(p_lists) and l.archive = 'public';
    return;
  end if;
  insert into purges (key)
  with r as (
    select distinct r.list_id, r.message_id, r.date, m.thread_id
      from unnest(p_lists, p_messages, p_dates) as r(list_id, message_id, date)
      join lists l on l.id = r.list_id and l.archive = 'public'
      left join messages m on m.id = r.message_id
  ), threads as (
    select distinct list_id, thread_id from r where thread_id is not null
  )
  select 'site' from r
  union select 'latest-' || list_id from r
  union select 'month-' || list_id || '-' || to_char(date at time zone 'UTC', 'YYYY-MM') from r
  union select 'message-' || message_id from r
  union select 'thread-' || thread_id from threads
  union select 'month-' || t.list_id || '-' || d.month from threads t cross join lateral (
          -- by the thread's index, then each message's row in the list (`offset 0` keeps the planner
          -- from joining the other way round: a scan of the whole list per post)
          select distinct to_char(lm.date at time zone 'UTC', 'YYYY-MM') as month
            from messages x cross join lateral (
                   select y.date from list_messages y where y.list_id = t.list_id and y.message_id = x.id offset 0) lm
           where x.thread_id = t.thread_id) d
  union select 'message-' || n.id from r cross join lateral (
          select coalesce(
            (select max(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and date = r.date and message_id < r.message_id and hidden_at is null offset 0) y),
            (select max(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and hidden_at is null and date = (
                select max(z.date) from list_messages z where z.list_id = r.list_id and z.date < r.date and z.hidden_at is null) offset 0) y)) as id) n
         where n.id is not null
  union select 'message-' || n.id from r cross join lateral (
          select coalesce(
            (select min(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and date = r.date and message_id > r.message_id and hidden_at is null offset 0) y),
            (select min(y.message_id) from (select message_id from list_messages
              where list_id = r.list_id and hidden_at is null and date = (
                select min(z.date) from list_messages z where z.list_id = r.list_id and z.date > r.date and z.hidden_at is null) offset 0) y)) as id) n
         where n.id is not null;
end $$;

-- Threads whose messages changed (deleted, re-threaded, re-parented): the thread's pages in every
-- public list that shows it, and those lists' months of it.
create function queue_thread_purges(p_threads bigint[]) returns void
language plpgsql as $$
begin
  -- Many threads at once (an import joining threads as their parents arrive): every public list.
  if cardinality(p_threads) > 50 then
    insert into purges (key) select 'site' union select 'list-' || l.id from lists l where l.archive = 'public';
    return;
  end if;
  insert into purges (key)
  with t as (select distinct unnest(p_threads) as thread_id)
  select 'thread-' || thread_id from t
  union select 'month-' || d.list_id || '-' || d.month from t cross join lateral (
          select distinct lm.list_id, to_char(lm.date at time zone 'UTC', 'YYYY-MM') as month
            from messages x cross join lateral (
                   select y.list_id, y.date from list_messages y
                     join lists l on l.id = y.list_id and l.archive = 'public'
                    where y.message_id = x.id offset 0) lm
           where x.thread_id = t.thread_id) d;
end $$;

-- Each trigger wakes the purger (NOTIFY is a hint; it polls too) when it queued something.
create function purge_list_messages_inserted() returns trigger language plpgsql as $$
begin
  perform queue_archive_purges(array_agg(list_id), array_agg(message_id), array_agg(date)) from new_rows having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

create function purge_list_messages_deleted() returns trigger language plpgsql as $$
begin
  perform queue_archive_purges(array_agg(list_id), array_agg(message_id), array_agg(date)) from old_rows having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

-- Hidden or shown again, or moved in time: the pages at the old date and at the new one.
create function purge_list_messages_updated() returns trigger language plpgsql as $$
begin
  perform queue_archive_purges(array_agg(x.list_id), array_agg(x.message_id), array_agg(x.date))
     from (select o.list_id, o.message_id, o.date from old_rows o join new_rows n using (list_id, message_id)
            where o.hidden_at is distinct from n.hidden_at or o.date <> n.date
           union
           select n.list_id, n.message_id, n.date from old_rows o join new_rows n using (list_id, message_id)
            where o.hidden_at is distinct from n.hidden_at or o.date <> n.date) x
   having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

create trigger list_messages_purge_insert after insert on list_messages
  referencing new table as new_rows for each statement when (purging()) execute function purge_list_messages_inserted();
create trigger list_messages_purge_delete after delete on list_messages
  referencing old table as old_rows for each statement when (purging()) execute function purge_list_messages_deleted();
create trigger list_messages_purge_update after update on list_messages
  referencing old table as old_rows new table as new_rows for each statement when (purging()) execute function purge_list_messages_updated();

-- A message deleted (its list_messages rows go with it, and their trigger no longer finds its
-- thread), or joined to another thread or parent when a missing parent arrives.
create function purge_messages_deleted() returns trigger language plpgsql as $$
begin
  perform queue_thread_purges(array_agg(thread_id)) from old_rows having count(*) > 0;
  if found then
    insert into purges (key) select distinct 'message-' || id from old_rows;
    perform pg_notify('listkeeper_purges', '');
  end if;
  return null;
end $$;

create function purge_messages_updated() returns trigger language plpgsql as $$
begin
  perform queue_thread_purges(array_agg(t)) from (
    select o.thread_id from old_rows o join new_rows n using (id)
     where o.thread_id <> n.thread_id or o.parent_id is distinct from n.parent_id
    union
    select n.thread_id from old_rows o join new_rows n using (id)
     where o.thread_id <> n.thread_id or o.parent_id is distinct from n.parent_id) x(t)
   having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

create trigger messages_purge_delete after delete on messages
  referencing old table as old_rows for each statement when (purging()) execute function purge_messages_deleted();
create trigger messages_purge_update after update on messages
  referencing old table as old_rows new table as new_rows for each statement when (purging()) execute function purge_messages_updated();

-- Lists: what archive pages show of a list (name, description, address, whether its archive is
-- public) changed, or the list came or went. A list's URL key is its local part unless another
-- list shares it (mail/urls.ts, db/list-key.ts): lists sharing an old or new local part may have
-- changed key, and with it every link on their pages.
create function queue_list_purges(p_lists bigint[], p_local_parts text[]) returns void
language plpgsql as $$
begin
  insert into purges (key)
  select 'site'
  union select 'list-' || unnest(p_lists)
  union select 'list-' || l.id from lists l where l.local_part = any(p_local_parts);
end $$;

create function purge_lists_inserted() returns trigger language plpgsql as $$
begin
  perform queue_list_purges(array_agg(id), array_agg(local_part)) from new_rows having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

create function purge_lists_deleted() returns trigger language plpgsql as $$
begin
  perform queue_list_purges(array_agg(id), array_agg(local_part)) from old_rows having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

create function purge_lists_updated() returns trigger language plpgsql as $$
begin
  perform queue_list_purges(array_agg(x.id), array_agg(x.local_part)) from (
    select o.id, o.local_part from old_rows o join new_rows n using (id)
     where (o.name, o.description, o.archive, o.address, o.local_part, o.domain)
           is distinct from (n.name, n.description, n.archive, n.address, n.local_part, n.domain)
    union
    select n.id, n.local_part from old_rows o join new_rows n using (id)
     where o.local_part <> n.local_part) x
  having count(*) > 0;
  if found then perform pg_notify('listkeeper_purges', ''); end if;
  return null;
end $$;

create trigger lists_purge_insert after insert on lists
  referencing new table as new_rows for each statement when (purging()) execute function purge_lists_inserted();
create trigger lists_purge_delete after delete on lists
  referencing old table as old_rows for each statement when (purging()) execute function purge_lists_deleted();
create trigger lists_purge_update after update on lists
  referencing old table as old_rows new table as new_rows for each statement when (purging()) execute function purge_lists_updated();
