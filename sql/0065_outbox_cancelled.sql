-- A queued copy that nobody should get any more (its member left, paused delivery, was disabled
-- or switched to digests, or a moderator hid its post since) was settled as 'failed', so the
-- operations dashboard and `listkeeper queue` counted as failures copies that were rightly not
-- sent. It is now 'cancelled', with the reason in last_error as before. The constraint is added
-- NOT VALID here (a short lock) and validated by 0066 without blocking posts or delivery. Rows
-- settled as failed by the release before stay so and are pruned with the other finished rows.
-- The code before this never writes 'cancelled', so it runs unchanged beside this.
alter table outbox drop constraint outbox_state_check;
alter table outbox add constraint outbox_state_check
  check (state in ('queued', 'sending', 'sent', 'failed', 'cancelled')) not valid;
