-- Rejected mail is bounded (issue 10, item 11): a kept item holds at most the first
-- REJECTED_MAX_KB of what arrived, so its full size and a hash of every byte are kept beside it;
-- `client` is the SMTP client's address when the listener knows it (per-client quota, forensics).
alter table ingest_errors
  add column size   bigint,
  add column sha256 text,
  add column client text;
update ingest_errors set size = length(raw);

-- Pruning after KEEP_*_DAYS walks these in age order; held posts awaiting a moderator keep their
-- own index (held_messages_pending) and expire by HELD_EXPIRE_DAYS instead.
create index ingest_errors_received on ingest_errors (received_at);
create index held_messages_decided on held_messages (decided_at) where state <> 'held';
create index held_messages_waiting on held_messages (received_at) where state = 'held';
