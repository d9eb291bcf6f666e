"""Stand-ins shared by the ``storage.redis_conn`` tests.

``test_redis_conn.py`` (reply matching and helpers) and
``test_redis_conn_link.py`` (the pub/sub link) both use them: a quick
``Tuning``, a recording ``Listener``, ``FakeConnection`` (a scripted redis-py
connection) and ``FakeServer`` (the frames Redis sends; checked against a
real server by ``test_fake_server_speaks_like_redis``).  Not a test module:
nothing here is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import cast

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import MovedError, ResponseError

from storage.redis_conn import (
    PLAIN,
    Dial,
    Dialect,
    LinkState,
    PubSubLink,
    Reply,
    SubscribeOutcome,
)

#: Bound on waiting for anything the link should do or a server should deliver.
TIMEOUT_S = 10.0
#: Loop turns a fake exchange may take before it counts as stuck.
SPINS = 1000


@dataclass(frozen=True)
class Tuning:
    """A ``ConnectionTuning`` without the hub: quick backoff, no spontaneous PING."""

    client_name: str = "parley-test-conn"
    connect_timeout_s: float = 1.0
    socket_timeout_s: float = 1.0
    ping_interval_s: float = 3600.0  # fake tests inject silence explicitly
    backoff_base_s: float = 0.001
    backoff_cap_s: float = 0.01


class Listener:
    """A ``LinkListener`` that records everything."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.states: list[LinkState] = []
        self.lost: list[tuple[str, Reply]] = []
        self.changed = asyncio.Event()

    def on_link_message(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))
        self.changed.set()

    def on_link_state(self, link: PubSubLink, state: LinkState) -> None:
        self.states.append(state)
        self.changed.set()

    def on_link_lost(self, link: PubSubLink, topic: str, reply: Reply) -> None:
        self.lost.append((topic, reply))
        self.changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def eventually(predicate: Callable[[], bool], what: str, *, spins: int = 0) -> None:
    """Let the loop run until ``predicate`` holds: for at most ``spins`` turns if
    given (fake I/O needs nothing else, so more means stuck), else ``TIMEOUT_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    for turn in itertools.count(1):
        if predicate():
            return
        if turn == spins or loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0)


def outcome(waiter: asyncio.Future[SubscribeOutcome]) -> SubscribeOutcome | None:
    return waiter.result() if waiter.done() else None


# --------------------------------------------------------------------------- fakes


#: Fed to ``FakeConnection``: that read times out (``read_response`` returns None).
SILENCE = object()


class FakeConnection:
    """What ``PubSubLink`` uses of a redis-py connection, scripted by the test.

    Commands the link sends land in ``received``; whatever the test ``feed``s
    comes back from ``read_response`` in order (a frame, an exception to
    raise, or ``SILENCE``).
    """

    def __init__(self) -> None:
        self.received: list[tuple[str, ...]] = []
        self.frames: asyncio.Queue[object] = asyncio.Queue()
        self.reading = False
        self.disconnected = False

    def feed(self, item: object) -> None:
        self.frames.put_nowait(item)

    @property
    def idle(self) -> bool:
        """The reader waits for a frame and none is queued."""
        return self.reading and self.frames.empty()

    def pack_commands(self, commands: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
        return list(commands)

    async def send_packed_command(self, packed: list[tuple[str, ...]], check_health: bool) -> None:
        if self.disconnected:
            raise ConnectionError("fake connection closed")
        self.received.extend(packed)

    async def read_response(self, timeout: float | None = None) -> object:
        self.reading = True
        try:
            item = await self.frames.get()
        finally:
            self.reading = False
        if item is SILENCE:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def disconnect(self, nowait: bool = False) -> None:
        self.disconnected = True


def dial_from(conns: list[FakeConnection], refusals: int = 0) -> Dial:
    """A dial that refuses ``refusals`` times, then hands out a new fake each call."""
    left = [refusals]

    async def dial() -> AbstractConnection:
        if left[0] > 0:
            left[0] -= 1
            raise ConnectionRefusedError("fake: nothing listens")
        conn = FakeConnection()
        conns.append(conn)
        return cast(AbstractConnection, conn)

    return dial


@contextlib.asynccontextmanager
async def started_link(
    dial: Dial, dialect: Dialect = PLAIN, tuning: Tuning | None = None,
    listener: Listener | None = None, *, settle: bool = True,
) -> AsyncIterator[tuple[PubSubLink, Listener]]:
    """A started link (first attempt settled, unless not ``settle``); closed on exit."""
    listener = listener or Listener()
    link = PubSubLink("test", dial, dialect, listener, tuning or Tuning())
    link.start()
    try:
        if settle:
            await link.wait_settled()
        yield link, listener
    finally:
        await link.close()


class FakeServer:
    """The frames a Redis server sends on one pub/sub connection (RESP2, via redis-py).

    ``test_fake_server_speaks_like_redis`` checks these against a real server.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.subscribed: set[str] = set()

    def answer(self, command: tuple[str, ...]) -> object:
        name = command[0]
        if name == "PING":
            return [b"pong", b""] if self.subscribed else b"PONG"
        topic = command[1]
        if name == self.dialect.subscribe:
            self.subscribed.add(topic)
            return [self.dialect.subscribe_ack, topic.encode(), len(self.subscribed)]
        assert name == self.dialect.unsubscribe, command
        self.subscribed.discard(topic)
        return [self.dialect.unsubscribe_ack, topic.encode(), len(self.subscribed)]

    def message(self, topic: str, payload: bytes) -> list[bytes]:
        assert topic in self.subscribed, "Redis only pushes subscribed topics"
        return [self.dialect.message, topic.encode(), payload]

    def drop(self, topic: str) -> list[object]:
        """The server ends a subscription on its own (a migrated slot, for sharded)."""
        self.subscribed.remove(topic)
        return [self.dialect.unsubscribe_ack, topic.encode(), len(self.subscribed)]


MOVED = MovedError("1234 127.0.0.1:7001")
NOPERM = ResponseError("NOPERM this user has no permissions to access one of the channels")
