-- Apps (issue 14): apps created from a Slack-style manifest, their tokens and
-- incoming webhooks, the bot's workspace membership, and the Slack-compatible
-- extras of messages (blocks, attachments, the bot that posted).  Every table
-- carries workspace_id and every query filters by it (the tenant boundary).

-- A bot is a workspace member like a person (same permission table as a
-- member), marked so lists can say is_bot.
ALTER TABLE workspace_members ADD COLUMN is_bot BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE apps (
    id              BIGINT PRIMARY KEY,              -- snowflake; A<base36> in the Web API
    workspace_id    BIGINT NOT NULL REFERENCES workspaces(id),
    name            TEXT NOT NULL,
    bot_name        TEXT NOT NULL,                   -- the bot user's display name
    -- The validated manifest (request URLs, events, slash commands, Socket
    -- Mode): what part 2 (Events API, commands, interactivity) reads.
    manifest        JSONB NOT NULL,
    bot_scopes      TEXT[] NOT NULL,                 -- granted to the bot token at install
    socket_mode     BOOLEAN NOT NULL,
    bot_id          BIGINT NOT NULL UNIQUE,          -- B<base36>
    bot_user_id     BIGINT NOT NULL UNIQUE,          -- the bot's account (directory users.id)
    created_by      BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The signing secret is never stored: it is derived from the server
    -- secret and this random salt (parley/appkeys.py).  Rotating draws a new
    -- salt; the previous one stays valid until prev_signing_until.
    signing_salt    TEXT NOT NULL,
    prev_signing_salt  TEXT,
    prev_signing_until TIMESTAMPTZ,
    installed_at    TIMESTAMPTZ,                     -- NULL: not installed
    deleted_at      TIMESTAMPTZ                      -- deleted apps keep their row (messages name the bot)
);
CREATE UNIQUE INDEX apps_name ON apps (workspace_id, lower(name)) WHERE deleted_at IS NULL;

-- Tokens: xoxb- (bot), xapp- (app-level, Socket Mode), xoxp- (user, future).
-- The token is "<prefix>-<workspace id>-<id>-<secret>"; only the secret's
-- sha256 is stored, and the id finds the row with one primary-key probe.
CREATE TABLE app_tokens (
    id              BIGINT PRIMARY KEY,
    workspace_id    BIGINT NOT NULL,
    app_id          BIGINT NOT NULL REFERENCES apps(id),
    kind            TEXT NOT NULL CHECK (kind IN ('bot', 'app', 'user')),
    user_id         BIGINT NOT NULL,                 -- the bot's account, or the person's
    secret_hash     TEXT NOT NULL,
    scopes          TEXT[] NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX app_tokens_app ON app_tokens (app_id, id);

-- Incoming webhooks: one URL per (app, channel); the URL's secret is stored
-- hashed.  Revoked when the app is uninstalled.
CREATE TABLE app_webhooks (
    id              BIGINT PRIMARY KEY,
    workspace_id    BIGINT NOT NULL,
    app_id          BIGINT NOT NULL REFERENCES apps(id),
    channel_id      BIGINT NOT NULL REFERENCES channels(id),
    secret_hash     TEXT NOT NULL,
    created_by      BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX app_webhooks_app ON app_webhooks (app_id, id);

-- What a Slack-style message carries beyond Parley's own columns.  One row
-- only for messages that have any of it (plain messages have none, so the
-- group-commit writer and its hot path are untouched).  Written BEFORE the
-- message is appended, keyed by the snowflake the caller assigned, so no
-- reader ever sees the message without it; hence no foreign key.  A row
-- whose append failed is deleted by the action (an orphan left by a crash
-- names an id no message has, and is never read).
CREATE TABLE message_extras (
    message_id      BIGINT PRIMARY KEY,
    workspace_id    BIGINT NOT NULL,
    channel_id      BIGINT NOT NULL,
    blocks          TEXT,                            -- JSON array, as received
    attachments     TEXT,                            -- JSON array, as received
    bot_id          BIGINT,                          -- the app's bot that posted it
    app_id          BIGINT,
    subtype         TEXT CHECK (subtype IN ('bot_message'))  -- incoming webhooks
);

-- The first seq of a channel whose message was created at or after p_at
-- (last_seq + 1 when none): the Web API's time bounds (oldest/latest that
-- name no message).  Bisection over the primary key, about log2(n) probes,
-- in one round trip.  Exact when created_at grows with seq, which holds for
-- messages of one process; across processes it may be out of order by the
-- clock skew between them, and the boundary is then off by the messages
-- inside that skew.  Seqs have no gaps and rows are never removed (deleted
-- messages are tombstones), so every probe finds a row.
CREATE OR REPLACE FUNCTION parley_seq_at(p_channel BIGINT, p_at TIMESTAMPTZ)
RETURNS BIGINT
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    lo BIGINT := 1;
    hi BIGINT;
    mid BIGINT;
    t TIMESTAMPTZ;
BEGIN
    SELECT last_seq + 1 INTO hi FROM channel_counters WHERE channel_id = p_channel;
    IF hi IS NULL THEN
        RETURN 1;
    END IF;
    -- Invariant: every seq < lo was created before p_at; seq hi is "at or after".
    WHILE lo < hi LOOP
        mid := lo + (hi - lo) / 2;
        SELECT created_at INTO t FROM messages WHERE channel_id = p_channel AND seq = mid;
        IF t IS NULL OR t >= p_at THEN
            hi := mid;
        ELSE
            lo := mid + 1;
        END IF;
    END LOOP;
    RETURN lo;
END
$$;
