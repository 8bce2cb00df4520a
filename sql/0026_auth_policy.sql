-- What a list does with a post that fails authentication (src/core/moderation-rules.ts, rule
-- 'authentication'): its From domain fails DMARC with p=reject or p=quarantine, or its From is a
-- member but neither SPF nor DKIM passes for a domain aligned with it (a forged member address).
-- hold: a moderator decides (the default); reject: refused 5.7.x at the end of DATA; accept: the
-- results are only recorded (Authentication-Results on every copy).
alter table lists
  add column auth_policy text not null default 'hold' check (auth_policy in ('accept', 'hold', 'reject'));
