"""Pieces shared by the PostgreSQL stores (``postgres.py`` and the
``pg_*.py`` classes, one per port): connection-error translation, row
converters, and ``PgPart``, the base through which every store class shares
``PgDatabase``'s pools and placement cache.

Rules: every query of a shard store is workspace-scoped (it takes ``workspace_id``
and filters by it), and every failure to reach the database surfaces as
``StoreUnavailable``, never as an asyncpg exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import asyncpg

from parley.model import Channel, Member, Message, StoreUnavailable
from storage.shards import HashRing

# Errors that mean "the database is not there right now" rather than a bug.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    TimeoutError,
)

MESSAGE_COLUMNS = (
    "m.id, m.channel_id, m.seq, m.workspace_id, m.user_id, m.text, m.client_msg_id, "
    "m.thread_root_id, m.created_at, m.edited_at, m.deleted_at, m.also_in_channel"
)


def message_from_row(r: asyncpg.Record) -> Message:
    return Message(
        id=r["id"], channel_id=r["channel_id"], seq=r["seq"], workspace_id=r["workspace_id"],
        user_id=r["user_id"], text=r["text"] if r["deleted_at"] is None else "",
        client_msg_id=r["client_msg_id"], thread_root_id=r["thread_root_id"],
        created_at=r["created_at"], edited_at=r["edited_at"], deleted=r["deleted_at"] is not None,
        also_in_channel=r["also_in_channel"],
    )


def channel_from_row(r: asyncpg.Record) -> Channel:
    return Channel(
        id=r["id"], workspace_id=r["workspace_id"], kind=r["kind"], name=r["name"],
        topic=r["topic"], purpose=r["purpose"], created_by=r["created_by"],
        archived=r["archived_at"] is not None, last_seq=r["last_seq"],
    )


def member_from_row(r: asyncpg.Record) -> Member:
    return Member(workspace_id=r["workspace_id"], user_id=r["user_id"], role=r["role"],
                  display_name=r["display_name"], active=r["deactivated_at"] is None,
                  is_bot=r["is_bot"])


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction; connection failures become StoreUnavailable."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            yield conn
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc


class Pools(Protocol):
    """What ``PgPart`` needs from ``PgDatabase``: pools by shard, the
    directory, placement, and connection-error translation."""

    pools: dict[str, asyncpg.Pool]

    @property
    def directory(self) -> asyncpg.Pool: ...

    @property
    def ring(self) -> HashRing: ...

    async def _call(self, fn: Any, *args: Any) -> Any: ...

    async def _shard_pool(self, workspace_id: int) -> asyncpg.Pool | None: ...

    async def shard_of(self, workspace_id: int) -> str | None: ...

    def cached_shard(self, workspace_id: int) -> str | None: ...

    def remember_shard(self, workspace_id: int, shard: str) -> None: ...


class PgPart:
    """Base of the per-port store classes: they share one ``PgDatabase``
    (pools, placement cache) and nothing else, so each can be read, tested
    and replaced on its own."""

    __slots__ = ("_db",)

    def __init__(self, db: Pools) -> None:
        self._db = db

    @property
    def directory(self) -> asyncpg.Pool:
        return self._db.directory

    @property
    def pools(self) -> dict[str, asyncpg.Pool]:
        return self._db.pools

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await self._db._call(fn, *args)

    async def _shard_pool(self, workspace_id: int) -> asyncpg.Pool | None:
        return await self._db._shard_pool(workspace_id)


async def insert_channel(conn: asyncpg.Connection, channel_id: int, workspace_id: int,
                         kind: str, name: str | None, creator: int,
                         members: Sequence[int]) -> None:
    """A channel, its seq counter (at 0) and its first members, inside the
    caller's transaction: a channel never exists without its counter row,
    which the writer locks to allocate seqs."""
    await conn.execute(
        """INSERT INTO channels (id, workspace_id, kind, name, created_by)
           VALUES ($1, $2, $3, $4, $5)""", channel_id, workspace_id, kind, name, creator)
    await conn.execute("INSERT INTO channel_counters (channel_id) VALUES ($1)", channel_id)
    await conn.executemany(
        """INSERT INTO channel_members (channel_id, user_id, workspace_id)
           VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
        [(channel_id, uid, workspace_id) for uid in members])


async def shard_pool(db: PgPart, workspace_id: int) -> asyncpg.Pool:
    """The workspace's shard pool; the caller has checked the workspace exists
    (actions only reach a store method after ``require_member``)."""
    pool = await db._shard_pool(workspace_id)
    if pool is None:
        raise LookupError(f"workspace {workspace_id} has no shard")
    return pool
