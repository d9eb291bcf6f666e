"""The channel ports on PostgreSQL: settings, membership, DMs, lists with
read state, and read positions.

Unread count (one definition, used by every read): the messages after the
member's ``last_read_seq`` that are not deleted, not the member's own, and
shown in the channel (top-level, or thread replies sent to the channel too).
It is counted on the primary key range ``(channel_id, seq > last_read_seq)``
and capped at ``UNREAD_CAP`` so a long-abandoned channel costs a bounded scan.
Mention count: the member's rows in ``mentions`` after ``last_read_seq``.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from parley.model import Channel, ChannelMember, ChannelView, ReadState, StoreUnavailable
from storage.pg_app_events import channel_outbox, members_outbox
from storage.pg_common import (
    CONNECTION_ERRORS,
    PgPart,
    channel_from_row,
    insert_channel,
    shard_pool,
    transaction,
)

UNREAD_CAP = 10_000  # counts above this are reported as this

_UNREAD_SQL = f"""(SELECT count(*) FROM (
        SELECT 1 FROM messages x
        WHERE x.channel_id = c.id AND x.seq > m.last_read_seq AND x.user_id <> m.user_id
          AND x.deleted_at IS NULL AND (x.thread_root_id IS NULL OR x.also_in_channel)
        LIMIT {UNREAD_CAP}) u)"""  # noqa: S608
_MENTIONS_SQL = """(SELECT count(*) FROM mentions n
        WHERE n.user_id = m.user_id AND n.channel_id = c.id AND n.seq > m.last_read_seq)"""


def _view(r: asyncpg.Record) -> ChannelView:
    member = r["is_member"]
    return ChannelView(channel=channel_from_row(r), is_member=member,
                       last_read_seq=r["last_read_seq"] if member else None,
                       unread_count=r["unread"] if member else None,
                       mention_count=r["mentions"] if member else None)


class PgChannels(PgPart):
    """``ChannelStore`` on PostgreSQL."""

    async def create_channel(self, channel_id: int, workspace_id: int, kind: str, name: str,
                             creator: int) -> Channel | None:
        """None when the name is taken in the workspace."""
        pool = await self._shard_pool(workspace_id)
        assert pool is not None
        try:
            async with pool.acquire() as conn, conn.transaction():
                await insert_channel(conn, channel_id, workspace_id, kind, name, creator,
                                           [creator])
                # The Events API's outbox, in this transaction: every subscribed
                # app hears of a public channel; the creator's join is a join.
                if kind == "public":
                    await channel_outbox(conn, workspace_id, channel_id, "channel_created",
                                         [{"name": name, "creator_id": creator}], anyone=True)
                await members_outbox(conn, workspace_id, channel_id, "member_joined_channel",
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
        return None if row is None else channel_from_row(row)

    async def update_channel(self, workspace_id: int, channel_id: int, *,
                             name: str | None = None, topic: str | None = None,
                             purpose: str | None = None, kind: str | None = None,
                             archived: bool | None = None,
                             by: int | None = None) -> Channel | None:
        """Apply the given changes; None when ``name`` is taken in the workspace.
        ``kind`` may only turn a public channel private.  An archive state
        that changes writes the Events API's outbox rows (``by``: who did
        it) in the same transaction."""
        pool = await shard_pool(self, workspace_id)
        try:
            async with transaction(pool) as conn:
                was = await conn.fetchrow(
                    """SELECT kind, archived_at IS NOT NULL AS archived FROM channels
                       WHERE workspace_id = $1 AND id = $2 FOR UPDATE""",
                    workspace_id, channel_id)
                await conn.execute(
                    """UPDATE channels SET name = COALESCE($3, name), topic = COALESCE($4, topic),
                           purpose = COALESCE($5, purpose),
                           kind = CASE WHEN $6::text = 'private' AND kind = 'public'
                                       THEN 'private' ELSE kind END,
                           archived_at = CASE WHEN $7::boolean IS NULL THEN archived_at
                                              WHEN $7 THEN COALESCE(archived_at, now())
                                              ELSE NULL END
                       WHERE workspace_id = $1 AND id = $2""",
                    workspace_id, channel_id, name, topic, purpose, kind, archived)
                if was is not None and archived is not None and was["archived"] != archived:
                    # Slack's names: channel_* for public channels, group_* for private.
                    event = (("channel" if was["kind"] == "public" else "group")
                             + ("_archive" if archived else "_unarchive"))
                    await channel_outbox(conn, workspace_id, channel_id, event,
                                         [{"user_id": by}])
        except asyncpg.exceptions.UniqueViolationError:
            return None
        return await self.channel(workspace_id, channel_id)

    async def default_channel(self, workspace_id: int) -> Channel | None:
        """#general: every member joins it."""
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            """SELECT c.*, k.last_seq FROM channels c JOIN channel_counters k ON k.channel_id = c.id
               WHERE c.workspace_id = $1 AND c.name = 'general'""", workspace_id)
        return None if row is None else channel_from_row(row)

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
        return [channel_from_row(r) for r in rows]

    async def get_or_create_dm(self, channel_id: int, workspace_id: int, kind: str,
                               dm_key: str, creator: int,
                               members: Sequence[int]) -> tuple[Channel, list[int]]:
        """The DM of exactly ``members`` (created if missing, with ``channel_id``);
        returns it and the members newly added to it (all of them on creation,
        a returning member after their membership had ended)."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            inserted = await conn.fetchval(
                """INSERT INTO channels (id, workspace_id, kind, name, created_by, dm_key)
                   VALUES ($1, $2, $3, NULL, $4, $5)
                   ON CONFLICT (workspace_id, dm_key) WHERE dm_key IS NOT NULL DO NOTHING
                   RETURNING id""", channel_id, workspace_id, kind, creator, dm_key)
            if inserted is not None:
                await conn.execute("INSERT INTO channel_counters (channel_id) VALUES ($1)",
                                   channel_id)
            cid = inserted if inserted is not None else await conn.fetchval(
                "SELECT id FROM channels WHERE workspace_id = $1 AND dm_key = $2",
                workspace_id, dm_key)
            rows = await conn.fetch(
                """INSERT INTO channel_members (channel_id, user_id, workspace_id)
                   SELECT $2, u, $1 FROM unnest($3::bigint[]) AS u
                   ON CONFLICT DO NOTHING RETURNING user_id""",
                workspace_id, cid, list(members))
        channel = await self.channel(workspace_id, cid)
        assert channel is not None
        return channel, sorted(r["user_id"] for r in rows)

    async def channel_views(self, workspace_id: int, user_id: int, *,
                            include_public: bool, after_id: int,
                            limit: int) -> list[ChannelView]:
        """The user's channels (and, with ``include_public``, the public ones
        they are not in), by id, with membership and read state."""
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT c.*, k.last_seq, m.last_read_seq, m.user_id IS NOT NULL AS is_member,
                       CASE WHEN m.user_id IS NULL THEN NULL ELSE {_UNREAD_SQL} END AS unread,
                       CASE WHEN m.user_id IS NULL THEN NULL ELSE {_MENTIONS_SQL} END
                           AS mentions
                FROM channels c JOIN channel_counters k ON k.channel_id = c.id
                LEFT JOIN channel_members m ON m.channel_id = c.id AND m.user_id = $2
                                           AND m.workspace_id = $1
                WHERE c.workspace_id = $1 AND c.id > $3
                  AND (m.user_id IS NOT NULL OR ($4 AND c.kind = 'public'))
                ORDER BY c.id LIMIT $5""",  # noqa: S608
            workspace_id, user_id, after_id, include_public, limit)
        return [_view(r) for r in rows]



