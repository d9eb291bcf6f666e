-- Collaboration (issue 5): invites, membership endings, DMs, threads,
-- reactions, pins, mentions, follows and full-text search.  Every new table
-- carries workspace_id and every query filters by it (the tenant boundary).

-- Why a workspace membership ended: 'left' (the member may rejoin through an
-- invite) or 'deactivated' (by an admin: only an admin can bring them back).
ALTER TABLE workspace_members
    ADD COLUMN ended_reason TEXT CHECK (ended_reason IN ('left', 'deactivated'));

-- Expiring invite links.  The link carries the workspace id and a secret; only
-- the secret's sha256 is stored.
CREATE TABLE invites (
    id              BIGINT PRIMARY KEY,              -- snowflake
    workspace_id    BIGINT NOT NULL REFERENCES workspaces(id),
    token_hash      TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member', 'guest')),
    created_by      BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    max_uses        INTEGER CHECK (max_uses IS NULL OR max_uses > 0),   -- NULL: unlimited
    uses            INTEGER NOT NULL DEFAULT 0,
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX invites_workspace ON invites (workspace_id, id);

-- DMs and group DMs: the sorted member ids, so get-or-create by member set is
-- one unique-index lookup and two racing creators end with one channel.
ALTER TABLE channels ADD COLUMN dm_key TEXT;
CREATE UNIQUE INDEX channels_dm_key ON channels (workspace_id, dm_key) WHERE dm_key IS NOT NULL;

-- Thread replies posted with "also send to channel".  Set right after the
-- group-commit writer stores the reply (the writer's INSERT does not know the
-- column); see docs/architecture.md "Domain model".
ALTER TABLE messages ADD COLUMN also_in_channel BOOLEAN NOT NULL DEFAULT false;

-- Full-text search: the 'simple' configuration (no stemming, any language).
-- Deleting a message empties its text, so tombstones are never found.
ALTER TABLE messages
    ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
CREATE INDEX messages_tsv ON messages USING GIN (tsv);
CREATE INDEX messages_thread ON messages (thread_root_id, seq) WHERE thread_root_id IS NOT NULL;

CREATE TABLE reactions (
    message_id      BIGINT NOT NULL REFERENCES messages(id),
    emoji           TEXT NOT NULL,
    user_id         BIGINT NOT NULL,
    workspace_id    BIGINT NOT NULL,
    channel_id      BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, emoji, user_id)         -- idempotent per (user, message, emoji)
);

CREATE TABLE pins (
    channel_id      BIGINT NOT NULL REFERENCES channels(id),
    message_id      BIGINT NOT NULL REFERENCES messages(id),
    workspace_id    BIGINT NOT NULL,
    pinned_by       BIGINT NOT NULL,
    pinned_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, message_id)
);

-- Thread follows.  following = false records an explicit unfollow, which
-- automatic follows (being the root's author) respect; replying or being
-- mentioned in the thread follows again.
CREATE TABLE thread_follows (
    root_id         BIGINT NOT NULL REFERENCES messages(id),
    user_id         BIGINT NOT NULL,
    workspace_id    BIGINT NOT NULL,
    channel_id      BIGINT NOT NULL,
    following       BOOLEAN NOT NULL,
    PRIMARY KEY (root_id, user_id)
);

-- Who a message mentions (@user, or everyone for @channel/@here), limited to
-- channel members at posting time.  Mention counts are the rows with
-- seq > the member's last_read_seq.
CREATE TABLE mentions (
    user_id         BIGINT NOT NULL,
    channel_id      BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    message_id      BIGINT NOT NULL REFERENCES messages(id),
    workspace_id    BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id, seq)
);
CREATE INDEX mentions_message ON mentions (message_id);
