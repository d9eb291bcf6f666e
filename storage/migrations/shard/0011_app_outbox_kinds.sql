-- The Events API's outbox gets the events that are not about a message
-- (storage/pg_app_events.py writes them): memberships, channel lifecycle,
-- file shares, and the app's own uninstall.  `app_uninstalled` and
-- `tokens_revoked` belong to no channel, so a row may have none.
ALTER TABLE app_event_outbox ALTER COLUMN channel_id DROP NOT NULL;
