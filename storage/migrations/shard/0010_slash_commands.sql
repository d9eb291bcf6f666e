-- Slash commands (issue 15): the response_url of each invocation.  Only
-- the sha256 of the URL's random part is stored; a URL is good for
-- `max_uses` posts until `expires_at` (Slack's 5 posts in 30 minutes).
-- Which app answers a command is not stored: it is read from the
-- installed apps' manifests (parley/actions/commands.py says why).
CREATE TABLE command_responses (
    id              BIGINT PRIMARY KEY,
    workspace_id    BIGINT NOT NULL,
    app_id          BIGINT NOT NULL REFERENCES apps(id),
    channel_id      BIGINT NOT NULL REFERENCES channels(id),
    user_id         BIGINT NOT NULL,                 -- who invoked the command
    secret_hash     TEXT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    uses            INT NOT NULL DEFAULT 0,
    max_uses        INT NOT NULL
);
CREATE INDEX command_responses_expiry ON command_responses (expires_at);
