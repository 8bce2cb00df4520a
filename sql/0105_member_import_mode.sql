-- Running `import-mailman` again (the final sync before switching over) set every member's
-- delivery mode and digest format back to the export's: a member who had chosen digests or no
-- mail here since the first import lost that choice. Now each member row remembers the mode and
-- the digest format the last import gave it; a re-run sets them from the export only while they
-- are still what the import gave (so a change made in Mailman meanwhile is carried over), and
-- keeps, and reports, what was changed here since. Null: never imported (the export applies).
--
-- Nullable columns with no default: the previous release neither reads nor writes them (its
-- import sets the mode as before and leaves these as they were).
alter table members add column import_mode text check (import_mode in ('each', 'digest', 'nomail'));
alter table members add column import_digest_format text check (import_digest_format in ('mime', 'plain'));
