-- The address a session was logged in with (docs/panel.md, "Several addresses per account"): the
-- one typed with the password, the one a login or reset link was mailed to, the one a single
-- sign-on vouched for. When that address is removed from the account, the sessions logged in with
-- it end (all but the one removing it): an address that is no longer the account's is no longer a
-- way into it, not even through a session opened before. Null: logged in again with the password
-- (/account/reauthenticate), or opened before this release or by the previous release during a
-- rolling upgrade; such a session ends with "Log out everywhere else", a password change or its expiry.
alter table sessions add column login_email text;
