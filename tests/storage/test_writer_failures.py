"""The failures the sequencing argument of docs/architecture.md (*Sequencing
and idempotency*) rests on, each forced on real PostgreSQL:

* the writer's connection dies while its batch is inside
  ``parley_append_batch`` (the analogue of a sequencer losing its lease
  mid-batch): nothing is acknowledged, nothing is stored, no seq is used,
  and a retry with the same ``client_msg_id`` stores each message once;
* two writers (two processes) hold the same channel: the counter row lock
  orders them (covered with many messages in tests/storage/test_writer.py;
  here the second waits, provably, on the first's lock);
* the same ``client_msg_id`` arrives in two writers' batches at once: the
  second waits for the first's key and gets the first's message, never a
  second message or a second seq;
* the same key twice in one batch: one message (test_writer.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from parley.model import Message, StoreUnavailable
from storage.postgres import PgDatabase
from storage.writer import GroupCommitWriter
from tests.storage.test_writer import _workspace, new_msg


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[PgDatabase]:
    database = PgDatabase([pg_dsn], pool_max=8)
    await database.connect()
    yield database
    await database.close()


class CounterHold:
    """A channel's counter row held by another transaction (``FOR UPDATE``),
    so every batch numbering that channel stops in step 3 of
    parley_append_batch, after its membership check and its keys; and a
    second connection to watch the batches wait."""

    def __init__(self, blocker: asyncpg.Connection, watcher: asyncpg.Connection) -> None:
        self._blocker = blocker
        self.watcher = watcher

    @classmethod
    async def take(cls, dsn: str, channel_id: int) -> CounterHold:
        blocker = await asyncpg.connect(dsn)
        watcher = await asyncpg.connect(dsn)
        await blocker.execute("BEGIN")
        await blocker.execute("SELECT 1 FROM channel_counters WHERE channel_id = $1 FOR UPDATE",
                              channel_id)
        return cls(blocker, watcher)

    async def waiting(self, n: int = 1, timeout_s: float = 10.0) -> list[int]:
        """Pids of the (at least ``n``) batches inside parley_append_batch that
        wait for a lock (a row another transaction holds: ``transactionid``;
        behind another waiter for the same row: ``tuple``)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while loop.time() < end:
            pids = [r["pid"] for r in await self.watcher.fetch(
                """SELECT pid FROM pg_stat_activity
                   WHERE query LIKE '%parley_append_batch%' AND pid <> pg_backend_pid()
                     AND wait_event_type = 'Lock' ORDER BY backend_start""")]
            if len(pids) >= n:
                return pids
            await asyncio.sleep(0.02)
        raise AssertionError(f"not {n} batches waiting for a lock within {timeout_s} s")

    async def release(self) -> None:
        """Let the waiting batches go (the holder rolls back)."""
        await self._blocker.close()

    async def close(self) -> None:
        if not self._blocker.is_closed():
            await self._blocker.close()
        await self.watcher.close()


