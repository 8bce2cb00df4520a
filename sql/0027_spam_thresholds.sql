-- The spam check's per-list thresholds (issue 12, item 4): a post whose rspamd score reaches
-- spam_hold_score waits for a moderator; one reaching spam_reject_score is refused at SMTP
-- (550 5.7.1) and kept in ingest_errors. Null turns either off. The defaults are rspamd's own
-- action thresholds: 6 is its "add header" (a mailbox would file the message as spam), 15 its
-- "reject". They only matter when SPAM_CHECK_URL is set.
alter table lists
  add column spam_hold_score   real default 6,
  add column spam_reject_score real default 15;
