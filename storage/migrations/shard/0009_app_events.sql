-- The Events API (issue 15): delivery derived from the committed message
-- stream.  No outbox row is written when a message commits (the writer's
-- batch function is untouched); instead each (app, channel) pair keeps a
-- cursor, the position of the last event that got a final answer, and a
-- dispatcher reads the channel's messages after it (docs/architecture.md,
-- "Events to apps", says why).
--
-- Positions: each message of seq s yields up to two events, its `message`
-- event at position 2s and its `app_mention` event at 2s + 1, so a cursor
-- is one number and a message whose first event went out but whose second
-- did not resumes at the second.
CREATE TABLE app_event_cursors (
    app_id          BIGINT NOT NULL REFERENCES apps(id),
    channel_id      BIGINT NOT NULL REFERENCES channels(id),
    workspace_id    BIGINT NOT NULL,
    -- The bot's channel_members.joined_at this cursor was started for; a
    -- different one (the bot left and came back) restarts the cursor at the
    -- join, so nothing posted while it was away is delivered.
    joined_at       TIMESTAMPTZ NOT NULL,
    delivered       BIGINT NOT NULL,                 -- position of the last event with a final answer
    attempts        INT NOT NULL DEFAULT 0,          -- failed tries of the event after it
    retry_reason    TEXT,                            -- of the last failed try (X-Slack-Retry-Reason)
    not_before      TIMESTAMPTZ,                     -- the next try waits until then
    -- The claim: a dispatcher owns the pair until leased_until (short
    -- statements, no transaction held across an HTTP request).
    lease_owner     TEXT,
    leased_until    TIMESTAMPTZ,
    PRIMARY KEY (app_id, channel_id)
);

-- The request URL that answered url_verification (events go only there).
ALTER TABLE apps ADD COLUMN events_verified_url TEXT;
-- The last URL that failed it, and when (retried after a while, at once for a new URL).
ALTER TABLE apps ADD COLUMN events_verify_failed_url TEXT;
ALTER TABLE apps ADD COLUMN events_verify_failed_at TIMESTAMPTZ;

-- Events that are not messages have no ordered log to derive them from
-- (reactions and memberships are current state), so they use the other
-- design: an outbox row per subscribed app, written in the transaction of
-- the change that caused it (so a crash neither loses nor invents one),
-- drained by the same dispatchers with the same leases, deleted after a
-- final answer.  Only apps that would get the event have rows: installed,
-- verified, subscribed, and the bot a member of the channel.  Written now by
-- reactions (reaction_added); these paths are not the message hot path.
CREATE TABLE app_event_outbox (
    id              BIGSERIAL PRIMARY KEY,           -- names the event (event_id)
    workspace_id    BIGINT NOT NULL,
    app_id          BIGINT NOT NULL REFERENCES apps(id),
    channel_id      BIGINT NOT NULL,
    kind            TEXT NOT NULL,                   -- the event type: 'reaction_added'
    payload         JSONB NOT NULL,                  -- Parley's facts; the dispatcher shapes them
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INT NOT NULL DEFAULT 0,
    retry_reason    TEXT,
    not_before      TIMESTAMPTZ,
    lease_owner     TEXT,
    leased_until    TIMESTAMPTZ
);
