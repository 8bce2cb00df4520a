-- listkeeper: no transaction
-- Replaced by messages_by_thread (0059), which begins with the same columns.
drop index concurrently if exists messages_thread;
