-- Interactivity (block_actions): a response_url remembers the message it is
-- about, its "original": for an interaction, the message whose button was
-- pressed (set when the URL is made); for a slash command, the first
-- in_channel message posted through it (set once, then kept).
-- `replace_original` edits that message and `delete_original` deletes it
-- (parley/actions/commands.py).  NULL: there is none (an ephemeral
-- original was never stored).  No foreign key: a message is never removed
-- (a deletion leaves a tombstone), and the URL outlives nothing.
ALTER TABLE command_responses ADD COLUMN message_id BIGINT;
