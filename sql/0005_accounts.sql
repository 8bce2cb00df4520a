-- Web panel: accounts, sessions, one-time login and password-reset links, the audit log.
-- Roles on lists stay in list_roles (by address): an account is owner or moderator of a list when
-- its e-mail address is listed there; site administrators can do everything.

create table accounts (
  id            bigserial primary key,
  email         text not null unique check (email = lower(email)),
  password_hash text,                       -- argon2id (PHC string); null: logs in by mailed link only
  is_site_admin boolean not null default false,
  created_at    timestamptz not null default now(),
  last_login_at timestamptz
);

-- Browser sessions. The cookie holds a random id; only its SHA-256 is stored, so a leaked table
-- (or backup) does not hand out live sessions.
create table sessions (
  id_hash      text primary key,
  account_id   bigint not null references accounts on delete cascade,
  created_at   timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  expires_at   timestamptz not null,
  ip           text,
  user_agent   text
);
create index sessions_account on sessions (account_id);
create index sessions_expires on sessions (expires_at);

-- One-time links sent by mail: 'login' (members and staff without a password) and 'reset'
-- (choose a new password). Stored hashed, single use, short-lived.
create table login_tokens (
  token_hash text primary key,
  email      text not null check (email = lower(email)),
  purpose    text not null check (purpose in ('login', 'reset')),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at    timestamptz
);
create index login_tokens_email on login_tokens (email, created_at);

-- Every administrative action: who, when, what, on which list. The list's address is copied so
-- entries stay readable after the list is deleted.
create table audit_log (
  id           bigserial primary key,
  at           timestamptz not null default now(),
  actor        text not null,
  action       text not null,
  list_id      bigint references lists on delete set null,
  list_address text,
  target       text,
  detail       jsonb not null default '{}'
);
create index audit_log_list on audit_log (list_id, id desc);
create index audit_log_actor on audit_log (actor, id desc);
