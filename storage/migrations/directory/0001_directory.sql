-- Directory database (the first DSN): accounts, sessions and where each
-- workspace lives.  Workspace data itself lives on the workspace's shard.

CREATE TABLE users (
    id              BIGINT PRIMARY KEY,              -- snowflake
    email           TEXT NOT NULL,
    email_norm      TEXT NOT NULL UNIQUE,            -- lower(trim(email)), the login key
    display_name    TEXT NOT NULL,
    password_hash   TEXT NOT NULL,                   -- argon2id (PHC string)
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    deactivated_at  TIMESTAMPTZ
);

-- One row per login.  Access tokens carry the session id (`sid`), so revoking
-- the session (log out) invalidates every token and socket issued under it.
CREATE TABLE auth_sessions (
    id              BIGINT PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

-- Workspace placement.  The consistent-hash ring decides the shard when a
-- workspace is created; the row records it so that changing the shard list
-- later never moves an existing workspace silently.
CREATE TABLE workspace_directory (
    workspace_id    BIGINT PRIMARY KEY,
    shard           TEXT NOT NULL,                   -- shard name (see storage/shards.py)
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Snowflake worker-id leases: no two live processes hold the same id.
CREATE TABLE worker_leases (
    worker_id       INTEGER PRIMARY KEY CHECK (worker_id BETWEEN 0 AND 1023),
    holder          TEXT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);

-- Single-use, short-lived tickets for browser gateway connections.
CREATE TABLE connect_tickets (
    ticket_hash     TEXT PRIMARY KEY,                -- sha256 of the ticket; the ticket itself is never stored
    user_id         BIGINT NOT NULL REFERENCES users(id),
    session_id      BIGINT NOT NULL REFERENCES auth_sessions(id),
    workspace_id    BIGINT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);
