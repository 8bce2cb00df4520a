-- Long conversions in the background (issue 15, item 2). A migration runs at start-up under the
-- migration lock and holds its locks until it commits: anything that reads or writes every
-- message (a backfill, a digest, a re-index) made every start-up after an upgrade wait minutes
-- with archiving and reading blocked (0050 rewrote the whole messages table). From now on
-- migrations only do quick DDL; such work is a conversion job: a row here, done by the delivery
-- workers in short batches (src/core/conversions.ts), resumable after a crash, its progress in
-- `listkeeper queue`, /metrics and the admin dashboard.

create table conversions (
  name          text primary key,
  -- keyset cursor: the job has handled every row with a key up to here
  last_key      bigint not null default 0,
  -- rows looked at, and of those the ones the job had to change
  rows_done     bigint not null default 0,
  rows_changed  bigint not null default 0,
  -- the number of rows to look at, taken when the job starts (an estimate: rows come and go)
  total_estimate bigint,
  started_at    timestamptz,
  done_at       timestamptz,
  -- who ran the last batch and when (the claim itself is the row lock, held for one batch)
  locked_by     text,
  locked_at     timestamptz,
  -- the last batch's failure, cleared by the next batch that succeeds
  error         text,
  error_at      timestamptz
);

-- The SHA-256 of every archived message's raw bytes. A table of its own rather than a column on
-- messages: on PostgreSQL 15 an UPDATE of any column of a messages row computes its search tsvector
-- again (a generated column; about 240 µs a message) and rewrites the whole row, and fires the
-- archive's change counter, which would empty the page caches at every batch.
create table message_digests (
  message_id bigint primary key references messages (id) on delete cascade,
  sha256     bytea not null
);

-- New messages get theirs as they are inserted, by whichever release inserts them (an older one
-- running beside this one during a rolling upgrade too), by SMTP, import or restore's replay.
-- Statement-level, from the transition table: one INSERT for a whole COPY of an import.
create function record_message_digests() returns trigger language plpgsql as $$
begin
  insert into message_digests (message_id, sha256)
  select n.id, sha256(n.raw) from new_rows n
  on conflict (message_id) do nothing;
  return null;
end $$;

create trigger messages_digests after insert on messages
  referencing new table as new_rows for each statement execute function record_message_digests();

-- The messages archived before this migration get theirs from the conversion job.
insert into conversions (name) values ('message-digests');
