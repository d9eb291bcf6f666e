"""Pieces shared by the PostgreSQL store modules (``postgres.py`` and the
``pg_*.py`` query mixins it is composed of): connection-error translation,
row converters and the typed view of ``PgDatabase`` the mixins rely on.

Rules: every query of a mixin is workspace-scoped (it takes ``workspace_id``
and filters by it), and every failure to reach the database surfaces as
``StoreUnavailable``, never as an asyncpg exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

import asyncpg

from storage.interfaces import Channel, Member, Message, StoreUnavailable

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
    """What the query mixins need from ``PgDatabase`` (their self type)."""

    @property
    def directory(self) -> asyncpg.Pool: ...

    async def _call(self, fn: Any, *args: Any) -> Any: ...

    async def _shard_pool(self, workspace_id: int) -> asyncpg.Pool | None: ...

    async def channel(self, workspace_id: int, channel_id: int) -> Channel | None: ...


async def shard_pool(db: Pools, workspace_id: int) -> asyncpg.Pool:
    """The workspace's shard pool; the caller has checked the workspace exists
    (actions only reach a store method after ``require_member``)."""
    pool = await db._shard_pool(workspace_id)
    if pool is None:
        raise LookupError(f"workspace {workspace_id} has no shard")
    return pool
