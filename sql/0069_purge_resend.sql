-- Each purge is sent twice (src/cache/purger.ts): as soon as its change commits, and again some
-- seconds later. A page the origin was still rendering from the data before the change when the
-- first purge reached the cache (or rendered from a read replica that had not replayed the change
-- yet) is stored by the cache after that purge, and kept for the VCL's hour: a hidden message
-- went on being served from it. sent_at is when the row's first purge was confirmed (null until
-- then); such a row waits for its second send at run_at and is deleted once that is confirmed.
-- Nullable and unread by the code before it: that code deletes rows after one send, as it did.
alter table purges add column sent_at timestamptz;
