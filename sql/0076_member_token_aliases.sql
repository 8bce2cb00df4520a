-- A member's earlier token, still good after two member rows became one. The address-spellings
-- conversion job (sql/0074) merges the two spellings of one mailbox on a list into one row and
-- deletes the other; mail sent before to the deleted row carries its token, in its one-click
-- unsubscribe link (/u/TOKEN, List-Unsubscribe) and its return address (LIST-bounces+TOKEN@):
-- a reader who used that link got "no such subscription" and stayed subscribed through the kept
-- row, and a bounce to it named no member. The deleted row's token is kept here for the kept row;
-- findMemberByToken() and unsubscribeByToken() (src/db/members.ts) read it after members.token.
create table member_token_aliases (
  token      text primary key,
  member_id  bigint not null references members (id) on delete cascade,
  created_at timestamptz not null default now()
);
create index member_token_aliases_member on member_token_aliases (member_id);
