-- Any change to lists wakes the ingest listeners' recipient caches (see src/smtp/recipient-cache.ts).
create function notify_lists_changed() returns trigger language plpgsql as $$
begin
  perform pg_notify('listkeeper_lists', '');
  return null;
end $$;

create trigger lists_changed after insert or update or delete or truncate on lists
  for each statement execute function notify_lists_changed();
