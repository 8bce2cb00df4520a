-- Rows a conversion job skipped (src/core/conversions.ts). A batch that failed ended the pass, and
-- the next pass tried the same batch again: a row that fails every time (a message whose reading
-- throws, a row a constraint added later refuses) stopped its job for good, retried every few
-- seconds for ever. Now a failed batch is done again one row per transaction; a row that fails
-- alone, with an error that is not transient (not a lost connection, a serialization failure, a
-- timeout...), is recorded here with its error and the job's cursor moves past it. A transient
-- failure never skips a row.
--
-- Shown by `listkeeper queue` (and --json, GET /api/v1/queue), /metrics, the admin dashboard and
-- `listkeeper doctor` (a warning while any is here). A row skipped is left as the job found it:
-- the code reads it as a row the job has not reached (docs/operations.md, "Conversions in the
-- background", says how to have it done again once its cause is fixed).
--
-- A table the previous release does not know: it neither reads nor writes it.
create table conversion_skips (
  name       text not null references conversions (name) on delete cascade,
  -- the row's key, as the job's cursor counts (messages.id for the jobs so far)
  key        bigint not null,
  error      text not null,
  -- the worker that skipped it (as conversions.locked_by)
  worker     text,
  skipped_at timestamptz not null default now(),
  primary key (name, key)
);
