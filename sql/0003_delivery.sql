-- Delivery: per-list sending options, held messages and sender rules, subscription requests,
-- the outbound queue, bounces, digests and the DMARC policy cache.

-- Per-list options. Defaults leave every copy's body and the author's headers untouched.
alter table lists
  add column subject_prefix        text not null default '',
  add column footer                text not null default '',
  -- none: keep the author's Reply-To; list: Reply-To the list; address: Reply-To reply_to_address
  add column reply_to              text not null default 'none' check (reply_to in ('none', 'list', 'address')),
  add column reply_to_address      text,
  -- munge_from: From becomes the list for authors whose domain publishes p=reject/quarantine
  add column dmarc_mitigation      text not null default 'none' check (dmarc_mitigation in ('none', 'munge_from')),
  add column dkim_domain           text,
  add column dkim_selector         text,
  add column dkim_private_key      text,
  add column max_message_size      integer not null default 0 check (max_message_size >= 0),   -- bytes; 0: no limit
  add column digest_size_threshold integer not null default 30720 check (digest_size_threshold > 0),  -- bytes
  add column digest_interval_hours integer not null default 24 check (digest_interval_hours > 0),
  add column digest_volume         integer not null default 1,
  add column digest_issue          integer not null default 0,
  add column digest_last_sent_at   timestamptz,
  add column bounce_threshold      real not null default 3.0 check (bounce_threshold > 0),
  add column held_notice_minutes   integer not null default 15 check (held_notice_minutes >= 0),
  add column held_notified_at      timestamptz;

alter table members
  add column digest_format     text not null default 'mime' check (digest_format in ('mime', 'plain')),
  add column bounce_updated_at timestamptz,
  add column disabled_at       timestamptz,
  add column disabled_reason   text;

-- Senders always accepted (allow) or silently dropped (ban) on a list; `email` is an address or
-- '@domain' for a whole domain. A rule past expires_at no longer applies.
create table sender_rules (
  list_id    bigint not null references lists on delete cascade,
  email      text not null check (email = lower(email)),
  kind       text not null check (kind in ('allow', 'ban')),
  expires_at timestamptz,
  created_by text not null,
  created_at timestamptz not null default now(),
  primary key (list_id, email)
);

-- Posts not (yet) accepted. The raw bytes live here, not in messages: a held post is not part of
-- the archive until it is approved. Posts dropped by a rule are kept too, already decided.
create table held_messages (
  id              bigserial primary key,
  list_id         bigint not null references lists on delete cascade,
  message_id      text not null,
  raw             bytea not null,
  size            integer not null,
  from_email      text not null default '',
  from_name       text not null default '',
  subject         text not null default '',
  envelope_from   text,
  reason          text not null,
  rule            text not null,
  received_at     timestamptz not null default now(),
  state           text not null default 'held' check (state in ('held', 'approved', 'rejected', 'discarded')),
  decided_at      timestamptz,
  decided_by      text,
  decision_reason text,
  notified_at     timestamptz
);
create unique index held_messages_pending_once on held_messages (list_id, message_id) where state = 'held';
create index held_messages_pending on held_messages (list_id, received_at) where state = 'held';

-- (Un)subscription requests waiting for the address's confirmation or an owner's approval.
-- Only the SHA-256 of the token is stored.
create table subscription_requests (
  id           bigserial primary key,
  list_id      bigint not null references lists on delete cascade,
  email        text not null check (email = lower(email)),
  name         text,
  mode         text not null default 'each' check (mode in ('each', 'digest', 'nomail')),
  action       text not null check (action in ('subscribe', 'unsubscribe')),
  token_hash   text not null unique,
  via          text not null check (via in ('web', 'mail', 'admin')),
  state        text not null default 'confirm' check (state in ('confirm', 'approval', 'done', 'rejected')),
  created_at   timestamptz not null default now(),
  expires_at   timestamptz not null,
  confirmed_at timestamptz,
  decided_at   timestamptz,
  decided_by   text
);
create index subscription_requests_approval on subscription_requests (list_id, created_at) where state = 'approval';
create index subscription_requests_expires on subscription_requests (expires_at) where state = 'confirm';

