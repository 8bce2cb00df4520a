-- A copy refused for its size (552 5.3.4) is about the post, not the member (issue 12, item 5):
-- the list's owners and the post's author are told once per post and list, however many copies
-- were refused, by however many workers, on however many retries. This row is that once.
create table size_refusals (
  list_id    bigint not null references lists (id) on delete cascade,
  message_id bigint not null references messages (id) on delete cascade,
  response   text not null,
  refused_at timestamptz not null default now(),
  primary key (list_id, message_id)
);
