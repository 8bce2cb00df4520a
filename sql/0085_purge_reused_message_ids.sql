-- A message archived under a Message-ID that other archived messages already have (a reused or
-- colliding id: each is a message of its own, sql/0013) changes their permalink page: the
-- /message-id/ID page that showed the one message becomes the choice between them (300). That
-- page, kept by a cache in front, is named by the messages it showed (message-M, sql/0055), and
-- the new message's row queued only its own key: the cache went on showing the old message alone
-- under the Message-ID for its TTL (an hour in the documented VCL), to readers who followed the
-- new message's link from its list. Now a message reaching a public list also queues the keys of
-- the other messages under its Message-ID.
create or replace function purge_list_messages_inserted() returns trigger language plpgsql as $$
begin
  perform queue_archive_purges(array_agg(list_id), array_agg(message_id), array_agg(date)) from new_rows having count(*) > 0;
  if found then
    insert into purges (key)
    select distinct 'message-' || o.id
      from new_rows n
      join lists l on l.id = n.list_id and l.archive = 'public'
      join messages m on m.id = n.message_id
      join messages o on o.message_id = m.message_id and o.id <> m.id
     -- an import's batch is coarsened to its lists (queue_archive_purges), which these pages carry
     where (select count(*) from new_rows) <= 50;
    perform pg_notify('listkeeper_purges', '');
  end if;
  return null;
end $$;

do $$
begin
  execute format('alter function purge_list_messages_inserted() set search_path = %I', current_schema());
end $$;