-- Mail composed by us (notices, digests, mail forwarded to owners), sent through the queue.
create table outbound_mail (
  id         bigserial primary key,
  raw        bytea not null,
  created_at timestamptz not null default now()
);

-- The outbound queue: one row per (message, recipient). A post's rows are written in the
-- transaction that accepts it; workers claim rows with FOR UPDATE SKIP LOCKED.
-- list_id, message_id and member_id carry no foreign keys on purpose: the checks cost more than
-- half of a 10,000-row fan-out insert, which the sender's SMTP session waits for. A deleted
-- list takes its rows with it (trigger below); a row whose message or member is gone fails
-- harmlessly ("source gone") or is simply not scored.
create table outbox (
  id            bigserial primary key,
  kind          text not null check (kind in ('post', 'digest', 'notice')),
  list_id       bigint,
  message_id    bigint,                                             -- kind post: an archived message
  mail_id       bigint references outbound_mail on delete cascade, -- otherwise: composed mail
  member_id     bigint,
  member_token  text,                                               -- for the per-member header lines
  recipient     text not null,
  domain        text not null,
  envelope_from text not null,
  state         text not null default 'queued' check (state in ('queued', 'sending', 'sent', 'failed')),
  attempts      integer not null default 0,
  run_at        timestamptz not null default now(),
  created_at    timestamptz not null default now(),
  locked_by     text,
  locked_at     timestamptz,
  sent_at       timestamptz,
  last_error    text,
  check ((message_id is null) <> (mail_id is null))
);
-- Idempotent per (message, recipient): approving twice or re-running a fan-out adds nothing.
create unique index outbox_post_once on outbox (list_id, message_id, recipient) where message_id is not null;
create index outbox_due on outbox (run_at) where state = 'queued';
create index outbox_sending on outbox (locked_by) where state = 'sending';
create index outbox_finished on outbox (coalesce(sent_at, created_at)) where state in ('sent', 'failed');
create index outbox_mail on outbox (mail_id) where mail_id is not null;
create index outbox_list on outbox (list_id) where message_id is null;

create function outbox_forget_list() returns trigger language plpgsql as $$
begin
  -- Two statements so that each can use its partial index.
  delete from outbox where list_id = old.id and message_id is not null;
  delete from outbox where list_id = old.id and message_id is null;
  return null;
end $$;
create trigger outbox_forget_list after delete on lists for each row execute function outbox_forget_list();

-- Live delivery workers. A worker whose heartbeat is older than the lease has died: the rows it
-- had claimed go back to the queue (at most one batch is sent twice).
create table delivery_workers (
  name         text primary key,
  host         text not null,
  pid          integer not null,
  started_at   timestamptz not null default now(),
  heartbeat_at timestamptz not null default now()
);

-- Counts per hour for the operations dashboard (the outbox itself is pruned).
create table delivery_hourly (
  hour     timestamptz primary key,
  sent     integer not null default 0,
  deferred integer not null default 0,
  failed   integer not null default 0,
  bounced  integer not null default 0
);

-- Bounces received (DSNs at LIST-bounces+TOKEN@) or met while sending (5xx from the relay/MX).
create table bounces (
  id          bigserial primary key,
  list_id     bigint references lists on delete cascade,
  member_id   bigint references members on delete cascade,
  received_at timestamptz not null default now(),
  source      text not null check (source in ('dsn', 'smtp')),
  recipient   text,
  kind        text not null check (kind in ('hard', 'soft', 'policy', 'unknown')),
  category    text not null,
  status      text,
  diagnostic  text,
  counted     boolean not null,
  score_after real
);
create index bounces_member on bounces (member_id, received_at desc);
create index bounces_received on bounces (received_at);

-- Messages accepted since a list's last digest.
create table digest_items (
  list_id    bigint not null references lists on delete cascade,
  message_id bigint not null references messages on delete cascade,
  size       integer not null,
  added_at   timestamptz not null default now(),
  primary key (list_id, message_id)
);

-- DMARC policies of authors' domains, looked up in DNS and cached for every instance.
create table dmarc_policies (
  domain     text primary key,
  policy     text not null check (policy in ('none', 'quarantine', 'reject')),
  fetched_at timestamptz not null default now()
);
