-- Who may see a list's member list on /lists/LIST/members (issue 13, item 9): its owners and
-- moderators only (the default, as Mailman's member_roster_visibility = moderators), its
-- logged-in members too, or anyone. Addresses are shown obfuscated as the archive shows them.
alter table lists add column roster_visibility text not null default 'owners'
  check (roster_visibility in ('owners', 'members', 'anyone'));
