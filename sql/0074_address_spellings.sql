-- One spelling per mailbox. An address whose domain was typed in A-labels (bob@xn--bcher-kva.example)
-- was stored as typed, while the same mailbox typed in Unicode (bob@bücher.example) was stored in
-- U-labels: one person could be two members of a list, two accounts, and a ban or a role on one
-- spelling missed the other. normalizeEmail (src/mail/address.ts) now gives the U-label spelling
-- for both, and refuses an A-label that is not one (it must read back as itself).
--
-- The rows stored before get that spelling from the address-spellings conversion job
-- (src/core/conversions/address-spellings.ts): IDNA (UTS #46) is the one definition in normalizeEmail,
-- not written a second time in PL/pgSQL. Where both spellings already exist (one list's member,
-- rule or role; two accounts) it merges them into one row, keeping the stronger or older one, and
-- writes an audit entry naming what it merged. A spelling that is no valid A-label is left as it is.
--
-- address_spellings is its report, one row per spelling it met: what it became and what was done.
-- The job's name sorts before the other jobs', so a worker takes it first: it is a few short
-- batches, and until it has run, only the post pipeline reads both spellings (senderFacts).

create table address_spellings (
  -- where the spelling was found: members, subscription_requests, list_roles, sender_rules,
  -- accounts (accounts and account_addresses), login_tokens, held_messages, bounces
  tbl          text not null,
  email        text not null,
  -- the canonical spelling; null when the spelling is no valid A-label and was left as it is
  canonical    text,
  outcome      text not null,
  rows_changed integer not null default 0,
  decided_at   timestamptz not null default now(),
  primary key (tbl, email)
);

-- While a release before this one runs beside it (a rolling upgrade), it may still store an
-- A-label spelling: such a write puts the job back to work once it has finished. Only writes of
-- such a spelling fire it (the WHEN clause), which this release never makes but for a spelling
-- the job left as it is. A later release drops these triggers.
create function idn_address_written() returns trigger language plpgsql as $$
begin
  update conversions set done_at = null where name = 'address-spellings' and done_at is not null;
  return null;
end $$;
-- Pinned to this schema as every trigger's function is (sql/0071).
do $$ begin execute format('alter function idn_address_written() set search_path = %I', current_schema()); end $$;

create trigger members_idn_address after insert or update of email on members
  for each row when (new.email ~ '[@.]xn--[^@]*$') execute function idn_address_written();
create trigger subscription_requests_idn_address after insert or update of email on subscription_requests
  for each row when (new.email ~ '[@.]xn--[^@]*$') execute function idn_address_written();
create trigger list_roles_idn_address after insert or update of email on list_roles
  for each row when (new.email ~ '[@.]xn--[^@]*$') execute function idn_address_written();
create trigger sender_rules_idn_address after insert or update of email on sender_rules
  for each row when (new.email ~ '[@.]xn--[^@]*$') execute function idn_address_written();
create trigger accounts_idn_address after insert or update of email on accounts
  for each row when (new.email ~ '[@.]xn--[^@]*$') execute function idn_address_written();
create trigger account_addresses_idn_address after insert or update of email on account_addresses
  for each row when (new.email ~ '[@.]xn--[^@]*$') execute function idn_address_written();

insert into conversions (name) values ('address-spellings');
