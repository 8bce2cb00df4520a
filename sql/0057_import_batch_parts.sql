-- `listkeeper import` writes each run of messages of the file (a chunk) as several batches at
-- once, one per writer, split by thread (src/core/archive-import.ts): two writers that share no
-- thread take no common lock, where consecutive batches of a file in date order shared threads
-- and took turns. A chunk is done when each of its parts is recorded; an interrupted import
-- resumes at the first chunk that is not (its recorded parts are kept, not counted twice).
-- Rows of earlier releases are chunks of one part.
alter table archive_import_batches
  add column part  smallint not null default 0,
  add column parts smallint not null default 1;
alter table archive_import_batches drop constraint archive_import_batches_pkey;
alter table archive_import_batches add primary key (import_id, first_offset, part);
