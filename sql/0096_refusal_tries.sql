-- A refused copy's follow-up (a member's bounce, a probe's disable, a too-big notice: 0092) that
-- fails every time (a constraint, a member or list in a state the code does not expect, a bug) was
-- tried again by every pass of the workers' chores, for ever, with an error in the log each time;
-- and as a pass takes the oldest 500 marked rows, 500 such rows kept every newer one from ever
-- being recorded. Now each failed try that is not transient (src/db/pg-errors.ts) is counted on
-- the row, a row is tried again a little later each time, rows tried least go first, and after
-- a few tries (src/core/refusals.ts) the follow-up is given up: the mark is cleared and the row
-- noted in refusals_given_up with the error, for `listkeeper doctor` and the operator.
--
-- Columns and a table the previous release does not know: it neither reads nor writes them (its
-- passes take marked rows oldest first, as before, and never count).
alter table outbox add column bounce_tries smallint not null default 0;
alter table outbox add column bounce_tried_at timestamptz;

create table refusals_given_up (
  -- no foreign key: finished outbox rows are pruned after DELIVERY_KEEP_DAYS, as these are
  outbox_id   bigint primary key,
  list_id     bigint,
  member_id   bigint,
  recipient   text not null,
  -- the SMTP command refused (outbox.bounce_stage) and what was to follow: bounce, probe, too-big
  stage       text not null,
  follow_up   text not null,
  -- the last try's error
  error       text not null,
  tries       integer not null,
  given_up_at timestamptz not null default now()
);
