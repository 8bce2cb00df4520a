-- Any change to what archive pages show wakes the web servers' page caches
-- (src/web/archive/page-cache.ts): messages reaching or leaving a list, hidden or unhidden,
-- re-threaded. Changes to lists already notify 'listkeeper_lists' (sql/0006). Notifications are
-- per statement, and PostgreSQL folds identical ones in a transaction into one.
create function notify_archive_changed() returns trigger language plpgsql as $$
begin
  perform pg_notify('listkeeper_archive', '');
  return null;
end $$;

create trigger list_messages_changed after insert or update or delete or truncate on list_messages
  for each statement execute function notify_archive_changed();

create trigger messages_changed after update or delete or truncate on messages
  for each statement execute function notify_archive_changed();
