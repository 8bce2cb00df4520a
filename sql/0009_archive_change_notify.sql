-- Any change to what archive pages show wakes the web servers' page caches
-- (src/web/archive/page-cache.ts): messages reaching or leaving a list, hidden or unhidden,
-- re-threaded. Notifications are per statement, and PostgreSQL folds identical ones in a
-- transaction into one.
--
-- One trigger function for every such channel, named by the trigger's argument; the lists trigger
-- of sql/0006 moves onto it.
create function notify_change() returns trigger language plpgsql as $$
begin
  perform pg_notify(tg_argv[0], '');
  return null;
end $$;

drop trigger lists_changed on lists;
drop function notify_lists_changed();
create trigger lists_changed after insert or update or delete or truncate on lists
  for each statement execute function notify_change('listkeeper_lists');

create trigger list_messages_changed after insert or update or delete or truncate on list_messages
  for each statement execute function notify_change('listkeeper_archive');

create trigger messages_changed after update or delete or truncate on messages
  for each statement execute function notify_change('listkeeper_archive');
