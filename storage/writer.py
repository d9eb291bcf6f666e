"""Group-commit writer: many concurrent appends, one transaction per batch.

Theory of operation.  ``submit`` puts the message on a queue with a
completion callback (``append`` is ``submit`` plus a future to await).
Queues are per (shard, lane), the lane chosen by a hash of the channel id
(``lane_of``), so one channel always uses one lane.  Each lane
has at most ONE batch in flight: while it commits, new appends accumulate,
and they form the next batch as soon as the previous one finishes (so
batches grow with load; at low load a batch waits at most ``window_ms`` for
company).  Lanes of a shard commit concurrently, which keeps several
PostgreSQL backends busy; they never touch the same counter rows, since a
channel belongs to one lane.  One batch is one transaction and ONE round
trip: a call of ``parley_append_batch`` (migration 0005; under load each
round trip waits for a turn of the busy event loop, so seven of them made a
batch take tens of milliseconds), which does steps 1-3:

1. keep only senders who are members of an unarchived channel of the
   message's workspace (one joined SELECT for the whole batch);
2. insert the idempotency keys, sorted, ``ON CONFLICT DO NOTHING``: a key
   that conflicts belongs to a message already stored (or being stored by a
   concurrent transaction, which PostgreSQL makes us wait for), so it gets no
   new sequence number;
3. lock the channel counter rows in channel-id order (``FOR UPDATE``), so two
   processes never deadlock on them, assign seqs in arrival order, update
   the counters, insert the messages and their ``search_queue`` rows (the
   search indexer applies those later, off this path: migration 0008);
4. commit; only then are the callers told, by calling each message's
   callback in batch order, synchronously, from the lane's task: no Task or
   future per message on the hot path.  Duplicates are resolved first, by
   reading the stored message.

One message's bad data never fails the others (``_flush``).  The actions
validate text before it is submitted (parley/actions/validate.py), but the
writer does not rely on it: when the call fails with an error that blames a
value of some entry (``_blames_an_entry``: SQLSTATE class 22, which asyncpg
also uses for an argument it cannot encode), nothing was committed (the
call is one implicit transaction), so the writer splits the batch in two
and writes the halves, the first half first, recursively, until the failing
entry is alone; that entry gets a non-retryable ``AppendRejected``
(``invalid_text`` / ``invalid_message``) and every other entry commits and
is acknowledged as usual.  Cost: for k bad entries in a batch of n, at most
about 2 k log2(n) extra calls, paid only by a batch that had a bad entry.
Connection errors still fail everything left in the batch with
``StoreUnavailable`` (retryable: nothing of it was acknowledged).

Invariants: seqs of a channel are 1, 2, 3 ... without gaps (allocation and
insert commit together; a rejected entry takes no seq); appends from one
caller to one channel keep call order (one lane per channel, one batch in
flight per lane, FIFO queue, and the parts of a split batch are written
first part first), and callbacks are called in submission order within a
lane; nothing is acknowledged before COMMIT returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import asyncpg

from parley.model import AppendRejected, Message, NewMessage, StoreUnavailable
from storage.postgres import CONNECTION_ERRORS, PgDatabase

log = logging.getLogger("parley.writer")

_APPEND_BATCH = ("SELECT o_n, o_code, o_seq"
                 " FROM parley_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)")
# parley_append_batch's per-message codes (storage/migrations/shard/0005_append_batch.sql).
_STORED, _DUPLICATE = 0, 3
_REJECTIONS = {  # code -> AppendRejected arguments (a fresh exception per message)
    1: ("not_in_channel", "you are not a member of this channel"),
    2: ("channel_archived", "the channel is archived"),
}
MAX_TXN_RETRIES = 3  # deadlock/serialization retries before giving up on a batch
# SQLSTATEs of text PostgreSQL cannot hold: 22021 character_not_in_repertoire
# (a NUL, an invalid byte sequence), 22P05 untranslatable_character.
_TEXT_SQLSTATES = frozenset({"22021", "22P05"})

Done = Callable[[Message | BaseException], None]
_Pending = tuple[NewMessage, Done]

# Fibonacci hashing (Knuth, TAOCP 6.4): 2**64 / golden ratio, odd.
_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def lane_of(channel_id: int, lanes: int) -> int:
    """The lane (0 <= lane < ``lanes``) of a channel: the top 32 bits of
    ``channel_id * _MIX mod 2**64``, scaled to ``lanes`` (multiply-shift).

    Why not ``channel_id % lanes``: a snowflake's low 12 bits are the
    per-millisecond sequence, 0 for nearly every id made one at a time (a
    channel created over REST), so almost every channel landed in lane 0.
    The product's top bits depend on every bit of the id, so ids that differ
    only in their timestamp spread evenly (tests/storage/test_writer_lanes.py).
    A pure function of the id: a channel maps to the same lane in every
    process and for its whole life.  Measured ~0.1 us more than ``%``.
    """
    return ((((channel_id * _MIX) & _MASK64) >> 32) * lanes) >> 32


def _blames_an_entry(exc: BaseException) -> bool:
    """Whether a failed batch call is the fault of some entry's values, so
    that the batch written without that entry would commit.

    Yes for ``asyncpg.exceptions.DataError``, i.e. SQLSTATE class 22 (data
    exception): PostgreSQL refusing a value (22021 a NUL in text, 22001 a
    string too long, 22003 a number out of range ...), and asyncpg's own
    failure to encode an argument (a lone surrogate has no UTF-8 form),
    which it raises as DataError 22000 before anything is sent.  Such an
    error belongs to a value: that value fails in any batch, the others pass.

    No for everything else.  Connection errors and deadlocks are about the
    transaction, not its contents (handled in ``_write_part``).  Class 23
    (integrity): the only constraints a message row can break are the
    primary key, whose seq the function allocates, and the unique message
    id, which only a snowflake allocator bug could repeat: bugs shared by
    many messages, not one message's fault, and a retry with a new id would
    pass, so "rejected, do not retry" would be wrong.  P0001 (the function's
    missing-counter-row check) is a bug too.  Those fail the batch, logged.
    """
    return isinstance(exc, asyncpg.exceptions.DataError)


def _rejection(exc: BaseException) -> AppendRejected:
    """The non-retryable rejection of the one entry that ``exc`` blames."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in _TEXT_SQLSTATES or isinstance(exc.__cause__, UnicodeError):
        return AppendRejected("invalid_text", "the database cannot store this text "
                                              "(a NUL or a lone surrogate)")
    return AppendRejected("invalid_message", "the database refused a value of this message")


