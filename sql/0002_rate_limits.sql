-- Fixed-window counters for rate limits on what strangers can reach (web subscription, login,
-- mail commands). In PostgreSQL so that every web instance and worker sees the same counts.
create table rate_limits (
  key          text primary key,
  window_start timestamptz not null,
  hits         integer not null
);
create index rate_limits_window on rate_limits (window_start);
