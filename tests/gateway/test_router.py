"""Router backfill: every hub reset is followed by a PostgreSQL read that
starts after it, however the resets interleave with running fetches.

The hub is a recording stand-in (the router only subscribes through it; hub
behaviour has its own conformance suite) and "PostgreSQL" is a list of
committed events with a gate on reads, so each interleaving is forced, not
hoped for.  The multi-gateway chaos test covers the same with real processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway import router as router_mod
from gateway.router import Router
from parley import events

WORKSPACE = 1
CHANNEL = 42


class _Hub:
    def __init__(self) -> None:
        self.topics: list[str] = []

    async def subscribe(self, topic: str) -> None:
        self.topics.append(topic)

    async def unsubscribe(self, topic: str) -> None:
        self.topics.remove(topic)


class _Conn:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.written = asyncio.Event()

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes, /) -> None:
        self.frames.append(data)
        self.written.set()

    def close(self, code: int = 1000, reason: str = "") -> None:
        raise AssertionError(f"closed {code} {reason}")

    def seqs(self) -> list[int]:
        out = []
        for frame in self.frames:
            assert frame[1] < 126  # small frames only in these tests
            out.append(events.decode(frame[2:])["d"]["seq"])
        return out


class _Sub:
    user_id = 7
    session_id = 1
    binary = True
    holding = False

    def __init__(self) -> None:
        self._conn = _Conn()

    @property
    def conn(self) -> _Conn:
        return self._conn

    def hold(self, channel_id: int, seq: int | None, binary_frame: bytes,
             text_frame: Callable[[], bytes]) -> None:
        raise AssertionError("not holding")

    def on_user_event(self, event: dict[str, Any]) -> None:
        pass


def _payload(seq: int) -> bytes:
    return events.encode("message.created", {"channel_id": CHANNEL, "seq": seq, "id": 1000 + seq})


class _Db:
    """Committed events; reads snapshot at call time and may wait at a gate."""

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.gate: asyncio.Event | None = None
        self.reads = 0
        self.reading = asyncio.Event()  # set by every read
        self.fail_next = 0
        self.position_gate: asyncio.Event | None = None

    async def fetch_after(self, wid: int, cid: int, after: int) -> list[tuple[int, bytes]]:
        self.reads += 1
        self.reading.set()
        snapshot = [(s, _payload(s)) for s in self.committed if s > after][:500]
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("store unavailable")
        if self.gate is not None:
            await self.gate.wait()
        return snapshot

    async def position(self, wid: int, cid: int) -> int:
        snapshot = max(self.committed, default=0)
        if self.position_gate is not None:
            await self.position_gate.wait()
        return snapshot


async def _settle(conn: _Conn, want: list[int], timeout_s: float = 3.0) -> None:
    async def until_delivered() -> None:
        while conn.seqs() != want:
            conn.written.clear()
            await conn.written.wait()

    try:
        await asyncio.wait_for(until_delivered(), timeout_s)
    except TimeoutError:
        pass
    assert conn.seqs() == want


async def _router(db: _Db) -> tuple[Router, _Sub]:
    router = Router(_Hub(), db.fetch_after, db.position)  # type: ignore[arg-type]
    router.start()
    sub = _Sub()
    await router.add_channel(sub, WORKSPACE, CHANNEL)
    return router, sub


async def test_reset_during_a_running_backfill_fetches_the_lost_tail() -> None:
    db = _Db()
    router, sub = await _router(db)
    try:
        topic = events.channel_topic(CHANNEL)
        db.committed += [1, 2, 3]
        router.on_message(topic, events.publication(_payload(1), 1))  # 2 and 3: lost by the hub
        db.gate = asyncio.Event()
        router.on_reset()
        await db.reading.wait()
        # The first backfill has read 2..3 and waits.  4 and 5 commit, the hub
        # loses them and resets again: nothing later will reveal the gap.
        db.committed += [4, 5]
        router.on_reset()
        await asyncio.sleep(0)
        db.gate.set()
        db.gate = None
        await _settle(sub.conn, [1, 2, 3, 4, 5])
        assert db.reads >= 2
    finally:
        await router.close()


async def test_live_events_during_a_backfill_do_not_cancel_the_rerun() -> None:
    db = _Db()
    router, sub = await _router(db)
    try:
        topic = events.channel_topic(CHANNEL)
        db.committed += [1, 2]
        db.gate = asyncio.Event()
        router.on_reset()
        await db.reading.wait()
        db.committed += [3, 4]
        router.on_reset()  # 3 lost; 4 arrives live while the first fetch waits
        router.on_message(topic, events.publication(_payload(4), 4))
        db.gate.set()
        db.gate = None
        await _settle(sub.conn, [1, 2, 3, 4])
    finally:
        await router.close()


async def test_failed_backfill_is_retried_by_the_sweeper(monkeypatch: Any) -> None:
    monkeypatch.setattr(router_mod, "BACKFILL_RETRY_S", 0.2)
    db = _Db()
    router, sub = await _router(db)
    try:
        db.committed += [1, 2]
        db.fail_next = 2
        loop = asyncio.get_running_loop()
        began = loop.time()
        router.on_reset()
        await _settle(sub.conn, [1, 2])
        assert db.reads == 3
        assert loop.time() - began >= 2 * 0.2  # backed off between attempts, no storm
    finally:
        await router.close()


async def test_reset_while_the_position_is_read_is_not_forgotten() -> None:
    db = _Db()
    db.committed += [1]
    db.position_gate = asyncio.Event()
    router = Router(_Hub(), db.fetch_after, db.position)  # type: ignore[arg-type]
    router.start()
    sub = _Sub()
    try:
        joining = asyncio.create_task(router.add_channel(sub, WORKSPACE, CHANNEL))
        await asyncio.sleep(0.01)
        # The position read saw seq 1; seq 2 commits and is lost by the hub.
        db.committed += [2]
        router.on_reset()
        await asyncio.sleep(0.01)
        db.position_gate.set()
        await joining
        await _settle(sub.conn, [2])
    finally:
        await router.close()
