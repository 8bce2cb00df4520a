-- Worker liveness that PostgreSQL knows at once (issue 10, item 5).
--
-- Each delivery worker holds a session advisory lock, class 7284 and key lock_key, on a
-- dedicated connection for as long as it lives. The lock goes with the connection: a worker
-- killed with kill -9 (or whose machine vanishes, once TCP keepalives give up) no longer holds
-- it, and rows it had claimed go back to the queue at the next reclaim instead of after its
-- lease. The heartbeat stays as the fallback, for a worker that is connected but stuck.
--
-- Class 7284 is used for nothing else (7283 is the archive's, sql/0001, sql/0011), and the
-- two-key form never meets the one-key locks of Message-IDs and migrations in pg_locks.

create sequence delivery_worker_lock_keys as integer minvalue 1 cycle;

alter table delivery_workers add column lock_key integer;
-- Each worker's own DELIVERY_LEASE_SECONDS: `queue` and the dashboard, run with another
-- configuration, judge its heartbeat by the lease it works with.
alter table delivery_workers add column lease_seconds integer;

-- Takes a new worker's lock, or takes it again after a reconnection; false if someone holds it.
create function delivery_worker_lock(p_key integer) returns boolean
language sql volatile as $$
  select pg_try_advisory_lock(7284, p_key)
$$;

-- The keys of the worker locks held now in this database (keys repeat across databases).
create function delivery_worker_locks() returns setof integer
language sql stable as $$
  select objid::bigint::integer from pg_locks
   where locktype = 'advisory' and classid = 7284 and objsubid = 2 and granted
     and database = (select oid from pg_database where datname = current_database())
$$;
