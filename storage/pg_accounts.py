"""The directory's ports on PostgreSQL: accounts, auth sessions with their
refresh tokens and connect tickets, and snowflake worker-id leases.

Invariants: a refresh token rotates at most once (the row is locked while it
rotates); presenting a used one revokes its session in the same transaction.
A ticket is deleted by the statement that redeems it, so it works once.
Worker ids are leased under an advisory transaction lock, so two processes
never take the same id.
"""

from __future__ import annotations

import hashlib

import asyncpg

from parley.model import RefreshOutcome, StoreUnavailable, User
from storage.pg_common import CONNECTION_ERRORS, PgPart, transaction

_WORKER_LEASE_LOCK_KEY = 0x57524B52  # "WRKR"


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _user(r: asyncpg.Record) -> User:
    return User(id=r["id"], email=r["email"], display_name=r["display_name"],
                password_hash=r["password_hash"], deactivated=r["deactivated_at"] is not None,
                is_bot=r["is_bot"])


class PgUsers(PgPart):
    """``UserStore`` on PostgreSQL."""

    async def create_user(self, user_id: int, email: str, display_name: str,
                          password_hash: str) -> User | None:
        """None when the e-mail address is taken."""
        row = await self._call(
            self.directory.fetchrow,
            """INSERT INTO users (id, email, email_norm, display_name, password_hash)
               VALUES ($1, $2, lower(trim($2)), $3, $4)
               ON CONFLICT (email_norm) DO NOTHING
               RETURNING id, email, display_name, password_hash, deactivated_at, is_bot""",
            user_id, email, display_name, password_hash)
        return None if row is None else _user(row)

    async def user_by_email(self, email: str) -> User | None:
        row = await self._call(
            self.directory.fetchrow,
            """SELECT id, email, display_name, password_hash, deactivated_at, is_bot
               FROM users WHERE email_norm = lower(trim($1))""", email)
        return None if row is None else _user(row)

    async def user(self, user_id: int) -> User | None:
        row = await self._call(
            self.directory.fetchrow,
            """SELECT id, email, display_name, password_hash, deactivated_at, is_bot
               FROM users WHERE id = $1""", user_id)
        return None if row is None else _user(row)

    async def update_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._call(self.directory.execute,
                         "UPDATE users SET password_hash = $2 WHERE id = $1",
                         user_id, password_hash)



