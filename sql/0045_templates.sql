-- Per-list texts of the mail listkeeper writes to people (issue 13, item 8): the welcome, the
-- goodbye, the held-post notice to the sender and the subscription confirmation. Empty means the
-- built-in text; variables ({list_name}, {member_email}, …: src/mail/templates.ts) are checked
-- when saved. Bodies only: subjects stay built-in.
alter table lists add column template_welcome text not null default '';
alter table lists add column template_goodbye text not null default '';
alter table lists add column template_held text not null default '';
alter table lists add column template_confirm text not null default '';

-- Whether a new member is welcomed (self-subscription and an administrator's add alike) and a
-- leaving one told goodbye: Mailman 3's send_welcome_message and send_goodbye_message, on by default.
alter table lists add column send_welcome boolean not null default true;
alter table lists add column send_goodbye boolean not null default true;
