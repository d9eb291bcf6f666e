"""Group-commit writer: many concurrent appends, one transaction per batch.

Theory of operation.  ``submit`` puts the message on a queue with a
completion callback (``append`` is ``submit`` plus a future to await).
Queues are per (shard, lane), the lane chosen by channel id
(``channel_id % lanes``), so one channel always uses one lane.  Each lane
has at most ONE batch in flight: while it commits, new appends accumulate,
and they form the next batch as soon as the previous one finishes (so
batches grow with load; at low load a batch waits at most ``window_ms`` for
company).  Lanes of a shard commit concurrently, which keeps several
PostgreSQL backends busy; they never touch the same counter rows, since a
channel belongs to one lane.  One batch is one transaction:

1. keep only senders who are members of an unarchived channel of the
   message's workspace (one joined SELECT for the whole batch);
2. insert the idempotency keys, sorted, ``ON CONFLICT DO NOTHING``: a key
   that conflicts belongs to a message already stored (or being stored by a
   concurrent transaction, which PostgreSQL makes us wait for), so it gets no
   new sequence number;
3. lock the channel counter rows in channel-id order (``FOR UPDATE``), so two
   processes never deadlock on them, assign seqs in arrival order, update
   the counters, insert the messages with one ``unnest`` INSERT;
4. commit; only then are the callers told, by calling each message's
   callback in batch order, synchronously, from the lane's task: no Task or
   future per message on the hot path.  Duplicates are resolved first, by
   reading the stored message.

Invariants: seqs of a channel are 1, 2, 3 ... without gaps (allocation and
insert commit together); appends from one caller to one channel keep call
order (one lane per channel, one batch in flight per lane, FIFO queue);
nothing is acknowledged
before COMMIT returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import asyncpg

from storage.interfaces import AppendRejected, Message, NewMessage, StoreUnavailable
from storage.postgres import CONNECTION_ERRORS, PgDatabase

log = logging.getLogger("parley.writer")

_MESSAGE_COPY_COLUMNS = ("channel_id", "seq", "id", "workspace_id", "user_id", "text",
                         "client_msg_id", "thread_root_id", "created_at", "also_in_channel")
MAX_TXN_RETRIES = 3  # deadlock/serialization retries before giving up on a batch

Done = Callable[[Message | BaseException], None]
_Pending = tuple[NewMessage, Done]


class GroupCommitWriter:
    """The MessageAppender for PostgreSQL (see storage.interfaces)."""

    def __init__(self, db: PgDatabase, *, window_ms: float = 1.0, max_batch: int = 512,
                 lanes: int = 4) -> None:
        if lanes < 1:
            raise ValueError("lanes must be >= 1")
        self._db = db
        self._lanes = lanes
        self._window_s = window_ms / 1000.0
        self._max_batch = max_batch
        self._queues: dict[tuple[str, int], list[_Pending]] = defaultdict(list)
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        # A lane keeps its connection while it has work: a pool release runs a
        # RESET round trip, which per batch would cost as much as the batch.
        self._held: dict[tuple[str, int], asyncpg.Connection] = {}
        self._closed = False
        self.batches = 0  # statistics for benchmarks
        self.appended = 0

    async def append(self, shard: str, msg: NewMessage) -> Message:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        def done(result: Message | BaseException) -> None:
            if fut.done():
                return  # the caller was cancelled
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

        self.submit(shard, msg, done)
        return await fut

    def submit(self, shard: str, msg: NewMessage, done: Done) -> None:
        if self._closed:
            raise StoreUnavailable("writer is closed")
        lane = (shard, msg.channel_id % self._lanes)
        self._queues[lane].append((msg, done))
        if lane not in self._running:
            self._running[lane] = asyncio.create_task(self._drain(lane))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drain(self, lane: tuple[str, int]) -> None:
        """Flush batches for ``lane`` until its queue is empty."""
        try:
            queue = self._queues[lane]
            if len(queue) < self._max_batch and self._window_s > 0:
                await asyncio.sleep(self._window_s)
            while queue:
                batch = queue[: self._max_batch]
                del queue[: self._max_batch]
                await self._flush(lane, batch)
        finally:
            await self._release(lane)
            del self._running[lane]
            # An append may have raced with the end of the loop above.
            if self._queues[lane] and not self._closed:
                self._running[lane] = asyncio.create_task(self._drain(lane))

    async def _release(self, lane: tuple[str, int]) -> None:
        conn = self._held.pop(lane, None)
        if conn is not None:
            try:
                await self._db.pool(lane[0]).release(conn)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError):
                pass  # a broken connection: the pool replaces it

    async def _flush(self, lane: tuple[str, int], batch: list[_Pending]) -> None:
        shard = lane[0]
        for attempt in range(MAX_TXN_RETRIES + 1):
            try:
                conn = self._held.get(lane)
                if conn is None:
                    conn = self._held[lane] = await self._db.pool(shard).acquire()
                results, duplicates = await self._write(conn, [m for m, _ in batch])
                break
            except (asyncpg.exceptions.DeadlockDetectedError,
                    asyncpg.exceptions.SerializationError) as exc:
                if attempt == MAX_TXN_RETRIES:
                    self._fail(batch, StoreUnavailable(f"write conflict: {exc}"))
                    return
            except CONNECTION_ERRORS as exc:
                await self._release(lane)
                self._fail(batch, StoreUnavailable(str(exc) or type(exc).__name__))
                return
            except Exception as exc:  # a bug: fail the batch loudly, keep the writer alive
                log.exception("group commit failed")
                await self._release(lane)
                self._fail(batch, exc)
                return
        self.batches += 1
        if duplicates:
            try:
                stored = await self._db.messages_by_idempotency(shard, list(duplicates))
            except StoreUnavailable as exc:
                stored = {}
                for key in duplicates:
                    results[duplicates[key][0]] = exc
            for key, idxs in duplicates.items():
                for i in idxs:
                    if key in stored:
                        results[i] = stored[key]
                    elif not isinstance(results.get(i), Exception):
                        results[i] = AppendRejected("duplicate_in_flight",
                                                    "a message with this client_msg_id failed")
        for i, (_, done) in enumerate(batch):
            res = results[i]
            if not isinstance(res, BaseException):
                self.appended += 1
            self._call(done, res)

    @staticmethod
    def _call(done: Done, result: Message | BaseException) -> None:
        try:
            done(result)
        except Exception:  # one caller's bug must not cost the rest of the batch
            log.exception("append callback failed")

    @classmethod
    def _fail(cls, batch: list[_Pending], exc: BaseException) -> None:
        for _, done in batch:
            cls._call(done, exc)

    async def _write(
        self, conn: asyncpg.Connection, msgs: Sequence[NewMessage]
    ) -> tuple[dict[int, Message | BaseException], dict[tuple[int, str], list[int]]]:
        """One transaction for the batch.  Returns (results by index, duplicate
        idempotency keys -> indexes to resolve after commit)."""
        results: dict[int, Message | BaseException] = {}
        duplicates: dict[tuple[int, str], list[int]] = defaultdict(list)
        async with conn.transaction():
            # 1. Membership and channel state, for the whole batch at once.
            allowed = {
                r["i"] for r in await conn.fetch(
                    """SELECT v.i FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[])
                           AS v(channel_id, user_id, workspace_id, i)
                       JOIN channels c ON c.id = v.channel_id AND c.workspace_id = v.workspace_id
                       JOIN channel_members m ON m.channel_id = v.channel_id
                                             AND m.user_id = v.user_id
                       WHERE c.archived_at IS NULL""",
                    [m.channel_id for m in msgs], [m.user_id for m in msgs],
                    [m.workspace_id for m in msgs], list(range(len(msgs))))
            }
            archived = {
                r["id"] for r in await conn.fetch(
                    "SELECT id FROM channels WHERE id = ANY($1) AND archived_at IS NOT NULL",
                    list({m.channel_id for i, m in enumerate(msgs) if i not in allowed}))
            } if len(allowed) < len(msgs) else set()
            for i, m in enumerate(msgs):
                if i not in allowed:
                    results[i] = (AppendRejected("channel_archived", "the channel is archived")
                                  if m.channel_id in archived else
                                  AppendRejected("not_in_channel",
                                                 "you are not a member of this channel"))
            # 2. Idempotency keys (first occurrence in the batch wins).
            keyed: dict[tuple[int, str], int] = {}
            for i, m in enumerate(msgs):
                if i in allowed and m.client_msg_id is not None:
                    key = (m.user_id, m.client_msg_id)
                    if key in keyed:
                        duplicates[key].append(i)
                    else:
                        keyed[key] = i
            if keyed:
                ordered = sorted(keyed)
                fresh = {
                    (r["user_id"], r["client_msg_id"]) for r in await conn.fetch(
                        """INSERT INTO message_idempotency (user_id, client_msg_id, message_id)
                           SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
                           ON CONFLICT DO NOTHING RETURNING user_id, client_msg_id""",
                        [k[0] for k in ordered], [k[1] for k in ordered],
                        [msgs[keyed[k]].id for k in ordered])
                }
                for key, i in keyed.items():
                    if key not in fresh:
                        duplicates[key].insert(0, i)
            dup_idx = {i for idxs in duplicates.values() for i in idxs}
            to_write = [i for i in range(len(msgs))
                        if i in allowed and i not in results and i not in dup_idx]
            if not to_write:
                return results, duplicates
            # 3. Counters, locked in channel-id order (the deadlock rule).
            channel_ids = sorted({msgs[i].channel_id for i in to_write})
            last = {
                r["channel_id"]: r["last_seq"] for r in await conn.fetch(
                    """SELECT channel_id, last_seq FROM channel_counters
                       WHERE channel_id = ANY($1) ORDER BY channel_id FOR UPDATE""", channel_ids)
            }
            seqs: list[int] = []
            for i in to_write:
                last[msgs[i].channel_id] += 1
                seqs.append(last[msgs[i].channel_id])
            await conn.execute(
                """UPDATE channel_counters c SET last_seq = v.last_seq
                   FROM unnest($1::bigint[], $2::bigint[]) AS v(channel_id, last_seq)
                   WHERE c.channel_id = v.channel_id""",
                list(last), list(last.values()))
            # Binary COPY: the rows are new by construction (fresh seqs under
            # the counter locks), so no conflict handling is needed, and COPY
            # encodes rows in asyncpg's compiled core, several times faster
            # than building unnest arrays.
            await conn.copy_records_to_table(
                "messages", columns=_MESSAGE_COPY_COLUMNS,
                records=[(m.channel_id, seq, m.id, m.workspace_id, m.user_id, m.text,
                          m.client_msg_id, m.thread_root_id, m.created_at, m.also_in_channel)
                         for m, seq in zip((msgs[i] for i in to_write), seqs, strict=True)])
        for i, seq in zip(to_write, seqs, strict=True):
            m = msgs[i]
            results[i] = Message(
                id=m.id, channel_id=m.channel_id, seq=seq, workspace_id=m.workspace_id,
                user_id=m.user_id, text=m.text, client_msg_id=m.client_msg_id,
                thread_root_id=m.thread_root_id, created_at=m.created_at, edited_at=None,
                deleted=False, also_in_channel=m.also_in_channel)
        return results, duplicates
