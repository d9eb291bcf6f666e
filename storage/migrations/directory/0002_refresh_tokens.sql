-- Rotating refresh tokens (issue 5).  One auth session is one token family:
-- each refresh marks the presented token used and issues its successor.  A
-- used token presented again means it was stolen (or replayed), so the whole
-- session is revoked: both the thief and the victim must log in again.
CREATE TABLE refresh_tokens (
    token_hash      TEXT PRIMARY KEY,                -- sha256 of the token; the token is never stored
    session_id      BIGINT NOT NULL REFERENCES auth_sessions(id),
    user_id         BIGINT NOT NULL REFERENCES users(id),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ                      -- set when rotated; a second use is reuse
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
