-- Failing apps (issue 15): an app whose event deliveries mostly fail for a
-- sustained period has its event subscription turned off, as Slack does
-- (parley/actions/app_health.py has the rule).
--
-- Per-minute counts of delivery tries, per app.  Dispatchers count in
-- memory and add their counts every few seconds (an upsert that sums, so
-- several processes' counts of one minute add up); the check reads the
-- last window's rows.  Rows past the window are pruned by the check.  No
-- foreign key: these are counters, dropped with no harm (an app's row is
-- never deleted anyway).
CREATE TABLE app_delivery_stats (
    app_id          BIGINT NOT NULL,
    workspace_id    BIGINT NOT NULL,
    minute          TIMESTAMPTZ NOT NULL,            -- the start of the minute the tries were made in
    ok              INT NOT NULL DEFAULT 0,          -- tries the app answered (2xx, or 404: no listener)
    failed          INT NOT NULL DEFAULT 0,          -- timeouts, refused connections, other answers
    PRIMARY KEY (app_id, minute)
);
CREATE INDEX app_delivery_stats_minute ON app_delivery_stats (minute);

-- Set when the check turned the app's events off (the store's claims then
-- skip it, and no outbox row is written for it); cleared when an admin
-- turns them on again (REST .../events/enable, or setting the request URL).
ALTER TABLE apps ADD COLUMN events_disabled_at TIMESTAMPTZ;
ALTER TABLE apps ADD COLUMN events_disabled_reason TEXT;  -- for people: what the counts were
