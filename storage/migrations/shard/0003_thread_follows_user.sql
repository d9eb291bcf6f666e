-- Leaving a channel or the workspace deletes the user's follows there
-- (storage/pg_channels.py remove_channel_member, pg_accounts.py end_membership):
-- find them by user instead of scanning every follow of the shard.
CREATE INDEX thread_follows_user ON thread_follows (user_id, channel_id);
