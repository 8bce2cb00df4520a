-- What listkeeper learnt about a post when it arrived (issue 12): the Received line of the hop
-- into listkeeper, the authentication results (SPF, DKIM, DMARC, ARC) and the spam scan. Kept
-- beside the bytes, which stay exactly as received; copies are given these as trace fields.
-- src/mail/post-checks.ts describes the document.
alter table messages add column checks jsonb;
alter table held_messages add column checks jsonb;
