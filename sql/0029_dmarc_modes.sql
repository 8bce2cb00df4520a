-- DMARC mitigation done right (issue 12): two more per-list modes, and a cache that tells a
-- published record from none, since "no record" may be kept for an hour only (a record a day).
alter table lists drop constraint lists_dmarc_mitigation_check;
alter table lists add constraint lists_dmarc_mitigation_check
  check (dmarc_mitigation in ('none', 'munge_from', 'munge_from_always', 'wrap_message'));

alter table dmarc_policies add column has_record boolean not null default true;
