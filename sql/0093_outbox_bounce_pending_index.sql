-- listkeeper: no transaction
-- The rows whose follow-ups are still to be recorded (0092), looked for every few seconds by each
-- worker: a handful at most, among the days of finished rows the outbox keeps.
create index concurrently if not exists outbox_bounce_pending on outbox (id) where bounce_stage is not null;