async def test_connection_lost_mid_batch_stores_nothing_and_a_retry_stores_once(
        db: PgDatabase, pg_dsn: str) -> None:
    ws, ch, users = await _workspace(db)
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    writer = GroupCommitWriter(db, window_ms=5.0, lanes=1)
    first = await writer.append(shard, new_msg(ws, ch, users[0], "before", "k0"))
    assert first.seq == 1
    hold = await CounterHold.take(pg_dsn, ch)
    try:
        batch = [new_msg(ws, ch, users[i % 3], f"m{i}", f"k{i + 1}") for i in range(20)]
        jobs = asyncio.gather(*(writer.append(shard, m) for m in batch),
                              return_exceptions=True)
        [pid] = await hold.waiting()
        assert await hold.watcher.fetchval("SELECT pg_terminate_backend($1)", pid)
        results = await jobs
        await hold.release()
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        # Nothing of the batch is stored, no key is kept, no seq was used.
        assert [m.seq for m in await db.messages.history(ws, ch, after=0, limit=50)] == [1]
        assert (await db.channels.channel(ws, ch)).last_seq == 1  # type: ignore[union-attr]
        assert await hold.watcher.fetchval(
            "SELECT count(*) FROM message_idempotency WHERE client_msg_id = ANY($1::text[])",
            [m.client_msg_id for m in batch]) == 0
        # The client retries every send with its key (new ids, as a new
        # attempt gets): each is stored once, with the next seqs, no gap.
        again = [new_msg(ws, ch, m.user_id, m.text, m.client_msg_id) for m in batch]
        stored = await asyncio.gather(*(writer.append(shard, m) for m in again))
        assert [s.seq for s in stored] == list(range(2, 22))
        twice = await asyncio.gather(*(writer.append(shard, m) for m in batch))
        assert [(s.id, s.seq) for s in twice] == [(s.id, s.seq) for s in stored]
        assert [m.seq for m in await db.messages.history(ws, ch, after=0, limit=50)] == \
            list(range(1, 22))
    finally:
        await hold.close()
        await writer.close()


async def test_the_same_key_in_two_writers_at_once_is_one_message(
        db: PgDatabase, pg_dsn: str) -> None:
    ws, ch, users = await _workspace(db)
    other = PgDatabase([pg_dsn], pool_max=4)
    await other.connect()
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    w1 = GroupCommitWriter(db, window_ms=1.0, lanes=1)
    w2 = GroupCommitWriter(other, window_ms=1.0, lanes=1)
    hold = await CounterHold.take(pg_dsn, ch)
    try:
        # w1's batch inserts the key, then waits for the counter row ...
        one = asyncio.ensure_future(w1.append(shard, new_msg(ws, ch, users[1], "once", "dup")))
        await hold.waiting(1)
        # ... and w2's attempt of the same send (a reconnect to another
        # gateway) waits for w1's uncommitted key.
        two = asyncio.ensure_future(w2.append(shard, new_msg(ws, ch, users[1], "once", "dup")))
        await hold.waiting(2)
        await hold.release()
        a, b = await asyncio.gather(one, two)
    finally:
        await hold.close()
    assert isinstance(a, Message) and isinstance(b, Message)
    assert (a.id, a.seq) == (b.id, b.seq) == (a.id, 1)
    assert [m.seq for m in await db.messages.history(ws, ch, after=0, limit=10)] == [1]
    await w1.close()
    await w2.close()
    await other.close()


async def test_a_second_writer_on_a_held_channel_waits_then_takes_the_next_seq(
        db: PgDatabase, pg_dsn: str) -> None:
    """Two owners of one channel: the second's batch waits on the first's
    counter row lock, then numbers after it (never the same seq, never a
    gap), whichever commits first."""
    ws, ch, users = await _workspace(db)
    other = PgDatabase([pg_dsn], pool_max=4)
    await other.connect()
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    w1 = GroupCommitWriter(db, window_ms=1.0, lanes=1)
    w2 = GroupCommitWriter(other, window_ms=1.0, lanes=1)
    hold = await CounterHold.take(pg_dsn, ch)
    try:
        one = asyncio.gather(*(w1.append(shard, new_msg(ws, ch, users[0], f"a{i}"))
                               for i in range(5)))
        await hold.waiting(1)
        two = asyncio.gather(*(w2.append(shard, new_msg(ws, ch, users[2], f"b{i}"))
                               for i in range(5)))
        await hold.waiting(2)
        await hold.release()
        a, b = await asyncio.gather(one, two)
    finally:
        await hold.close()
    seqs = sorted(m.seq for m in [*a, *b])
    assert seqs == list(range(1, 11))
    # Each writer's batch is contiguous: one transaction, one range.
    for batch in (a, b):
        got = [m.seq for m in batch]
        assert got == list(range(got[0], got[0] + 5))
    await w1.close()
    await w2.close()
    await other.close()
