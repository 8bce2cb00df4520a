-- When a message was last hidden or shown again. Archive pages take their Last-Modified from the
-- newest message and this: hidden_at alone is cleared when a message is shown again, which moved
-- Last-Modified backwards and answered 304 to readers whose copy still lacked the message.
alter table messages add column visibility_changed_at timestamptz;
update messages set visibility_changed_at = hidden_at where hidden_at is not null;
create index messages_visibility_changed on messages (visibility_changed_at) where visibility_changed_at is not null;
