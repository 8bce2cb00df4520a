-- Index-only scans (0058, 0059) need the visibility map: autovacuum visits list_messages and
-- messages after 2% of new rows rather than the default 20% (20,000 rather than 200,000 at a
-- million), so that recent copies and threads are read from the indexes too. A visit skips the
-- pages already all-visible, so it reads about what was added since the last.
alter table list_messages set (autovacuum_vacuum_insert_scale_factor = 0.02);
alter table messages set (autovacuum_vacuum_insert_scale_factor = 0.02);
