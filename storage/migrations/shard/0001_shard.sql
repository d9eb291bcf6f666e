-- Shard database: everything that belongs to a workspace.  Every table has
-- workspace_id or reaches it through channel_id, and every query filters by
-- it: that is the tenant boundary.

CREATE TABLE workspaces (
    id              BIGINT PRIMARY KEY,
    name            TEXT NOT NULL,
    created_by      BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE workspace_members (
    workspace_id    BIGINT NOT NULL REFERENCES workspaces(id),
    user_id         BIGINT NOT NULL,                 -- users live in the directory database
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'guest')),
    display_name    TEXT NOT NULL,                   -- copied at join, shown in this workspace
    joined_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    deactivated_at  TIMESTAMPTZ,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members (user_id);

CREATE TABLE channels (
    id              BIGINT PRIMARY KEY,
    workspace_id    BIGINT NOT NULL REFERENCES workspaces(id),
    kind            TEXT NOT NULL CHECK (kind IN ('public', 'private', 'dm', 'group_dm')),
    name            TEXT,                            -- NULL for DMs
    topic           TEXT NOT NULL DEFAULT '',
    purpose         TEXT NOT NULL DEFAULT '',
    created_by      BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    archived_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX channels_name ON channels (workspace_id, name) WHERE name IS NOT NULL;

CREATE TABLE channel_members (
    channel_id      BIGINT NOT NULL REFERENCES channels(id),
    user_id         BIGINT NOT NULL,
    workspace_id    BIGINT NOT NULL,
    joined_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_read_seq   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_user ON channel_members (workspace_id, user_id);

-- The per-channel sequence counter.  Allocated with UPDATE ... RETURNING in
-- the transaction that stores the message, never with nextval(): sequences
-- are not transactional, so a later seq could commit before an earlier one
-- and a reader that skipped ahead would lose the earlier message for good.
CREATE TABLE channel_counters (
    channel_id      BIGINT PRIMARY KEY REFERENCES channels(id),
    last_seq        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    channel_id      BIGINT NOT NULL,
    seq             BIGINT NOT NULL,                 -- 1, 2, 3 ... per channel, no gaps
    id              BIGINT NOT NULL UNIQUE,          -- snowflake
    workspace_id    BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    text            TEXT NOT NULL,
    client_msg_id   TEXT,
    thread_root_id  BIGINT,
    created_at      TIMESTAMPTZ NOT NULL,
    edited_at       TIMESTAMPTZ,
    deleted_at      TIMESTAMPTZ,
    PRIMARY KEY (channel_id, seq)                    -- history is one index scan per page
);

-- Idempotency keys: (sender, client_msg_id) -> message.  Inserted first in
-- the write transaction; a conflict means the message exists (or is being
-- written by a concurrent transaction, which we then wait for), so a retry
-- never allocates a second sequence number.
CREATE TABLE message_idempotency (
    user_id         BIGINT NOT NULL,
    client_msg_id   TEXT NOT NULL,
    message_id      BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_msg_id)
);