class _EntryFault(Exception):
    """``_write_part``: the call failed for a reason that blames an entry."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class GroupCommitWriter:
    """The MessageAppender for PostgreSQL (see parley.ports.appender)."""

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
        self.batches = 0  # statistics for benchmarks (committed calls)
        self.appended = 0
        self.splits = 0  # parts split or rejected because an entry's data failed the call

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
        lane = (shard, lane_of(msg.channel_id, self._lanes))
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
        """Write ``batch`` and call its callbacks in order.  A part whose call
        fails because of an entry's data is split in two and the halves are
        written first half first, down to the one bad entry, which is
        rejected alone (see the module docstring)."""
        parts = [batch]  # a stack: the next part to write is last
        while parts:
            part = parts.pop()
            try:
                await self._write_part(lane, part)
            except _EntryFault as fault:
                self.splits += 1
                if len(part) == 1:
                    log.warning("append rejected by the database: %s", fault.cause)
                    self._call(part[0][1], _rejection(fault.cause))
                else:
                    mid = len(part) // 2
                    parts += (part[mid:], part[:mid])
            except StoreUnavailable as exc:
                # The connection is gone: fail this part and what is left of
                # the batch, in submission order (parts[-1] comes first).
                for rest in (part, *reversed(parts)):
                    self._fail(rest, exc)
                return

    async def _write_part(self, lane: tuple[str, int], batch: list[_Pending]) -> None:
        """One call for ``batch``, then its callbacks.  Raises ``_EntryFault``
        (nothing committed, nothing called) when an entry's data is to blame,
        ``StoreUnavailable`` (nothing called) when the connection failed."""
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
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
            except Exception as exc:
                if _blames_an_entry(exc):  # the connection is fine: the call rolled back
                    raise _EntryFault(exc) from exc
                # A bug: fail this part loudly, keep the writer alive.
                log.exception("group commit failed")
                await self._release(lane)
                self._fail(batch, exc)
                return
        self.batches += 1
        if duplicates:
            try:
                stored = await self._db.messages.messages_by_idempotency(shard, list(duplicates))
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
        """One round trip for the batch: ``parley_append_batch`` (migration
        0005) does steps 1-3 as one implicit transaction, committed when the
        call returns.  Returns (results by index, duplicate idempotency keys
        -> indexes to resolve after commit)."""
        results: dict[int, Message | BaseException] = {}
        duplicates: dict[tuple[int, str], list[int]] = defaultdict(list)
        rows = await conn.fetch(
            _APPEND_BATCH,
            [m.channel_id for m in msgs], [m.user_id for m in msgs],
            [m.workspace_id for m in msgs], [m.id for m in msgs], [m.text for m in msgs],
            [m.client_msg_id for m in msgs], [m.thread_root_id for m in msgs],
            [m.created_at for m in msgs], [m.also_in_channel for m in msgs])
        for n, code, seq in rows:
            i = n - 1
            m = msgs[i]
            if code == _STORED:
                results[i] = Message(
                    id=m.id, channel_id=m.channel_id, seq=seq, workspace_id=m.workspace_id,
                    user_id=m.user_id, text=m.text, client_msg_id=m.client_msg_id,
                    thread_root_id=m.thread_root_id, created_at=m.created_at, edited_at=None,
                    deleted=False, also_in_channel=m.also_in_channel)
            elif code == _DUPLICATE:
                assert m.client_msg_id is not None
                duplicates[(m.user_id, m.client_msg_id)].append(i)
            else:
                results[i] = AppendRejected(*_REJECTIONS[code])
        return results, duplicates
