"""The message ports on PostgreSQL beyond the append path (``storage/writer.py``):
history, edits, tombstones, threads, follows, mentions, reactions, pins and
the queueing of changes for full-text search (``storage/pg_search.py``).

Invariants:

* A deleted message keeps its row and its ``seq`` (history stays gap-free);
  its text is emptied (so search can never find it) and its reactions, pin
  and mentions go in the same transaction.
* An edit and a delete queue the message for the search indexer
  (``storage/pg_search.py``) in their own transaction: the index follows
  every committed change, and no aborted one.
* Thread summaries are computed from the replies themselves (one grouped
  query per page of roots, on ``messages_thread``), so they can never drift
  from the messages they summarise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from parley.model import MentionChange, Message, MessageExtras, Pin, Reaction, ThreadSummary
from storage.pg_app_events import reaction_outbox
from storage.pg_common import MESSAGE_COLUMNS, PgPart, message_from_row, shard_pool, transaction
from storage.pg_search import QUEUE_FOR_INDEXER

PAGE_MAX_ROWS = 1000  # one channel_page at most
_EXTRAS_COLUMNS = "message_id, blocks, attachments, bot_id, app_id, subtype"
_PUT_EXTRAS = """INSERT INTO message_extras (message_id, workspace_id, channel_id, blocks,
                                       attachments, bot_id, app_id, subtype)
   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
   ON CONFLICT (message_id) DO UPDATE
   SET blocks = EXCLUDED.blocks, attachments = EXCLUDED.attachments, bot_id = EXCLUDED.bot_id,
       app_id = EXCLUDED.app_id, subtype = EXCLUDED.subtype
   WHERE message_extras.workspace_id = EXCLUDED.workspace_id"""


def _extras(r: Any) -> MessageExtras:
    return MessageExtras(blocks=r["blocks"], attachments=r["attachments"], bot_id=r["bot_id"],
                         app_id=r["app_id"], subtype=r["subtype"])
HISTORY_PAGE_MAX = 1000  # rows one history query may return (the API pages at <= 200)


class PgMessages(PgPart):
    """``MessageStore`` on PostgreSQL."""

    async def message(self, workspace_id: int, message_id: int) -> Message | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1 AND m.workspace_id = $2",  # noqa: S608
            message_id, workspace_id)
        return None if row is None else message_from_row(row)

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
                f"""SELECT {MESSAGE_COLUMNS} FROM messages m
                    WHERE m.channel_id = $1 AND m.workspace_id = $2 AND m.seq > $3
                    ORDER BY m.seq LIMIT $4""", channel_id, workspace_id, after, limit)  # noqa: S608
        else:
            rows = await self._call(
                pool.fetch,
                f"""SELECT {MESSAGE_COLUMNS} FROM messages m
                    WHERE m.channel_id = $1 AND m.workspace_id = $2 AND m.seq < $3
                    ORDER BY m.seq DESC LIMIT $4""",  # noqa: S608
                channel_id, workspace_id, before if before is not None else 2**62, limit)
            rows = list(reversed(rows))
        return [message_from_row(r) for r in rows]

    async def edit_message(self, workspace_id: int, message_id: int, text: str,
                           edited_at: dt.datetime,
                           extras: MessageExtras | None = None) -> Message | None:
        """None when the message is missing or deleted; with ``extras`` they
        replace the message's in the same transaction."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            row = await conn.fetchrow(
                f"""UPDATE messages m SET text = $3, edited_at = $4
                    WHERE m.id = $1 AND m.workspace_id = $2 AND m.deleted_at IS NULL
                    RETURNING {MESSAGE_COLUMNS}""", message_id, workspace_id, text, edited_at)  # noqa: S608
            if row is not None:
                await conn.execute(QUEUE_FOR_INDEXER, message_id, "edit")
            if row is not None and extras is not None:
                await conn.execute(_PUT_EXTRAS, message_id, workspace_id, row["channel_id"],
                                   extras.blocks, extras.attachments, extras.bot_id,
                                   extras.app_id, extras.subtype)
        return None if row is None else message_from_row(row)

    async def delete_message(self, workspace_id: int,
                             message_id: int) -> tuple[Message, tuple[int, ...]] | None:
        """Tombstone the message; returns it and the users whose mention of it
        went away.  None when it is missing or already deleted."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            row = await conn.fetchrow(
                f"""UPDATE messages m SET text = '', deleted_at = now()
                    WHERE m.id = $1 AND m.workspace_id = $2 AND m.deleted_at IS NULL
                    RETURNING {MESSAGE_COLUMNS}""", message_id, workspace_id)  # noqa: S608
            if row is None:
                return None
            await conn.execute(QUEUE_FOR_INDEXER, message_id, "delete")
            await conn.execute("DELETE FROM reactions WHERE message_id = $1 AND workspace_id = $2",
                               message_id, workspace_id)
            await conn.execute("DELETE FROM pins WHERE message_id = $1 AND workspace_id = $2",
                               message_id, workspace_id)
            gone = await conn.fetch(
                """DELETE FROM mentions WHERE message_id = $1 AND workspace_id = $2
                   RETURNING user_id""", message_id, workspace_id)
            # The tombstone keeps who posted it (bot_id), not what it said.
            await conn.execute(
                """UPDATE message_extras SET blocks = NULL, attachments = NULL
                   WHERE message_id = $1 AND workspace_id = $2""", message_id, workspace_id)
        return message_from_row(row), tuple(sorted(r["user_id"] for r in gone))

    async def messages_by_idempotency(
            self, shard: str, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Message]:
        rows = await self._call(
            self.pools[shard].fetch,
            f"""SELECT {MESSAGE_COLUMNS} FROM message_idempotency i
                JOIN messages m ON m.id = i.message_id
                JOIN unnest($1::bigint[], $2::text[]) AS k(user_id, client_msg_id)
                  ON k.user_id = i.user_id AND k.client_msg_id = i.client_msg_id""",  # noqa: S608
            [k[0] for k in keys], [k[1] for k in keys])
        return {(r["user_id"], r["client_msg_id"]): message_from_row(r) for r in rows}

    async def set_mentions(self, message: Message, user_ids: Sequence[int],
                           everyone: bool) -> MentionChange:
        """Make the message's mentions exactly: the channel members among
        ``user_ids`` (all members when ``everyone``), never its author."""
        pool = await shard_pool(self, message.workspace_id)
        async with transaction(pool) as conn:
            target = {r["user_id"] for r in await conn.fetch(
                """SELECT user_id FROM channel_members
                   WHERE workspace_id = $1 AND channel_id = $2 AND user_id <> $3
                     AND ($4 OR user_id = ANY($5::bigint[]))""",
                message.workspace_id, message.channel_id, message.user_id, everyone,
                list(user_ids))}
            removed = [r["user_id"] for r in await conn.fetch(
                """DELETE FROM mentions WHERE message_id = $1 AND workspace_id = $2
                   AND NOT (user_id = ANY($3::bigint[])) RETURNING user_id""",
                message.id, message.workspace_id, list(target))]
            added = [r["user_id"] for r in await conn.fetch(
                """INSERT INTO mentions (user_id, channel_id, seq, message_id, workspace_id)
                   SELECT u, $2, $3, $4, $5 FROM unnest($1::bigint[]) AS u
                   ON CONFLICT DO NOTHING RETURNING user_id""",
                sorted(target), message.channel_id, message.seq, message.id,
                message.workspace_id)]
        return MentionChange(added=tuple(sorted(added)), removed=tuple(sorted(removed)))



class PgExtras(PgPart):
    """``MessageExtrasStore`` on PostgreSQL (table ``message_extras``)."""

    async def put_message_extras(self, workspace_id: int, channel_id: int,
                                 message_id: int, extras: MessageExtras) -> None:
        pool = await shard_pool(self, workspace_id)
        await self._call(pool.execute, _PUT_EXTRAS, message_id, workspace_id, channel_id,
                         extras.blocks, extras.attachments, extras.bot_id, extras.app_id,
                         extras.subtype)

    async def drop_message_extras(self, workspace_id: int, message_id: int) -> None:
        pool = await shard_pool(self, workspace_id)
        await self._call(
            pool.execute,
            """DELETE FROM message_extras x WHERE x.message_id = $1 AND x.workspace_id = $2
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = $1)""",
            message_id, workspace_id)

    async def message_extras(self, workspace_id: int,
                             message_ids: Sequence[int]) -> dict[int, MessageExtras]:
        if not message_ids:
            return {}
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {_EXTRAS_COLUMNS} FROM message_extras
                WHERE workspace_id = $1 AND message_id = ANY($2::bigint[])""",  # noqa: S608
            workspace_id, list(message_ids))
        return {r["message_id"]: _extras(r) for r in rows}


