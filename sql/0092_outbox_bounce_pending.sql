-- A copy refused for good (5xx) has follow-ups besides its result: the member's bounce, a probe's
-- disable, the notice of a post too big. They were recorded in a transaction after the one that
-- wrote the row's result, so a worker killed between the two (or a result whose commit went
-- unheard and was retried) left the row failed and its bounce never recorded. The result now
-- marks the row with the SMTP stage that was refused (src/delivery/outcomes.ts), and the
-- transaction that records its follow-ups clears the mark (src/core/refusals.ts): a mark left
-- behind is found and recorded by the workers' frequent chores, once.
alter table outbox add column bounce_stage text;
