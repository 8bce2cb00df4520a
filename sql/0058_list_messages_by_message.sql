-- listkeeper: no transaction
-- A search checks each match's copies: is the message visible (hidden_at is null) in a list the
-- reader may read (list_id)? list_messages_message (message_id alone) found a message's rows, and
-- then each row was read from the table for those two columns: a page of list_messages per match.
-- On a million messages a word in 1,189 of them read 1,189 such pages, most of them not in
-- shared_buffers (52 ms of the search's 80, once the cache had moved on to other words). Carried
-- in the index, the check is answered from the index alone (an index-only scan) wherever VACUUM
-- has marked the table's pages all-visible (0060). 39 MB at a million messages, built without
-- blocking posts; 0061 drops the narrower index it replaces.
create index concurrently if not exists list_messages_by_message on list_messages (message_id) include (list_id, hidden_at);