class PgTimeline(PgPart):
    """``TimelineIndex`` on PostgreSQL: the Web API's ts and time bounds."""

    async def message_at(self, workspace_id: int, channel_id: int, second: int,
                         seq_residue: int, modulus: int) -> Message | None:
        """One primary-key probe per candidate seq: the candidates are
        generated from the channel's counter inside the query."""
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""SELECT {MESSAGE_COLUMNS} FROM messages m
                WHERE m.channel_id = $1 AND m.workspace_id = $2
                  AND m.seq = ANY(ARRAY(
                      SELECT $4::bigint + k * $5::bigint FROM channel_counters c,
                             generate_series(0, c.last_seq / $5::bigint) AS k
                      WHERE c.channel_id = $1 AND $4::bigint + k * $5::bigint BETWEEN 1
                                                                          AND c.last_seq))
                  AND m.created_at >= to_timestamp($3::bigint)
                  AND m.created_at < to_timestamp($3::bigint + 1)
                ORDER BY m.seq LIMIT 1""",  # noqa: S608
            channel_id, workspace_id, second, seq_residue, modulus)
        return None if row is None else message_from_row(row)

    async def seq_at(self, workspace_id: int, channel_id: int, at: dt.datetime) -> int:
        pool = await shard_pool(self, workspace_id)
        found = await self._call(
            pool.fetchval,
            """SELECT parley_seq_at(c.id, $3) FROM channels c
               WHERE c.id = $1 AND c.workspace_id = $2""", channel_id, workspace_id, at)
        return 1 if found is None else int(found)

    async def channel_page(self, workspace_id: int, channel_id: int, *, after_seq: int,
                           before_seq: int, limit: int, newest_first: bool,
                           top_level: bool) -> list[Message]:
        pool = await shard_pool(self, workspace_id)
        order = "DESC" if newest_first else "ASC"
        shown = "AND (m.thread_root_id IS NULL OR m.also_in_channel)" if top_level else ""
        rows = await self._call(
            pool.fetch,
            f"""SELECT {MESSAGE_COLUMNS} FROM messages m
                WHERE m.channel_id = $1 AND m.workspace_id = $2 AND m.seq > $3 AND m.seq < $4
                  {shown}
                ORDER BY m.seq {order} LIMIT $5""",  # noqa: S608
            channel_id, workspace_id, after_seq, before_seq, max(1, min(limit, PAGE_MAX_ROWS)))
        return [message_from_row(r) for r in rows]


class PgThreads(PgPart):
    """``ThreadStore`` on PostgreSQL."""

    async def thread_summaries(self, workspace_id: int,
                               root_ids: Sequence[int]) -> dict[int, ThreadSummary]:
        if not root_ids:
            return {}
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT thread_root_id, count(*) AS n, max(created_at) AS latest,
                      array_agg(DISTINCT user_id ORDER BY user_id) AS repliers
               FROM messages
               WHERE thread_root_id = ANY($2::bigint[]) AND workspace_id = $1
                 AND deleted_at IS NULL
               GROUP BY thread_root_id""", workspace_id, list(root_ids))
        return {r["thread_root_id"]: ThreadSummary(
            root_id=r["thread_root_id"], reply_count=r["n"], latest_reply_at=r["latest"],
            replier_ids=tuple(r["repliers"])) for r in rows}

    async def thread_replies(self, workspace_id: int, root_id: int, after_seq: int,
                             limit: int) -> list[Message]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {MESSAGE_COLUMNS} FROM messages m
                WHERE m.thread_root_id = $1 AND m.workspace_id = $2 AND m.seq > $3
                ORDER BY m.seq LIMIT $4""", root_id, workspace_id, after_seq, limit)  # noqa: S608
        return [message_from_row(r) for r in rows]

    async def follow_thread(self, workspace_id: int, channel_id: int, root_id: int,
                            user_ids: Sequence[int], *, override: bool) -> list[int]:
        """Make those of ``user_ids`` who are channel members follow the thread;
        returns those newly following.
        ``override=False`` (an automatic follow of the root's author) leaves an
        explicit unfollow in place; ``override=True`` (replying, being
        mentioned, or following explicitly) does not."""
        if not user_ids:
            return []
        pool = await shard_pool(self, workspace_id)
        conflict = ("DO UPDATE SET following = true WHERE NOT thread_follows.following"
                    if override else "DO NOTHING")
        rows = await self._call(
            pool.fetch,
            f"""INSERT INTO thread_follows (root_id, user_id, workspace_id, channel_id, following)
                SELECT $1, u, $2, $3, true FROM unnest($4::bigint[]) AS u
                WHERE EXISTS (SELECT 1 FROM channel_members cm
                              WHERE cm.channel_id = $3 AND cm.user_id = u
                                AND cm.workspace_id = $2)
                ON CONFLICT (root_id, user_id) {conflict} RETURNING user_id""",  # noqa: S608
            root_id, workspace_id, channel_id, sorted(set(user_ids)))
        return sorted(r["user_id"] for r in rows)

    async def unfollow_thread(self, workspace_id: int, channel_id: int, root_id: int,
                              user_id: int) -> bool:
        """Record an explicit unfollow; True when the user was following."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            was = await conn.fetchval(
                """SELECT following FROM thread_follows
                   WHERE root_id = $1 AND user_id = $2 AND workspace_id = $3 FOR UPDATE""",
                root_id, user_id, workspace_id)
            await conn.execute(
                """INSERT INTO thread_follows (root_id, user_id, workspace_id, channel_id,
                                               following)
                   VALUES ($1, $2, $3, $4, false)
                   ON CONFLICT (root_id, user_id) DO UPDATE SET following = false""",
                root_id, user_id, workspace_id, channel_id)
        return bool(was)

    async def is_following(self, workspace_id: int, root_id: int, user_id: int) -> bool:
        pool = await shard_pool(self, workspace_id)
        return bool(await self._call(
            pool.fetchval,
            """SELECT following FROM thread_follows
               WHERE root_id = $1 AND user_id = $2 AND workspace_id = $3""",
            root_id, user_id, workspace_id))



