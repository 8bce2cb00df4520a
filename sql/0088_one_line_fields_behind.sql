-- listkeeper: no transaction
-- The messages whose subject or author name still holds a bidirectional control, for the
-- one-line-fields job (src/core/conversions/one-line-fields.ts). The previous release, running
-- beside this one during a rolling upgrade from before sql/0084, archives subjects and names with
-- them, also after the job has passed them or has finished: "Re: hi" + U+202E stayed reversed on
-- the pages for good.
--
-- Since sql/0084 no message is stored with one, so this index holds only such messages (none once
-- the job has passed: a small index, cheap to ask), and the workers ask it at every pass (the
-- job's `behind`): a finished job with such a message behind its cursor is opened again from that
-- message. The predicate is the one src/db/one-line-fields.ts asks with, word for word (a partial
-- index serves only a query whose condition implies its own). Built without blocking posts.
create index concurrently if not exists messages_bidi_fields on messages (id)
  where subject ~ U&'[\202A-\202E\2066-\2069]' or from_name ~ U&'[\202A-\202E\2066-\2069]';
