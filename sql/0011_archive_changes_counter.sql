-- A counter of changes to what archive pages show, bumped by the triggers of sql/0009 (and on any
-- change to a list). The page cache (src/web/archive/page-cache.ts) reads it before it serves a
-- kept page: a NOTIFY alone may reach a web server after the writer's next request does, and a
-- moderator who hides a message must not see it served again from memory. nextval() is not
-- rolled back, so an aborted change only costs a page rendered again.
create sequence archive_changes;

create function count_archive_change() returns trigger language plpgsql as $$
begin
  perform nextval('archive_changes');
  return null;
end $$;

-- Nothing listens on listkeeper_archive any more: the counter replaces that channel.
drop trigger list_messages_changed on list_messages;
drop trigger messages_changed on messages;

create trigger list_messages_changed after insert or update or delete or truncate on list_messages
  for each statement execute function count_archive_change();
create trigger messages_changed after update or delete or truncate on messages
  for each statement execute function count_archive_change();
create trigger lists_changed_archive after insert or update or delete or truncate on lists
  for each statement execute function count_archive_change();