class PgRoster(PgPart):
    """``RosterStore`` on PostgreSQL."""

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
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            status = await conn.execute(
                """INSERT INTO channel_members (channel_id, user_id, workspace_id)
                   VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
                channel_id, user_id, workspace_id)
            if status == "INSERT 0 1":  # the Events API's outbox, in this transaction
                await members_outbox(conn, workspace_id, channel_id, "member_joined_channel",
                                     [user_id])
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
        return [(channel_from_row(r), r["last_read_seq"]) for r in rows]

    async def add_channel_members(self, workspace_id: int, channel_id: int,
                                  user_ids: Sequence[int],
                                  inviter_id: int | None = None) -> list[int]:
        """Add those of ``user_ids`` who are active workspace members; returns
        the ones newly added (each a ``member_joined_channel`` with
        ``inviter_id`` in the Events API's outbox, in this transaction)."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            rows = await conn.fetch(
                """INSERT INTO channel_members (channel_id, user_id, workspace_id)
                   SELECT $2, w.user_id, $1 FROM workspace_members w
                   WHERE w.workspace_id = $1 AND w.user_id = ANY($3::bigint[])
                     AND w.deactivated_at IS NULL
                     AND EXISTS (SELECT 1 FROM channels c WHERE c.id = $2 AND c.workspace_id = $1)
                   ON CONFLICT DO NOTHING RETURNING user_id""",
                workspace_id, channel_id, list(user_ids))
            added = sorted(r["user_id"] for r in rows)
            if added:
                await members_outbox(conn, workspace_id, channel_id, "member_joined_channel",
                                     added, inviter_id)
        return added

    async def remove_channel_member(self, workspace_id: int, channel_id: int,
                                    user_id: int) -> bool:
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            status = await conn.execute(
                """DELETE FROM channel_members
                   WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3""",
                workspace_id, channel_id, user_id)
            if status == "DELETE 1":  # the Events API's outbox, in this transaction
                await members_outbox(conn, workspace_id, channel_id, "member_left_channel",
                                     [user_id])
            await conn.execute(
                """DELETE FROM thread_follows
                   WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3""",
                workspace_id, channel_id, user_id)
            await conn.execute(
                """DELETE FROM mentions
                   WHERE workspace_id = $1 AND channel_id = $2 AND user_id = $3""",
                workspace_id, channel_id, user_id)
        return bool(status == "DELETE 1")

    async def channel_members_page(self, workspace_id: int, channel_id: int,
                                   after_user_id: int, limit: int) -> list[ChannelMember]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT m.user_id, w.display_name, w.role FROM channel_members m
               JOIN workspace_members w ON w.workspace_id = m.workspace_id
                                       AND w.user_id = m.user_id
               WHERE m.workspace_id = $1 AND m.channel_id = $2 AND m.user_id > $3
               ORDER BY m.user_id LIMIT $4""", workspace_id, channel_id, after_user_id, limit)
        return [ChannelMember(user_id=r["user_id"], display_name=r["display_name"],
                              role=r["role"]) for r in rows]

    async def channel_member_ids(self, workspace_id: int,
                                 channel_id: int) -> list[int]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT user_id FROM channel_members WHERE workspace_id = $1 AND channel_id = $2
               ORDER BY user_id""", workspace_id, channel_id)
        return [r["user_id"] for r in rows]

    async def channel_member_count(self, workspace_id: int, channel_id: int) -> int:
        pool = await shard_pool(self, workspace_id)
        return int(await self._call(
            pool.fetchval,
            "SELECT count(*) FROM channel_members WHERE workspace_id = $1 AND channel_id = $2",
            workspace_id, channel_id))



