-- Tokens of the REST API no longer outlive their maker's rights, and may lapse (docs/api.md,
-- "Tokens"). A token made in the panel names the account that made it (created_by_account): it
-- works only while that account exists and is a site administrator (again if it becomes one
-- again). A token made on the command line (created_by 'cli:USER', created_by_account null) is
-- the operator's, who has the server: it works until it is revoked or lapses. expires_at: when a
-- token made with `token create --days N` (or the panel's days) stops working; null: never.
--
-- No foreign key: a deleted account's id must go on naming no account, so that its tokens stop
-- working, where "on delete set null" would hand them to the operator. Accounts merged by the
-- address-spellings job hand their tokens to the account kept (src/db/account-merge.ts).
alter table api_tokens
  add column created_by_account bigint,
  add column expires_at timestamptz;

-- Tokens made in the panel before: created_by is the address that named their maker then, still
-- one of its verified addresses unless it was removed since. A token whose maker is no account any
-- more is revoked: nobody can tell whether its maker is still a site administrator.
update api_tokens t set created_by_account = aa.account_id
  from account_addresses aa
 where t.created_by not like 'cli:%' and aa.email = t.created_by and aa.verified_at is not null;
update api_tokens set revoked_at = now(), revoked_by = 'sql/0083: its maker is no account any more'
 where created_by not like 'cli:%' and created_by_account is null and revoked_at is null;

-- The previous release, still serving during a rolling upgrade, makes panel tokens without
-- created_by_account: they get the account of the address that made them here, rather than
-- becoming the operator's. This release always names the account itself. A later release drops
-- the trigger.
create function api_token_maker() returns trigger language plpgsql as $$
begin
  select account_id into new.created_by_account from account_addresses where email = new.created_by and verified_at is not null;
  return new;
end $$;
-- Pinned to this schema as every trigger's function is (sql/0071).
do $$ begin execute format('alter function api_token_maker() set search_path = %I', current_schema()); end $$;

create trigger api_tokens_maker before insert on api_tokens
  for each row when (new.created_by_account is null and new.created_by not like 'cli:%') execute function api_token_maker();
