-- Several addresses per account (issue 13, item 12), as a Mailman 3 user has them: each one
-- verified by a mailed link, one of them primary. accounts.email stays, and is the primary
-- address; every check of "is this viewer a member, moderator or owner" looks at all the
-- account's verified addresses.
--
-- A verified address belongs to one account only. An address someone added but has not verified
-- yet is a row with verified_at null; several accounts may have such a row for one address, so
-- that adding an address never tells whether another account holds it (the link mailed to it is
-- refused when clicked if the address is verified elsewhere by then).

create table account_addresses (
  account_id  bigint not null references accounts on delete cascade,
  email       text not null check (email = lower(email)),
  verified_at timestamptz,
  created_at  timestamptz not null default now(),
  primary key (account_id, email)
);
create unique index account_addresses_verified_email on account_addresses (email) where verified_at is not null;

insert into account_addresses (account_id, email, verified_at, created_at)
  select id, email, created_at, created_at from accounts;

-- The primary address is always one of the account's verified addresses, whoever creates the
-- account or changes its address (the CLI, a login link, the web): the trigger adds it.
create function accounts_primary_is_verified() returns trigger language plpgsql as $$
begin
  insert into account_addresses (account_id, email, verified_at) values (new.id, new.email, now())
    on conflict (account_id, email) do update set verified_at = coalesce(account_addresses.verified_at, now());
  return new;
end $$;

create trigger accounts_primary_is_verified after insert or update of email on accounts
  for each row execute function accounts_primary_is_verified();

-- The link that verifies an added address is a login_tokens row with purpose 'verify', which
-- also names the account that asked (the address alone does not say which account it is for).
alter table login_tokens add column account_id bigint references accounts on delete cascade;
alter table login_tokens drop constraint login_tokens_purpose_check;
alter table login_tokens add constraint login_tokens_purpose_check
  check (purpose in ('login', 'reset', 'verify') and (purpose = 'verify') = (account_id is not null));

-- Archive access with all of a reader's verified addresses (same rule as sql/0010 otherwise).
drop function can_read_archive(bigint, text, text, boolean);
create function can_read_archive(p_list_id bigint, p_archive text, p_emails text[], p_site_admin boolean)
returns boolean language plpgsql stable as $$
begin
  if p_archive = 'public' or p_site_admin then
    return true;
  end if;
  if p_emails is null or cardinality(p_emails) = 0 then
    return false;
  end if;
  return exists (select 1 from members m where m.list_id = p_list_id and m.email = any(p_emails) and m.status = 'active')
      or exists (select 1 from list_roles r where r.list_id = p_list_id and r.email = any(p_emails));
end $$;
