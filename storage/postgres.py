"""PostgreSQL storage through asyncpg: the source of truth.

Layout: the first DSN is also the *directory* (accounts, sessions, workspace
placement, worker leases); every DSN is a *shard* holding whole workspaces.
``PgDatabase`` owns one pool per DSN and routes each workspace to its shard.

Every workspace-scoped query takes ``workspace_id`` and filters by it: that
is the tenant boundary, and no query here joins across workspaces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import asyncpg

from storage.interfaces import Channel, Member, Message, StoreUnavailable, User, Workspace
from storage.migrate import apply_migrations, pending_migrations
from storage.pg_accounts import AccountQueries
from storage.pg_channels import ChannelQueries
from storage.pg_common import (
    CONNECTION_ERRORS as CONNECTION_ERRORS,  # re-exported: the writer uses it
)
from storage.pg_common import (
    MESSAGE_COLUMNS,
    channel_from_row,
    member_from_row,
    message_from_row,
)
from storage.pg_files import FileQueries
from storage.pg_messages import MessageQueries
from storage.shards import HashRing, shard_name

_WORKER_LEASE_LOCK_KEY = 0x57524B52  # "WRKR"
HISTORY_PAGE_MAX = 1000  # rows one history query may return (the API pages at <= 200)

_MESSAGE_COLUMNS = MESSAGE_COLUMNS
_channel = channel_from_row
_member = member_from_row


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


class PgDatabase(AccountQueries, ChannelQueries, MessageQueries, FileQueries):
    """Pools for the directory and every shard, plus the queries on them."""

    def __init__(self, dsns: Sequence[str], *, pool_max: int = 16) -> None:
        if not dsns:
            raise ValueError("at least one PostgreSQL DSN is required")
        self.dsns = list(dsns)
        self.shard_names = [shard_name(i) for i in range(len(self.dsns))]
        self.ring = HashRing(self.shard_names)
        self._pool_max = pool_max
        self.pools: dict[str, asyncpg.Pool] = {}
        # workspace id -> shard; placement never changes, so caching is safe.
        self._placement: dict[int, str] = {}

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        for name, dsn in zip(self.shard_names, self.dsns, strict=True):
            self.pools[name] = await asyncpg.create_pool(
                dsn, min_size=1, max_size=self._pool_max, command_timeout=30)

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        for i, name in enumerate(self.shard_names):
            kinds = ("directory", "shard") if i == 0 else ("shard",)
            async with self.pools[name].acquire() as conn:
                applied += [f"{name}:{a}" for a in await apply_migrations(conn, kinds)]
        return applied

    async def pending(self) -> list[str]:
        out: list[str] = []
        for i, name in enumerate(self.shard_names):
            kinds = ("directory", "shard") if i == 0 else ("shard",)
            async with self.pools[name].acquire() as conn:
                out += [f"{name}:{p}" for p in await pending_migrations(conn, kinds)]
        return out

    async def ping(self) -> bool:
        try:
            return not await self.pending()
        except (*CONNECTION_ERRORS, StoreUnavailable, asyncpg.PostgresError):
            return False

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()

    @property
    def directory(self) -> asyncpg.Pool:
        return self.pools[self.shard_names[0]]

    def pool(self, shard: str) -> asyncpg.Pool:
        return self.pools[shard]

    async def shard_of(self, workspace_id: int) -> str | None:
        shard = self._placement.get(workspace_id)
        if shard is None:
            shard = await self._call(
                self.directory.fetchval,
                "SELECT shard FROM workspace_directory WHERE workspace_id = $1", workspace_id)
            if shard is not None:
                self._placement[workspace_id] = shard
        return shard

    def cached_shard(self, workspace_id: int) -> str | None:
        return self._placement.get(workspace_id)

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await fn(*args)
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    async def _shard_pool(self, workspace_id: int) -> asyncpg.Pool | None:
        shard = await self.shard_of(workspace_id)
        return None if shard is None else self.pools[shard]

    # -- accounts (directory) -----------------------------------------------

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
        return None if row is None else self._user(row)

    @staticmethod
    def _user(r: asyncpg.Record) -> User:
        return User(id=r["id"], email=r["email"], display_name=r["display_name"],
                    password_hash=r["password_hash"], deactivated=r["deactivated_at"] is not None,
                    is_bot=r["is_bot"])

    async def user_by_email(self, email: str) -> User | None:
        row = await self._call(
            self.directory.fetchrow,
            """SELECT id, email, display_name, password_hash, deactivated_at, is_bot
               FROM users WHERE email_norm = lower(trim($1))""", email)
        return None if row is None else self._user(row)

    async def user(self, user_id: int) -> User | None:
        row = await self._call(
            self.directory.fetchrow,
            """SELECT id, email, display_name, password_hash, deactivated_at, is_bot
               FROM users WHERE id = $1""", user_id)
        return None if row is None else self._user(row)

    async def update_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._call(self.directory.execute,
                         "UPDATE users SET password_hash = $2 WHERE id = $1",
                         user_id, password_hash)

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

    # -- worker-id leases (directory) ---------------------------------------

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

    # -- workspaces ---------------------------------------------------------

    async def create_workspace(self, workspace_id: int, name: str, owner: User,
                               general_channel_id: int) -> Workspace:
        """Place the workspace on its shard, make ``owner`` its owner and create
        #general with the owner in it."""
        shard = self.ring.shard_for(workspace_id)
        await self._call(self.directory.execute,
                         "INSERT INTO workspace_directory (workspace_id, shard) VALUES ($1, $2)",
                         workspace_id, shard)
        self._placement[workspace_id] = shard
        pool = self.pools[shard]
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO workspaces (id, name, created_by) VALUES ($1, $2, $3)",
                    workspace_id, name, owner.id)
                await conn.execute(
                    """INSERT INTO workspace_members (workspace_id, user_id, role, display_name)
                       VALUES ($1, $2, 'owner', $3)""", workspace_id, owner.id, owner.display_name)
                await self._insert_channel(conn, general_channel_id, workspace_id, "public",
                                           "general", owner.id, [owner.id])
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return Workspace(id=workspace_id, name=name, created_by=owner.id, shard=shard)

    async def workspace(self, workspace_id: int) -> Workspace | None:
        shard = await self.shard_of(workspace_id)
        if shard is None:
            return None
        row = await self._call(self.pools[shard].fetchrow,
                               "SELECT id, name, created_by FROM workspaces WHERE id = $1",
                               workspace_id)
        if row is None:
            return None
        return Workspace(id=row["id"], name=row["name"], created_by=row["created_by"], shard=shard)

    async def workspaces_of(self, user_id: int) -> list[Workspace]:
        out: list[Workspace] = []
        for shard, pool in self.pools.items():
            rows = await self._call(
                pool.fetch,
                """SELECT w.id, w.name, w.created_by FROM workspaces w
                   JOIN workspace_members m ON m.workspace_id = w.id
                   WHERE m.user_id = $1 AND m.deactivated_at IS NULL ORDER BY w.id""", user_id)
            out += [Workspace(id=r["id"], name=r["name"], created_by=r["created_by"], shard=shard)
                    for r in rows]
        return out

    async def member(self, workspace_id: int, user_id: int) -> Member | None:
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return None
        row = await self._call(
            pool.fetchrow,
            """SELECT workspace_id, user_id, role, display_name, deactivated_at, is_bot
               FROM workspace_members WHERE workspace_id = $1 AND user_id = $2""",
            workspace_id, user_id)
        return None if row is None else _member(row)

    async def add_member(self, workspace_id: int, user: User, role: str) -> Member:
        """Add ``user`` (or reactivate), joining them to #general."""
        pool = await self._shard_pool(workspace_id)
        assert pool is not None, "workspace must exist"
        try:
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    """INSERT INTO workspace_members (workspace_id, user_id, role, display_name)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (workspace_id, user_id) DO UPDATE
                       SET deactivated_at = NULL, ended_reason = NULL
                       RETURNING workspace_id, user_id, role, display_name, deactivated_at,
                                 is_bot""",
                    workspace_id, user.id, role, user.display_name)
                await conn.execute(
                    """INSERT INTO channel_members (channel_id, user_id, workspace_id)
                       SELECT id, $2, $1 FROM channels
                       WHERE workspace_id = $1 AND name = 'general'
                       ON CONFLICT DO NOTHING""", workspace_id, user.id)
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return _member(row)

    # -- channels -------------------------------------------------------------

    @staticmethod
    async def _insert_channel(conn: asyncpg.Connection, channel_id: int, workspace_id: int,
                              kind: str, name: str | None, creator: int,
                              members: Sequence[int]) -> None:
        await conn.execute(
            """INSERT INTO channels (id, workspace_id, kind, name, created_by)
               VALUES ($1, $2, $3, $4, $5)""", channel_id, workspace_id, kind, name, creator)
        await conn.execute("INSERT INTO channel_counters (channel_id) VALUES ($1)", channel_id)
        await conn.executemany(
            """INSERT INTO channel_members (channel_id, user_id, workspace_id)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
            [(channel_id, uid, workspace_id) for uid in members])

    async def create_channel(self, channel_id: int, workspace_id: int, kind: str, name: str,
                             creator: int) -> Channel | None:
        """None when the name is taken in the workspace."""
        pool = await self._shard_pool(workspace_id)
        assert pool is not None
        try:
            async with pool.acquire() as conn, conn.transaction():
                await self._insert_channel(conn, channel_id, workspace_id, kind, name, creator,
                                           [creator])
        except asyncpg.exceptions.UniqueViolationError:
            return None
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return await self.channel(workspace_id, channel_id)

    async def channel(self, workspace_id: int, channel_id: int) -> Channel | None:
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return None
        row = await self._call(
            pool.fetchrow,
            """SELECT c.*, k.last_seq FROM channels c JOIN channel_counters k ON k.channel_id = c.id
               WHERE c.id = $1 AND c.workspace_id = $2""", channel_id, workspace_id)
        return None if row is None else _channel(row)

    async def is_channel_member(self, workspace_id: int, channel_id: int, user_id: int) -> bool:
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return False
        return bool(await self._call(
            pool.fetchval,
            """SELECT EXISTS (SELECT 1 FROM channel_members
               WHERE channel_id = $1 AND user_id = $2 AND workspace_id = $3)""",
            channel_id, user_id, workspace_id))

    async def join_channel(self, workspace_id: int, channel_id: int, user_id: int) -> bool:
        """True when the user was added (False: already a member)."""
        pool = await self._shard_pool(workspace_id)
        assert pool is not None
        status = await self._call(
            pool.execute,
            """INSERT INTO channel_members (channel_id, user_id, workspace_id)
               VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""", channel_id, user_id, workspace_id)
        return bool(status == "INSERT 0 1")

    async def user_channels(self, workspace_id: int, user_id: int) -> list[tuple[Channel, int]]:
        """(channel, last_read_seq) for every channel the user is in."""
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return []
        rows = await self._call(
            pool.fetch,
            """SELECT c.*, k.last_seq, m.last_read_seq FROM channel_members m
               JOIN channels c ON c.id = m.channel_id
               JOIN channel_counters k ON k.channel_id = c.id
               WHERE m.workspace_id = $1 AND m.user_id = $2 ORDER BY c.id""",
            workspace_id, user_id)
        return [(_channel(r), r["last_read_seq"]) for r in rows]

    async def list_public_channels(self, workspace_id: int, after_id: int,
                                   limit: int) -> list[Channel]:
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return []
        rows = await self._call(
            pool.fetch,
            """SELECT c.*, k.last_seq FROM channels c JOIN channel_counters k ON k.channel_id = c.id
               WHERE c.workspace_id = $1 AND c.kind = 'public' AND c.id > $2
               ORDER BY c.id LIMIT $3""", workspace_id, after_id, limit)
        return [_channel(r) for r in rows]

    # -- history --------------------------------------------------------------

    async def history(self, workspace_id: int, channel_id: int, *, before: int | None = None,
                      after: int | None = None, limit: int = 50) -> list[Message]:
        """A page of messages in seq order, by keyset on (channel_id, seq):
        ``after`` gives seq > after ascending; otherwise seq < before (or the
        newest) -- both returned oldest first.  One index scan per page."""
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return []
        limit = max(1, min(limit, HISTORY_PAGE_MAX))
        if after is not None:
            rows = await self._call(
                pool.fetch,
                f"""SELECT {_MESSAGE_COLUMNS} FROM messages m
                    WHERE m.channel_id = $1 AND m.workspace_id = $2 AND m.seq > $3
                    ORDER BY m.seq LIMIT $4""", channel_id, workspace_id, after, limit)
        else:
            rows = await self._call(
                pool.fetch,
                f"""SELECT {_MESSAGE_COLUMNS} FROM messages m
                    WHERE m.channel_id = $1 AND m.workspace_id = $2 AND m.seq < $3
                    ORDER BY m.seq DESC LIMIT $4""",
                channel_id, workspace_id, before if before is not None else 2**62, limit)
            rows = list(reversed(rows))
        return [message_from_row(r) for r in rows]

    async def messages_by_idempotency(
            self, shard: str, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Message]:
        rows = await self._call(
            self.pools[shard].fetch,
            f"""SELECT {_MESSAGE_COLUMNS} FROM message_idempotency i
                JOIN messages m ON m.id = i.message_id
                JOIN unnest($1::bigint[], $2::text[]) AS k(user_id, client_msg_id)
                  ON k.user_id = i.user_id AND k.client_msg_id = i.client_msg_id""",
            [k[0] for k in keys], [k[1] for k in keys])
        return {(r["user_id"], r["client_msg_id"]): message_from_row(r) for r in rows}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
