-- The functions that triggers run find listkeeper's tables whatever the search_path of the session
-- that writes. They named tables, sequences and the text-search configuration without a schema,
-- which PostgreSQL looks up in the search_path of whoever fires the trigger: an operator's psql
-- with `options=-csearch_path=…`, a role whose search_path is another, or tables in a schema other
-- than public reached by qualified names. There, any insert, update or delete on lists,
-- list_messages or messages failed (`relation "purge_switch" does not exist`, from purging() in
-- the WHEN clause of sql/0055's triggers, evaluated whether purging is on or off), and so did a
-- message's insert (message_digests, archive_changes), a list's delete (outbox), an account's
-- insert (account_addresses).
--
-- Each such function now has the search_path of this migration's schema (current_schema(): where
-- the earlier migrations made the tables, and the one the code reads as its own), written in
-- by name: not `set search_path from current`, whose "$user" would be resolved against the role
-- that fires the trigger, not the one that migrated (sql/0070's messages_search_vector had that
-- from its migration, and is set the same way here). purging() instead names its table with the
-- schema: it is evaluated in the WHEN clause of every write to those three tables, and a function
-- with a SET clause is not inlined there.
--
-- Left as they are: notify_change() and members_end_vacation_on_mode_change() name nothing of
-- ours; the functions only the code calls (accept_post(), import_messages(), can_read_archive()…)
-- run in the code's sessions, whose search_path has the schema or none of the code's statements
-- would work (and can_read_archive() must stay an inlinable SQL function, sql/0063).
-- test/search-path.test.ts checks the catalog: every function a trigger runs names its schema.

do $$
declare
  v_schema text := current_schema();
  f regprocedure;
begin
  foreach f in array array[
    -- sql/0055: the purge triggers and what they call
    'purge_list_messages_inserted()', 'purge_list_messages_deleted()', 'purge_list_messages_updated()',
    'purge_messages_deleted()', 'purge_messages_updated()',
    'purge_lists_inserted()', 'purge_lists_deleted()', 'purge_lists_updated()',
    'queue_archive_purges(bigint[], bigint[], timestamptz[])', 'queue_thread_purges(bigint[])',
    'queue_list_purges(bigint[], text[])',
    -- the archive's change counter (sql/0011), thread moves (sql/0004), digests (sql/0056)
    'count_archive_change()', 'record_thread_moves()', 'record_message_digests()',
    -- a deleted list's outbox rows (sql/0003), an account's primary address (sql/0049)
    'outbox_forget_list()', 'accounts_primary_is_verified()',
    -- the search vector (sql/0070): its "$user" replaced by the schema's name
    'messages_search_vector()'
  ]::regprocedure[] loop
    execute format('alter function %s set search_path = %I', f, v_schema);
  end loop;

  execute format($f$
    create or replace function purging() returns boolean language sql stable as $body$
      select coalesce((select enabled from %I.purge_switch), false)
    $body$ $f$, v_schema);
end $$;
