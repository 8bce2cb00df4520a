-- Checks the rows already there against 0065's constraint: a SHARE UPDATE EXCLUSIVE lock, which
-- lets posts be queued and copies be settled while the table is read.
alter table outbox validate constraint outbox_state_check;
