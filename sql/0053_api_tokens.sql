-- Tokens of the REST API (/api/v1, issue 14 item 1; docs/api.md). A token is a 256-bit random
-- secret shown once; only its SHA-256 is kept (a secret that long cannot be guessed, so a slow
-- hash would add cost and nothing else). Scopes nest: read ⊂ moderate ⊂ admin. A revoked token
-- keeps its row, so the audit log's actor `api:NAME#ID` can still be looked up.
create table api_tokens (
  id bigserial primary key,
  name text not null check (length(name) between 1 and 80),
  scope text not null check (scope in ('read', 'moderate', 'admin')),
  token_hash text not null unique,
  created_by text not null,
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz,
  revoked_by text
);