class PgReactions(PgPart):
    """``ReactionStore`` on PostgreSQL."""

    async def add_reaction(self, workspace_id: int, channel_id: int, message_id: int,
                           user_id: int, emoji: str, max_distinct: int) -> str:
        """'added' | 'exists' | 'too_many' (the message has ``max_distinct``
        different emoji and this is a new one) | 'gone' (missing or deleted)."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            # Lock the message: serialises reactions on it (so the distinct-emoji
            # cap holds) and against its deletion (which drops its reactions).
            if not await conn.fetchval(
                    """SELECT deleted_at IS NULL FROM messages
                       WHERE id = $1 AND workspace_id = $2 FOR UPDATE""",
                    message_id, workspace_id):
                return "gone"
            kinds = {r["emoji"] for r in await conn.fetch(
                "SELECT DISTINCT emoji FROM reactions WHERE message_id = $1 AND workspace_id = $2",
                message_id, workspace_id)}
            if emoji not in kinds and len(kinds) >= max_distinct:
                return "too_many"
            status = await conn.execute(
                """INSERT INTO reactions (message_id, emoji, user_id, workspace_id, channel_id)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
                message_id, emoji, user_id, workspace_id, channel_id)
            if status == "INSERT 0 1":  # the Events API's outbox, in this transaction
                await reaction_outbox(conn, workspace_id, message_id, user_id, emoji,
                                      "reaction_added")
        return "added" if status == "INSERT 0 1" else "exists"

    async def remove_reaction(self, workspace_id: int, message_id: int, user_id: int,
                              emoji: str) -> bool:
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            status = await conn.execute(
                """DELETE FROM reactions
                   WHERE message_id = $1 AND emoji = $2 AND user_id = $3 AND workspace_id = $4""",
                message_id, emoji, user_id, workspace_id)
            if status == "DELETE 1":  # the Events API's outbox, in this transaction
                await reaction_outbox(conn, workspace_id, message_id, user_id, emoji,
                                      "reaction_removed")
        return bool(status == "DELETE 1")

    async def reactions_of(self, workspace_id: int,
                           message_ids: Sequence[int]) -> list[Reaction]:
        """Per message, per emoji (in order of the first reaction), who reacted."""
        if not message_ids:
            return []
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT message_id, emoji,
                      array_agg(user_id ORDER BY created_at, user_id) AS users
               FROM reactions WHERE workspace_id = $1 AND message_id = ANY($2::bigint[])
               GROUP BY message_id, emoji ORDER BY message_id, min(created_at), emoji""",
            workspace_id, list(message_ids))
        return [Reaction(message_id=r["message_id"], emoji=r["emoji"],
                         user_ids=tuple(r["users"])) for r in rows]



class PgPins(PgPart):
    """``PinStore`` on PostgreSQL."""

    async def pin(self, workspace_id: int, channel_id: int, message_id: int,
                  user_id: int, max_pins: int) -> str:
        """'pinned' | 'exists' | 'too_many' | 'gone' (message missing or deleted)."""
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            # Lock the channel (the pin cap) and the message (against its deletion).
            await conn.execute(
                "SELECT 1 FROM channels WHERE id = $1 AND workspace_id = $2 FOR UPDATE",
                channel_id, workspace_id)
            if not await conn.fetchval(
                    """SELECT deleted_at IS NULL FROM messages
                       WHERE id = $1 AND workspace_id = $2 AND channel_id = $3 FOR UPDATE""",
                    message_id, workspace_id, channel_id):
                return "gone"
            if await conn.fetchval(
                    "SELECT 1 FROM pins WHERE channel_id = $1 AND message_id = $2",
                    channel_id, message_id):
                return "exists"
            count = await conn.fetchval(
                "SELECT count(*) FROM pins WHERE channel_id = $1 AND workspace_id = $2",
                channel_id, workspace_id)
            if count >= max_pins:
                return "too_many"
            await conn.execute(
                """INSERT INTO pins (channel_id, message_id, workspace_id, pinned_by)
                   VALUES ($1, $2, $3, $4)""", channel_id, message_id, workspace_id, user_id)
        return "pinned"

    async def unpin(self, workspace_id: int, channel_id: int, message_id: int) -> bool:
        pool = await shard_pool(self, workspace_id)
        status = await self._call(
            pool.execute,
            "DELETE FROM pins WHERE channel_id = $1 AND message_id = $2 AND workspace_id = $3",
            channel_id, message_id, workspace_id)
        return bool(status == "DELETE 1")

    async def pins(self, workspace_id: int, channel_id: int) -> list[Pin]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {MESSAGE_COLUMNS}, p.pinned_by, p.pinned_at FROM pins p
                JOIN messages m ON m.id = p.message_id
                WHERE p.channel_id = $1 AND p.workspace_id = $2
                ORDER BY p.pinned_at DESC, m.id DESC""", channel_id, workspace_id)  # noqa: S608
        return [Pin(message=message_from_row(r), pinned_by=r["pinned_by"],
                    pinned_at=r["pinned_at"]) for r in rows]

    async def pinned_ids(self, workspace_id: int, channel_id: int,
                         message_ids: Sequence[int]) -> set[int]:
        if not message_ids:
            return set()
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT message_id FROM pins
               WHERE channel_id = $1 AND workspace_id = $2 AND message_id = ANY($3::bigint[])""",
            channel_id, workspace_id, list(message_ids))
        return {r["message_id"] for r in rows}
