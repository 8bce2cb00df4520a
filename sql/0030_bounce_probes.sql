-- Bounces as Mailman does them, and better (issue 12, item 11; docs/delivery.md#bounces).
--
-- A member whose score reaches the list's bounce_threshold is first sent a probe: a short notice
-- whose envelope sender LIST-bounces+probe-TOKEN@ names this probe. Only a bounce of the probe
-- disables the member; a probe nobody bounces expires (BOUNCE_PROBE_DAYS) and clears the score.
-- A disabled member is warned bounce_warnings times, bounce_warning_interval_days apart (the
-- notice that announces the disable is the first warning), then unsubscribed; owners are told of
-- the disable and of the removal.
alter table lists
  add column bounce_warnings integer not null default 3 check (bounce_warnings between 0 and 100),
  add column bounce_warning_interval_days integer not null default 7 check (bounce_warning_interval_days between 1 and 365);

alter table members
  add column bounce_probe_token text,
  add column bounce_probe_sent_at timestamptz,
  add column bounce_warnings_sent integer not null default 0,
  add column bounce_warned_at timestamptz,
  add column unsubscribed_reason text;

create unique index members_bounce_probe_token on members (bounce_probe_token) where bounce_probe_token is not null;
-- The maintenance passes look only at these few rows, every few seconds.
create index members_bounce_probe_due on members (bounce_probe_sent_at) where bounce_probe_sent_at is not null;
create index members_bounce_disabled on members (bounce_warned_at) where status = 'disabled' and bounce_warned_at is not null;

-- Members disabled before this migration were told once, when they were disabled: that was
-- their first warning.
update members set bounce_warnings_sent = 1, bounce_warned_at = coalesce(disabled_at, updated_at)
 where status = 'disabled';

-- A bounce of a probe (a DSN to its address, or a 5xx while sending it) decides, it is not scored.
alter table bounces add column probe boolean not null default false;
