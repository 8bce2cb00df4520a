-- listkeeper: no transaction
-- Pruning forgets cancelled copies (0065) after the same days as sent and failed ones. This index
-- covers all three; the release before prunes sent and failed rows through it too (its predicate
-- is implied by theirs). 0068 drops the one it replaces.
create index concurrently if not exists outbox_finished_all on outbox (coalesce(sent_at, created_at)) where state in ('sent', 'failed', 'cancelled');
