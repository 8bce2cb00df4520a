-- listkeeper: no transaction
-- A message page counts its thread's messages and its place in the thread, finds the messages
-- before and after it there, and lists the replies to it. With messages_thread on (thread_id,
-- date) each of those read every message of the thread from the table: for the id, or to test
-- parent_id. In a 103-message thread of a million-message archive that was 94 pages read for the
-- replies alone (8 of the page's 11 ms). With id and parent_id in the index, the counts and the
-- replies' ids are read from it alone (src/db/archive-messages.ts), and (date, id) orders the
-- neighbours in the index itself. 47 MB at a million messages, built without blocking posts;
-- 0062 drops the narrower index it replaces.
create index concurrently if not exists messages_by_thread on messages (thread_id, date, id) include (parent_id);
