-- Moderation by mail (issue 13, item 2) and the held sender's notice (item 1).
-- Each held post announced to the moderators gets a token of its own, mailed in the notice's
-- reply address (LIST-confirm+mod-TOKEN@); only its SHA-256 is stored, as for subscription
-- tokens. A token acts on that one post while it is held: a decision, by mail or not, ends it.
alter table held_messages add column mail_token_hash text;
create unique index held_messages_mail_token on held_messages (mail_token_hash) where mail_token_hash is not null;

-- Whether the sender of a held post is told it awaits a moderator (Mailman's respond_to_post_requests).
-- Off by default, unlike Mailman: a From line that no check vouches for (a domain without DMARC)
-- would make the list write to whoever it names. Never for spam, automatic mail or a failed check.
alter table lists add column notify_held_sender boolean not null default false;
