-- listkeeper: no transaction
-- Replaced by outbox_finished_all (0067).
drop index concurrently if exists outbox_finished;
