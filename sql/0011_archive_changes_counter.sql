-- A counter of changes to what archive pages show, for the page cache
-- (src/web/archive/page-cache.ts), which reads it before it serves a kept page: a NOTIFY alone
-- may reach a web server after the writer's next request does, and a moderator who hides a
-- message must not see it served again from memory.
--
-- nextval() takes effect at once, before the change commits: a reader could see the new value
-- while the change is still invisible, render the old page and keep it under the new value. So
-- the trigger also takes a shared advisory lock (class 7283, key 11) that its transaction holds
-- until it has committed and its change is visible. archive_version() reads the counter only
-- while it can take that lock exclusively, that is while no change is in flight, and otherwise
-- says the value is not settled (the cache then neither serves nor keeps pages). Writers never
-- wait on each other; one waits at most for a reader's single short statement. nextval() is not
-- rolled back, so an aborted change only costs a page rendered again.
create sequence archive_changes;

create function count_archive_change() returns trigger language plpgsql as $$
begin
  perform pg_advisory_xact_lock_shared(7283, 11);
  perform nextval('archive_changes');
  return null;
end $$;

create function archive_version(out version bigint, out settled boolean) language plpgsql as $$
begin
  -- First the lock, then the counter: while this statement holds the lock no change can start.
  settled := pg_try_advisory_xact_lock(7283, 11);
  select case when is_called then last_value else 0 end into version from archive_changes;
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
