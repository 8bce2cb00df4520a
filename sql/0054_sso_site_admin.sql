-- Site administration given by a single sign-on group (issue 14, item 2: OIDC_ADMIN_GROUP,
-- LDAP_ADMIN_GROUP). The column says which provider gave it, so that the same provider takes it
-- back at a later login once the user has left the group; an administrator made by the command
-- line (null here) is never demoted by a provider.
alter table accounts
  add column site_admin_via text check (site_admin_via in ('oidc', 'ldap')),
  add constraint accounts_site_admin_via_admin check (site_admin_via is null or is_site_admin);
