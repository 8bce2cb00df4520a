-- listkeeper: no transaction
-- Replaced by list_messages_by_message (0058), which begins with the same column.
drop index concurrently if exists list_messages_message;
