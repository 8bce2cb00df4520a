-- OWNER_ADDS_PER_DAY was counted in rate_limits, a fixed window that starts at the first add: an
-- owner who added the cap just before the window ended could add the cap again just after it,
-- twice the cap within minutes. Now each transaction that takes from such a limit writes one row
-- here (when and how many), and the limit is the sum over the last 24 hours: no 24 hours ever let
-- more than the cap through. A transaction that takes nothing writes nothing, so a key has at
-- most as many rows in its window as its cap; the taker deletes its key's older rows, and the
-- hourly chores (pruneRateLimits) those of keys no longer used.
--
-- A table the previous release does not know: during a rolling upgrade its processes count the
-- owners' adds in rate_limits as before, apart from these.
create table rate_limit_hits (
  id   bigint generated always as identity primary key,
  key  text not null,
  at   timestamptz not null,
  hits integer not null check (hits > 0)
);
create index rate_limit_hits_key_at on rate_limit_hits (key, at);
create index rate_limit_hits_at on rate_limit_hits (at);
