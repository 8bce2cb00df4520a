-- When the delivery workers' hourly chores (bounce score decay, outbox and rate-limit pruning,
-- retention, dead workers: src/delivery/maintenance.ts hourly()) last ran, for the whole fleet.
-- Each worker ran them an hour after its own start, from a timer: a fleet deployed, restarted or
-- crashing more often than hourly never ran them at all, and kept-aside mail, finished outbox rows
-- and rate-limit rows grew without end. Now a worker asks every minute and runs them when this
-- row says an hour has passed, claiming the run in the same statement (one worker per hour).
create table chore_runs (
  name   text primary key,
  ran_at timestamptz not null
);
-- A database upgraded to this runs them an hour from now, as a worker started now did.
insert into chore_runs (name, ran_at) values ('hourly', now());