class PgReads(PgPart):
    """``ReadStore`` on PostgreSQL."""

    async def read_state(self, workspace_id: int, channel_id: int,
                         user_id: int) -> ReadState | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""SELECT m.last_read_seq, {_UNREAD_SQL} AS unread, {_MENTIONS_SQL} AS mentions
                FROM channel_members m JOIN channels c ON c.id = m.channel_id
                WHERE m.workspace_id = $1 AND m.channel_id = $2 AND m.user_id = $3""",  # noqa: S608
            workspace_id, channel_id, user_id)
        if row is None:
            return None
        return ReadState(channel_id=channel_id, last_read_seq=row["last_read_seq"],
                         unread_count=row["unread"], mention_count=row["mentions"])

    async def mark_read(self, workspace_id: int, channel_id: int, user_id: int,
                        seq: int) -> ReadState | None:
        """Set the read position to ``seq`` (clamped to the channel's last
        seq); None when the user is not a member."""
        pool = await shard_pool(self, workspace_id)
        status = await self._call(
            pool.execute,
            """UPDATE channel_members m
               SET last_read_seq = LEAST($4, (SELECT last_seq FROM channel_counters
                                              WHERE channel_id = $2))
               WHERE m.workspace_id = $1 AND m.channel_id = $2 AND m.user_id = $3""",
            workspace_id, channel_id, user_id, seq)
        if status != "UPDATE 1":
            return None
        return await self.read_state(workspace_id, channel_id, user_id)
