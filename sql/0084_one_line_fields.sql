-- Subjects and author names hold no bidirectional embeddings, overrides or isolates (U+202A to
-- U+202E, U+2066 to U+2069): in a one-line field they reorder what is shown after it, so a subject
-- ending in U+202E made the author a list of messages shows beside it read backwards. New posts
-- lose them as they arrive (oneLine(), src/mail/parsed-message.ts). Held posts are cleaned here,
-- a short table; archived messages by the one-line-fields conversion job
-- (src/core/conversions/one-line-fields.ts), in the background.
update held_messages
   set subject = regexp_replace(subject, '[\u202a-\u202e\u2066-\u2069]', '', 'g'),
       from_name = regexp_replace(from_name, '[\u202a-\u202e\u2066-\u2069]', '', 'g')
 where subject ~ '[\u202a-\u202e\u2066-\u2069]' or from_name ~ '[\u202a-\u202e\u2066-\u2069]';

insert into conversions (name) values ('one-line-fields');
