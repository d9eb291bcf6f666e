-- Socket Mode (issue 15): apps.connections.open hands an app a single-use
-- ticket for the gateway's /link/ upgrade.  Like connect_tickets, only the
-- sha256 is stored, and a ticket is deleted when it is used.
CREATE TABLE app_link_tickets (
    ticket_hash     TEXT PRIMARY KEY,
    workspace_id    BIGINT NOT NULL,
    app_id          BIGINT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX app_link_tickets_expiry ON app_link_tickets (expires_at);
