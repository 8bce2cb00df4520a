-- What the transaction that accepts a post to this list waits for before the 250 (issue 14,
-- item 5): PostgreSQL's synchronous_commit, set for that transaction only. null: the site's
-- POST_SYNCHRONOUS_COMMIT, else the server's own setting. 'off' is not offered: a 250 must mean
-- committed (docs/guarantees.md).
alter table lists
  add column synchronous_commit text check (synchronous_commit in ('local', 'remote_write', 'on', 'remote_apply'));
