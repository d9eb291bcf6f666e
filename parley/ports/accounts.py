"""Ports of the directory database: accounts, auth sessions, worker leases.

These live in the *directory* (the first PostgreSQL DSN), not on a
workspace's shard.  Every method raises ``StoreUnavailable`` when the
database cannot be reached, and then nothing was written.
"""

from __future__ import annotations

from typing import Protocol

from parley.model import RefreshOutcome, User


class UserStore(Protocol):
    """Accounts.  E-mail addresses are unique case-insensitively, compared
    after trimming."""

    async def create_user(self, user_id: int, email: str, display_name: str,
                          password_hash: str) -> User | None:
        """Insert the account; None (and nothing written) when the address is taken."""

    async def user_by_email(self, email: str) -> User | None:
        """The account with that address (case-insensitive), deactivated or not."""

    async def user(self, user_id: int) -> User | None:
        """The account, deactivated or not; None when there is none."""

    async def update_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace the stored hash (a rehash after a parameter change)."""


class SessionStore(Protocol):
    """Auth sessions, their refresh tokens and connect tickets.

    A revoked session, or one of a deactivated user, is never active again.
    Tickets and refresh tokens are stored only as hashes.
    """

    async def create_session(self, session_id: int, user_id: int) -> None:
        """Open a live session (one per login)."""

    async def session_active(self, session_id: int, user_id: int) -> bool:
        """True when the session is the user's, not revoked, and the user is active."""

    async def revoke_session(self, session_id: int, user_id: int) -> bool:
        """End the session for good; True when it was live until now."""

    async def create_ticket(self, ticket: str, user_id: int, session_id: int, workspace_id: int,
                            ttl_s: float) -> None:
        """Store a single-use gateway ticket valid for ``ttl_s`` seconds."""

    async def consume_ticket(self, ticket: str) -> tuple[int, int, int] | None:
        """(user id, session id, workspace id) of a valid ticket, atomically
        deleting it: a ticket works at most once, and an expired one never."""

    async def create_app_ticket(self, ticket: str, workspace_id: int, app_id: int,
                                ttl_s: float) -> None:
        """Store a single-use Socket Mode ticket (``apps.connections.open``)
        valid for ``ttl_s`` seconds."""

    async def consume_app_ticket(self, ticket: str) -> tuple[int, int] | None:
        """(workspace id, app id) of a valid Socket Mode ticket, atomically
        deleting it (and the expired ones): it works at most once."""

    async def create_refresh_token(self, token_hash: str, session_id: int, user_id: int,
                                   ttl_s: float) -> None:
        """The first refresh token of a session, valid for ``ttl_s`` seconds."""

    async def rotate_refresh_token(self, old_hash: str, new_hash: str,
                                   ttl_s: float) -> RefreshOutcome:
        """Atomically: a fresh, unused token of a live session is marked used
        and ``new_hash`` issued in its place ('rotated'); a used one revokes
        its session ('reused'); anything else is 'invalid'."""


class LeaseStore(Protocol):
    """Snowflake worker-id leases: at most one live holder per id (0..1023)."""

    async def lease_worker_id(self, holder: str, ttl_s: float) -> int | None:
        """Take the lowest free or expired id for ``holder`` for ``ttl_s``
        seconds; None when all are held.  Two callers never get the same id."""

    async def renew_worker_id(self, worker_id: int, holder: str, ttl_s: float) -> bool:
        """Extend the lease; False when ``holder`` no longer holds it (stop using the id)."""

    async def release_worker_id(self, worker_id: int, holder: str) -> None:
        """Give the id back (no-op when ``holder`` does not hold it)."""
