"""The workspace ports on PostgreSQL: placement (directory), workspaces,
member lists, roles, membership endings and invites (the workspace's shard).

Invariants: a workspace's placement is written before its rows and never
changes, so a cached placement is never stale.  Ending a workspace
membership removes every channel membership of the user in that workspace
in the same transaction, so the group-commit writer (which checks channel
membership) refuses their posts from then on.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from parley.model import (
    Invite,
    InviteOutcome,
    Member,
    StoreUnavailable,
    User,
    Workspace,
)
from storage.pg_app_events import members_outbox
from storage.pg_common import (
    CONNECTION_ERRORS,
    PgPart,
    insert_channel,
    member_from_row,
    shard_pool,
    transaction,
)

_MEMBER_COLUMNS = "workspace_id, user_id, role, display_name, deactivated_at, is_bot"
_INVITE_COLUMNS = ("id, workspace_id, role, created_by, created_at, expires_at, max_uses, uses, "
                   "revoked_at")


def _invite(r: Any) -> Invite:
    return Invite(id=r["id"], workspace_id=r["workspace_id"], role=r["role"],
                  created_by=r["created_by"], created_at=r["created_at"],
                  expires_at=r["expires_at"], max_uses=r["max_uses"], uses=r["uses"],
                  revoked=r["revoked_at"] is not None)


class PgWorkspaces(PgPart):
    """``WorkspaceStore`` on PostgreSQL; placement is cached in ``PgDatabase``."""

    async def shard_of(self, workspace_id: int) -> str | None:
        return await self._db.shard_of(workspace_id)

    def cached_shard(self, workspace_id: int) -> str | None:
        return self._db.cached_shard(workspace_id)

    async def create_workspace(self, workspace_id: int, name: str, owner: User,
                               general_channel_id: int) -> Workspace:
        """Place the workspace on its shard, make ``owner`` its owner and create
        #general with the owner in it."""
        shard = self._db.ring.shard_for(workspace_id)
        await self._call(self.directory.execute,
                         "INSERT INTO workspace_directory (workspace_id, shard) VALUES ($1, $2)",
                         workspace_id, shard)
        self._db.remember_shard(workspace_id, shard)
        pool = self.pools[shard]
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO workspaces (id, name, created_by) VALUES ($1, $2, $3)",
                    workspace_id, name, owner.id)
                await conn.execute(
                    """INSERT INTO workspace_members (workspace_id, user_id, role, display_name)
                       VALUES ($1, $2, 'owner', $3)""", workspace_id, owner.id, owner.display_name)
                await insert_channel(conn, general_channel_id, workspace_id, "public",
                                           "general", owner.id, [owner.id])
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return Workspace(id=workspace_id, name=name, created_by=owner.id, shard=shard)

    async def workspace(self, workspace_id: int) -> Workspace | None:
        shard = await self._db.shard_of(workspace_id)
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



class PgMembers(PgPart):
    """``MemberStore`` on PostgreSQL."""

    async def member(self, workspace_id: int, user_id: int) -> Member | None:
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return None
        row = await self._call(
            pool.fetchrow,
            """SELECT workspace_id, user_id, role, display_name, deactivated_at, is_bot
               FROM workspace_members WHERE workspace_id = $1 AND user_id = $2""",
            workspace_id, user_id)
        return None if row is None else member_from_row(row)

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
                await _join_general(conn, workspace_id, user.id)
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc
        return member_from_row(row)

    async def members_page(self, workspace_id: int, after_user_id: int,
                           limit: int) -> list[Member]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {_MEMBER_COLUMNS} FROM workspace_members
                WHERE workspace_id = $1 AND user_id > $2 AND deactivated_at IS NULL
                ORDER BY user_id LIMIT $3""", workspace_id, after_user_id, limit)  # noqa: S608
        return [member_from_row(r) for r in rows]

    async def set_role(self, workspace_id: int, user_id: int, role: str) -> Member | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""UPDATE workspace_members SET role = $3
                WHERE workspace_id = $1 AND user_id = $2 AND deactivated_at IS NULL
                RETURNING {_MEMBER_COLUMNS}""", workspace_id, user_id, role)  # noqa: S608
        return None if row is None else member_from_row(row)

    async def active_members_among(self, workspace_id: int,
                                   user_ids: list[int]) -> set[int]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT user_id FROM workspace_members
               WHERE workspace_id = $1 AND user_id = ANY($2::bigint[])
                 AND deactivated_at IS NULL""", workspace_id, user_ids)
        return {int(r["user_id"]) for r in rows}

    async def end_membership(self, workspace_id: int, user_id: int,
                             reason: str) -> list[int] | None:
        """End an active membership ('left' | 'deactivated'); returns the ids
        of the channels the user was removed from, or None if not active."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            ended = await conn.fetchval(
                """UPDATE workspace_members SET deactivated_at = now(), ended_reason = $3
                   WHERE workspace_id = $1 AND user_id = $2 AND deactivated_at IS NULL
                   RETURNING user_id""", workspace_id, user_id, reason)
            if ended is None:
                return None
            rows = await conn.fetch(
                """DELETE FROM channel_members WHERE workspace_id = $1 AND user_id = $2
                   RETURNING channel_id""", workspace_id, user_id)
            await conn.execute(
                "DELETE FROM thread_follows WHERE workspace_id = $1 AND user_id = $2",
                workspace_id, user_id)
            for r in rows:  # the Events API's outbox, in this transaction
                await members_outbox(conn, workspace_id, r["channel_id"], "member_left_channel",
                                     [user_id])
        return sorted(r["channel_id"] for r in rows)