class PgSessions(PgPart):
    """``SessionStore`` on PostgreSQL."""

    async def create_session(self, session_id: int, user_id: int) -> None:
        await self._call(self.directory.execute,
                         "INSERT INTO auth_sessions (id, user_id) VALUES ($1, $2)",
                         session_id, user_id)

    async def session_active(self, session_id: int, user_id: int) -> bool:
        return bool(await self._call(
            self.directory.fetchval,
            """SELECT EXISTS (SELECT 1 FROM auth_sessions s JOIN users u ON u.id = s.user_id
               WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL
                 AND u.deactivated_at IS NULL)""", session_id, user_id))

    async def revoke_session(self, session_id: int, user_id: int) -> bool:
        status = await self._call(
            self.directory.execute,
            """UPDATE auth_sessions SET revoked_at = now()
               WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL""", session_id, user_id)
        return bool(status != "UPDATE 0")

    async def create_ticket(self, ticket: str, user_id: int, session_id: int, workspace_id: int,
                            ttl_s: float) -> None:
        await self._call(
            self.directory.execute,
            """INSERT INTO connect_tickets
                   (ticket_hash, user_id, session_id, workspace_id, expires_at)
               VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))""",
            ticket_hash(ticket), user_id, session_id, workspace_id, ttl_s)

    async def consume_ticket(self, ticket: str) -> tuple[int, int, int] | None:
        """(user_id, session_id, workspace_id) for a valid ticket, deleting it:
        a ticket works once.  Expired tickets are deleted and refused."""
        row = await self._call(
            self.directory.fetchrow,
            """DELETE FROM connect_tickets WHERE ticket_hash = $1
               RETURNING user_id, session_id, workspace_id, expires_at > now() AS valid""",
            ticket_hash(ticket))
        if row is None or not row["valid"]:
            return None
        return row["user_id"], row["session_id"], row["workspace_id"]

    async def create_app_ticket(self, ticket: str, workspace_id: int, app_id: int,
                                ttl_s: float) -> None:
        await self._call(
            self.directory.execute,
            """INSERT INTO app_link_tickets (ticket_hash, workspace_id, app_id, expires_at)
               VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
            ticket_hash(ticket), workspace_id, app_id, ttl_s)

    async def consume_app_ticket(self, ticket: str) -> tuple[int, int] | None:
        # Expired tickets of apps that never connected go with the next use.
        row = await self._call(
            self.directory.fetchrow,
            """WITH gone AS (DELETE FROM app_link_tickets
                             WHERE expires_at < now() - interval '1 hour')
               DELETE FROM app_link_tickets WHERE ticket_hash = $1
               RETURNING workspace_id, app_id, expires_at > now() AS valid""",
            ticket_hash(ticket))
        if row is None or not row["valid"]:
            return None
        return row["workspace_id"], row["app_id"]

    async def create_refresh_token(self, token_hash: str, session_id: int, user_id: int,
                                   ttl_s: float) -> None:
        await self._call(
            self.directory.execute,
            """INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at)
               VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
            token_hash, session_id, user_id, ttl_s)

    async def rotate_refresh_token(self, old_hash: str, new_hash: str,
                                   ttl_s: float) -> RefreshOutcome:
        async with transaction(self.directory) as conn:
            row = await conn.fetchrow(
                """SELECT t.session_id, t.user_id, t.used_at, t.expires_at > now() AS fresh,
                          s.revoked_at IS NULL AND u.deactivated_at IS NULL AS live
                   FROM refresh_tokens t
                   JOIN auth_sessions s ON s.id = t.session_id
                   JOIN users u ON u.id = t.user_id
                   WHERE t.token_hash = $1 FOR UPDATE OF t""", old_hash)
            if row is None:
                return RefreshOutcome("invalid")
            if row["used_at"] is not None:
                await conn.execute(
                    """UPDATE auth_sessions SET revoked_at = now()
                       WHERE id = $1 AND revoked_at IS NULL""", row["session_id"])
                return RefreshOutcome("reused", row["user_id"], row["session_id"])
            if not row["fresh"] or not row["live"]:
                return RefreshOutcome("invalid")
            await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1",
                               old_hash)
            await conn.execute(
                """INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at)
                   VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
                new_hash, row["session_id"], row["user_id"], ttl_s)
            return RefreshOutcome("rotated", row["user_id"], row["session_id"])



class PgLeases(PgPart):
    """``LeaseStore`` on PostgreSQL."""

    async def lease_worker_id(self, holder: str, ttl_s: float) -> int | None:
        """Take the lowest free or expired worker id for ``holder``.

        None when all 1024 are held.  Leasers serialise on an advisory
        transaction lock, so two processes never take the same id.
        """
        try:
            async with self.directory.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _WORKER_LEASE_LOCK_KEY)
                worker_id = await conn.fetchval(
                    """SELECT g FROM generate_series(0, 1023) g
                       WHERE NOT EXISTS (SELECT 1 FROM worker_leases l
                                         WHERE l.worker_id = g AND l.expires_at > now())
                       ORDER BY g LIMIT 1""")
                if worker_id is None:
                    return None
                await conn.execute(
                    """INSERT INTO worker_leases (worker_id, holder, expires_at)
                       VALUES ($1, $2, now() + make_interval(secs => $3))
                       ON CONFLICT (worker_id) DO UPDATE
                       SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at""",
                    worker_id, holder, ttl_s)
                return int(worker_id)
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def renew_worker_id(self, worker_id: int, holder: str, ttl_s: float) -> bool:
        status = await self._call(
            self.directory.execute,
            """UPDATE worker_leases SET expires_at = now() + make_interval(secs => $3)
               WHERE worker_id = $1 AND holder = $2""", worker_id, holder, ttl_s)
        return bool(status == "UPDATE 1")

    async def release_worker_id(self, worker_id: int, holder: str) -> None:
        await self._call(self.directory.execute,
                         "DELETE FROM worker_leases WHERE worker_id = $1 AND holder = $2",
                         worker_id, holder)
