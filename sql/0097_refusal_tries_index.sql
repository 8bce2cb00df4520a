-- listkeeper: no transaction
-- The marked rows in the order a chores pass takes them (0096): tried least first, then oldest.
-- (outbox_bounce_pending, by id alone, is what the previous release's passes read.)
create index concurrently if not exists outbox_bounce_pending_tries on outbox (bounce_tries, id) where bounce_stage is not null;
