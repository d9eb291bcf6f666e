"""Accounts and workspace membership queries of ``PgDatabase``: rotating
refresh tokens (directory), member lists, roles, membership endings and
invites (the workspace's shard).

Invariants: a refresh token rotates at most once (the row is locked while it
rotates); presenting a used one revokes its session in the same transaction.
Ending a workspace membership removes every channel membership of the user
in that workspace in the same transaction, so the group-commit writer (which
checks channel membership) refuses their posts from then on.
"""

from __future__ import annotations

from typing import Any

from storage.interfaces import Invite, InviteOutcome, Member, RefreshOutcome, User
from storage.pg_common import Pools, member_from_row, shard_pool, transaction

_MEMBER_COLUMNS = "workspace_id, user_id, role, display_name, deactivated_at, is_bot"
_INVITE_COLUMNS = ("id, workspace_id, role, created_by, created_at, expires_at, max_uses, uses, "
                   "revoked_at")


def _invite(r: Any) -> Invite:
    return Invite(id=r["id"], workspace_id=r["workspace_id"], role=r["role"],
                  created_by=r["created_by"], created_at=r["created_at"],
                  expires_at=r["expires_at"], max_uses=r["max_uses"], uses=r["uses"],
                  revoked=r["revoked_at"] is not None)


class AccountQueries:
    # -- refresh tokens (directory) -------------------------------------------

    async def create_refresh_token(self: Pools, token_hash: str, session_id: int, user_id: int,
                                   ttl_s: float) -> None:
        await self._call(
            self.directory.execute,
            """INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at)
               VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
            token_hash, session_id, user_id, ttl_s)

    async def rotate_refresh_token(self: Pools, old_hash: str, new_hash: str,
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

    # -- workspace members (shard) ----------------------------------------------

    async def members_page(self: Pools, workspace_id: int, after_user_id: int,
                           limit: int) -> list[Member]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {_MEMBER_COLUMNS} FROM workspace_members
                WHERE workspace_id = $1 AND user_id > $2 AND deactivated_at IS NULL
                ORDER BY user_id LIMIT $3""", workspace_id, after_user_id, limit)  # noqa: S608
        return [member_from_row(r) for r in rows]

    async def active_members_among(self: Pools, workspace_id: int,
                                   user_ids: list[int]) -> set[int]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT user_id FROM workspace_members
               WHERE workspace_id = $1 AND user_id = ANY($2::bigint[])
                 AND deactivated_at IS NULL""", workspace_id, user_ids)
        return {int(r["user_id"]) for r in rows}

    async def set_role(self: Pools, workspace_id: int, user_id: int, role: str) -> Member | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""UPDATE workspace_members SET role = $3
                WHERE workspace_id = $1 AND user_id = $2 AND deactivated_at IS NULL
                RETURNING {_MEMBER_COLUMNS}""", workspace_id, user_id, role)  # noqa: S608
        return None if row is None else member_from_row(row)

    async def end_membership(self: Pools, workspace_id: int, user_id: int,
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
        return sorted(r["channel_id"] for r in rows)

    # -- invites (shard) -----------------------------------------------------------

    async def create_invite(self: Pools, invite_id: int, workspace_id: int, token_hash: str,
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

    async def invites(self: Pools, workspace_id: int, after_id: int, limit: int) -> list[Invite]:
        """Usable invites (not revoked, expired or used up), by id."""
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {_INVITE_COLUMNS} FROM invites
                WHERE workspace_id = $1 AND id > $2 AND revoked_at IS NULL
                  AND expires_at > now() AND (max_uses IS NULL OR uses < max_uses)
                ORDER BY id LIMIT $3""", workspace_id, after_id, limit)  # noqa: S608
        return [_invite(r) for r in rows]

    async def invite(self: Pools, workspace_id: int, invite_id: int) -> Invite | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"SELECT {_INVITE_COLUMNS} FROM invites WHERE workspace_id = $1 AND id = $2",  # noqa: S608
            workspace_id, invite_id)
        return None if row is None else _invite(row)

    async def revoke_invite(self: Pools, workspace_id: int, invite_id: int) -> bool:
        pool = await shard_pool(self, workspace_id)
        status = await self._call(
            pool.execute,
            """UPDATE invites SET revoked_at = now()
               WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL""",
            workspace_id, invite_id)
        return bool(status == "UPDATE 1")

    async def accept_invite(self: Pools, workspace_id: int, token_hash: str,
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
            await conn.execute(
                """INSERT INTO channel_members (channel_id, user_id, workspace_id)
                   SELECT id, $2, $1 FROM channels
                   WHERE workspace_id = $1 AND name = 'general'
                   ON CONFLICT DO NOTHING""", workspace_id, user.id)
            return InviteOutcome("joined", member_from_row(row))
