-- The archive change counter (sql/0011) moves on an update of `lists` only when the update changes
-- something an archive page shows or that decides who may read one. Every UPDATE of `lists` bumped
-- it, so every web process emptied its page cache (src/web/archive/page-cache.ts) for writes no
-- page shows: held_notified_at (the owners' held-post notice, once per held_notice_minutes per
-- list), the digest's volume, issue and last send (each digest sent), a list's delivery settings,
-- DKIM key, templates, and the spelling of reply_to_address (sql/0074).
--
-- What archive pages read of a list (src/db/archive*.ts, src/web/archive/, views/archive/): id,
-- address, local_part and domain (its address, its URL key, which depends on the other lists'
-- local parts too, its subscribe address), name, description, archive (who may read it: the only
-- column of `lists` can_read_archive() reads, sql/0063; the rest of that rule is members and
-- list_roles, which no anonymous page depends on and the cache never keeps a logged-in page of),
-- roster_visibility (who may see /lists/LIST/members) and created_at (the feed's date of an empty
-- list). An update that changes any of them, compared as values, still bumps the counter in its own
-- statement, as before; inserts, deletes and truncates of lists always do (a new list can change
-- another's URL key). A column added to archive pages later must be added here.
--
-- A row trigger with a WHEN clause: the comparison costs nothing worth counting, and the function
-- runs only for a row that changed a shown column. (One flat OR, not a row comparison: PostgreSQL
-- prints that as nested ORs, which sql/schema.sql would not load back the same.)
drop trigger lists_changed_archive on lists;

create trigger lists_changed_archive after insert or delete or truncate on lists
  for each statement execute function count_archive_change();

create trigger lists_shown_changed_archive after update on lists
  for each row
  when (old.id is distinct from new.id
     or old.address is distinct from new.address
     or old.local_part is distinct from new.local_part
     or old.domain is distinct from new.domain
     or old.name is distinct from new.name
     or old.description is distinct from new.description
     or old.archive is distinct from new.archive
     or old.roster_visibility is distinct from new.roster_visibility
     or old.created_at is distinct from new.created_at)
  execute function count_archive_change();