class PgInvites(PgPart):
    """``InviteStore`` on PostgreSQL."""

    async def create_invite(self, invite_id: int, workspace_id: int, token_hash: str,
                            role: str, created_by: int, ttl_s: float,
                            max_uses: int | None) -> Invite:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""INSERT INTO invites (id, workspace_id, token_hash, role, created_by, expires_at,
                                     max_uses)
                VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7)
                RETURNING {_INVITE_COLUMNS}""",  # noqa: S608
            invite_id, workspace_id, token_hash, role, created_by, ttl_s, max_uses)
        return _invite(row)

    async def invites(self, workspace_id: int, after_id: int, limit: int) -> list[Invite]:
        """Usable invites (not revoked, expired or used up), by id."""
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {_INVITE_COLUMNS} FROM invites
                WHERE workspace_id = $1 AND id > $2 AND revoked_at IS NULL
                  AND expires_at > now() AND (max_uses IS NULL OR uses < max_uses)
                ORDER BY id LIMIT $3""", workspace_id, after_id, limit)  # noqa: S608
        return [_invite(r) for r in rows]

    async def invite(self, workspace_id: int, invite_id: int) -> Invite | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"SELECT {_INVITE_COLUMNS} FROM invites WHERE workspace_id = $1 AND id = $2",  # noqa: S608
            workspace_id, invite_id)
        return None if row is None else _invite(row)

    async def revoke_invite(self, workspace_id: int, invite_id: int) -> bool:
        pool = await shard_pool(self, workspace_id)
        status = await self._call(
            pool.execute,
            """UPDATE invites SET revoked_at = now()
               WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL""",
            workspace_id, invite_id)
        return bool(status == "UPDATE 1")

    async def accept_invite(self, workspace_id: int, token_hash: str,
                            user: User) -> InviteOutcome:
        """Join through an invite, atomically: the invite row is locked, a use
        is counted only when someone actually joins, and the new member is
        added to #general in the same transaction."""
        pool = await self._shard_pool(workspace_id)
        if pool is None:
            return InviteOutcome("invalid", None)
        async with transaction(pool) as conn:
            inv = await conn.fetchrow(
                """SELECT id, role, revoked_at IS NULL AND expires_at > now()
                              AND (max_uses IS NULL OR uses < max_uses) AS usable
                   FROM invites WHERE workspace_id = $1 AND token_hash = $2
                   FOR UPDATE""", workspace_id, token_hash)
            if inv is None:
                return InviteOutcome("invalid", None)
            existing = await conn.fetchrow(
                f"""SELECT {_MEMBER_COLUMNS}, ended_reason FROM workspace_members
                    WHERE workspace_id = $1 AND user_id = $2 FOR UPDATE""", workspace_id, user.id)  # noqa: S608
            if existing is not None and existing["deactivated_at"] is None:
                # Accepting again (a double click) is harmless, even once the link is spent.
                return InviteOutcome("already_member", member_from_row(existing))
            if not inv["usable"]:
                return InviteOutcome("invalid", None)
            if existing is not None and existing["ended_reason"] == "deactivated":
                return InviteOutcome("deactivated", None)
            row = await conn.fetchrow(
                f"""INSERT INTO workspace_members (workspace_id, user_id, role, display_name)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (workspace_id, user_id) DO UPDATE
                    SET deactivated_at = NULL, ended_reason = NULL, role = EXCLUDED.role,
                        joined_at = now()
                    RETURNING {_MEMBER_COLUMNS}""",  # noqa: S608
                workspace_id, user.id, inv["role"], user.display_name)
            await conn.execute("UPDATE invites SET uses = uses + 1 WHERE id = $1", inv["id"])
            await _join_general(conn, workspace_id, user.id)
            return InviteOutcome("joined", member_from_row(row))


async def _join_general(conn: asyncpg.Connection, workspace_id: int, user_id: int) -> None:
    """A new member joins #general, in the caller's transaction, with the
    Events API's ``member_joined_channel`` outbox rows."""
    channel_id = await conn.fetchval(
        """INSERT INTO channel_members (channel_id, user_id, workspace_id)
           SELECT id, $2, $1 FROM channels
           WHERE workspace_id = $1 AND name = 'general'
           ON CONFLICT DO NOTHING RETURNING channel_id""", workspace_id, user_id)
    if channel_id is not None:
        await members_outbox(conn, workspace_id, channel_id, "member_joined_channel", [user_id])
