"""Tests for ``storage.redis_conn``: reply matching, the pub/sub link, its helpers.

Three layers:

* ``PubSubSession`` (sans-IO) gets example tests: which frame answers which
  command, and what counts as a desync.
* ``PubSubLink`` runs against ``FakeConnection``, a scripted stand-in for a
  redis-py connection fed by ``FakeServer``, which answers the way Redis does
  (replies in command order, pushes in between).  A Hypothesis test drives it
  with random interleavings and checks every waiter gets the outcome of its
  own command and every push for a wanted topic arrives, once, in order.
* Where the behaviour depends on a real server (what its frames look like,
  PING while subscribed, reconnecting after a kill, MOVED from a cluster
  node) the tests use ``redis_url``/``redis_cluster_nodes``, ``key_prefix``
  topics and a per-test client name; the only connections they kill are the
  ones carrying that name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, ResponseError

from storage.redis_conn import (
    PLAIN,
    SHARDED,
    Backoff,
    ConnectionFactory,
    Dial,
    Dialect,
    LinkState,
    Op,
    OpKind,
    ProtocolDesync,
    PubSubLink,
    PubSubSession,
    Reply,
    SubscribeOutcome,
    dial_connection,
    enforced_connection_kwargs,
    redact_url,
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


# --------------------------------------------------------------------------- session (sans-IO)


def new_waiter() -> asyncio.Future[SubscribeOutcome]:
    return asyncio.get_running_loop().create_future()


def test_commands_are_packed_in_the_dialect() -> None:
    ops = [Op(OpKind.SUBSCRIBE, "t"), Op(OpKind.UNSUBSCRIBE, "t"), Op(OpKind.PING, "")]
    plain, shard = PubSubSession(PLAIN), PubSubSession(SHARDED)
    assert [plain.pack(op) for op in ops] == [("SUBSCRIBE", "t"), ("UNSUBSCRIBE", "t"), ("PING",)]
    assert [shard.pack(op) for op in ops] == [("SSUBSCRIBE", "t"), ("SUNSUBSCRIBE", "t"), ("PING",)]


async def test_each_ack_resolves_the_waiter_of_its_own_command() -> None:
    session = PubSubSession(PLAIN)
    a, b = new_waiter(), new_waiter()
    session.sent([Op(OpKind.SUBSCRIBE, "a", a), Op(OpKind.SUBSCRIBE, "b", b)])
    assert session.on_frame([b"subscribe", b"a", 1]) == (Reply.SUBSCRIBED, "a")
    assert outcome(a) is SubscribeOutcome.ACKED and not b.done()
    assert session.on_frame([b"subscribe", b"b", 2]) == (Reply.SUBSCRIBED, "b")
    assert outcome(b) is SubscribeOutcome.ACKED


@pytest.mark.parametrize(
    ("in_flight", "arrives"),
    [
        ("sub a", [b"subscribe", b"b", 1]),  # answers a command that is not the oldest
        ("sub a", [b"ssubscribe", b"a", 1]),  # another dialect's ack
        ("sub a", [b"unsubscribe"]),  # too short
        ("sub a", [b"subscribe", "a", 1]),  # channel not bytes
        ("sub a", b"OK"),
        ("sub a", 42),
        ("", [b"subscribe", b"a", 1]),  # nothing in flight
        ("", b"PONG"),
        ("", NOPERM),
        ("ping", ResponseError("ERR unknown")),  # PING is never refused
    ],
)
async def test_a_reply_to_nothing_sent_is_a_desync(in_flight: str, arrives: object) -> None:
    session = PubSubSession(PLAIN)
    ops = {"sub a": [Op(OpKind.SUBSCRIBE, "a", new_waiter())], "ping": [Op(OpKind.PING, "")]}
    session.sent(ops.get(in_flight, []))
    with pytest.raises(ProtocolDesync):
        if isinstance(arrives, ResponseError):
            session.on_error(arrives)
        else:
            session.on_frame(arrives)


async def test_both_pong_shapes_answer_ping() -> None:
    session = PubSubSession(SHARDED)
    session.sent([Op(OpKind.PING, ""), Op(OpKind.PING, "")])
    assert session.on_frame(b"PONG") == (Reply.PONG, "")  # not in subscribed mode
    assert session.on_frame([b"pong", b""]) == (Reply.PONG, "")  # in subscribed mode


async def test_an_unsubscribe_frame_nobody_asked_for_is_a_lost_subscription() -> None:
    session = PubSubSession(SHARDED)
    waiter = new_waiter()
    session.sent([Op(OpKind.SUBSCRIBE, "b", waiter), Op(OpKind.UNSUBSCRIBE, "a")])
    # The server dropped "a" itself; the SSUBSCRIBE of "b" is still the oldest.
    assert session.on_frame([b"sunsubscribe", b"a", 0]) == (Reply.LOST, "a")
    assert session.on_frame([b"ssubscribe", b"b", 1]) == (Reply.SUBSCRIBED, "b")
    assert outcome(waiter) is SubscribeOutcome.ACKED
    # The answer to our SUNSUBSCRIBE is matched, not taken for another loss.
    assert session.on_frame([b"sunsubscribe", b"a", 0]) == (Reply.UNSUBSCRIBED, "a")


@pytest.mark.parametrize(
    ("kind", "error", "reply", "expected"),
    [
        (OpKind.SUBSCRIBE, MOVED, Reply.MOVED, SubscribeOutcome.MOVED),
        (OpKind.SUBSCRIBE, AskError("1234 127.0.0.1:7001"), Reply.MOVED, SubscribeOutcome.MOVED),
        (OpKind.SUBSCRIBE, NOPERM, Reply.REFUSED, SubscribeOutcome.REFUSED),
        # E.g. SUNSUBSCRIBE on a node that lost the slot: not subscribed either way.
        (OpKind.UNSUBSCRIBE, MOVED, Reply.UNSUBSCRIBED, None),
    ],
)
async def test_an_error_answers_the_oldest_command(
    kind: OpKind, error: ResponseError, reply: Reply, expected: SubscribeOutcome | None
) -> None:
    session = PubSubSession(SHARDED)
    first, second = new_waiter(), new_waiter()
    waiter = first if kind is OpKind.SUBSCRIBE else None
    session.sent([Op(kind, "a", waiter), Op(OpKind.SUBSCRIBE, "b", second)])
    assert session.on_error(error) == (reply, "a")
    assert outcome(first) is expected and not second.done()


async def test_synced_once_every_resubscribe_is_answered_whatever_the_answer() -> None:
    session = PubSubSession(SHARDED)
    assert session.synced
    session.sent([Op(OpKind.SUBSCRIBE, t, resync=True) for t in "abc"])
    session.sent([Op(OpKind.SUBSCRIBE, "d", new_waiter())])
    session.on_frame([b"ssubscribe", b"a", 1])
    session.on_error(MOVED)  # b
    assert not session.synced
    session.on_error(NOPERM)  # c
    assert session.synced  # "d" is not part of the resync


async def test_drop_releases_every_waiter() -> None:
    session = PubSubSession(PLAIN)
    waiters = [new_waiter(), new_waiter()]
    session.sent([Op(OpKind.SUBSCRIBE, "a", waiters[0], resync=True)])
    session.sent([Op(OpKind.UNSUBSCRIBE, "x"), Op(OpKind.SUBSCRIBE, "b", waiters[1])])
    session.drop()
    assert [outcome(w) for w in waiters] == [SubscribeOutcome.DROPPED] * 2
    assert session.synced
    with pytest.raises(ProtocolDesync):  # nothing is in flight any more
        session.on_frame([b"subscribe", b"b", 1])


# --------------------------------------------------------------------------- link (fake connection)


@dataclass
class Sent:
    """A command the link sent, as the model of the server sees it."""

    command: tuple[str, ...]
    waiter: asyncio.Future[SubscribeOutcome] | None = None
    resync: bool = False


@dataclass
class LinkModel:
    """What the link should have done so far; the test checks the link against it."""

    server: FakeServer
    wanted: set[str] = field(default_factory=set)
    expected_commands: list[tuple[str, ...]] = field(default_factory=list)
    unanswered: deque[Sent] = field(default_factory=deque)
    resync_left: int = 0
    # Each waiter -> the outcome it must have (None: its command is unanswered).
    waiters: dict[asyncio.Future[SubscribeOutcome], SubscribeOutcome | None] = field(
        default_factory=dict
    )
    delivered: list[tuple[str, bytes]] = field(default_factory=list)
    lost: list[tuple[str, Reply]] = field(default_factory=list)
    awaiting_pong: bool = False

    def settle_waiter(self, waiter: asyncio.Future[SubscribeOutcome] | None,
                      result: SubscribeOutcome) -> None:
        if waiter is not None:
            self.waiters[waiter] = result

    def forget(self, topic: str, reply: Reply) -> None:
        """The link must drop a still-wanted ``topic`` and tell its listener."""
        if topic in self.wanted:
            self.wanted.discard(topic)
            self.lost.append((topic, reply))

    def touches(self, topic: str) -> bool:
        return any(len(s.command) > 1 and s.command[1] == topic for s in self.unanswered)


async def exchange(link: PubSubLink, conn: FakeConnection, model: LinkModel,
                   expected: list[Sent]) -> None:
    """Wait until the link sent ``expected`` and read everything fed; record both."""
    already = len(model.expected_commands)
    want = already + len(expected)
    await eventually(
        lambda: len(conn.received) >= want and conn.idle, "the link to go quiet", spins=SPINS
    )
    for _ in range(5):  # anything extra would show up within a few turns
        await asyncio.sleep(0)
    new = conn.received[already:]
    if expected and expected[0].resync:  # re-subscribes go out in set order
        assert sorted(new) == sorted(s.command for s in expected)
        expected = [Sent(c, None, True) for c in new]
    else:
        assert new == [s.command for s in expected]
    model.expected_commands.extend(new)
    model.unanswered.extend(expected)


async def step(data: st.DataObject, link: PubSubLink, conn: FakeConnection,
               model: LinkModel, topics: list[str], payloads: itertools.count[int]) -> None:
    """Draw one action that is valid now, apply it to the link and to the model."""
    server = model.server
    choices = ["add", "discard"]
    if model.unanswered:
        choices.append("answer")
    if server.subscribed:
        choices.append("push")
    if any(not model.touches(t) for t in server.subscribed):
        choices.append("drop")
    if not model.awaiting_pong:
        choices.append("silence")
    action = data.draw(st.sampled_from(choices), label="action")
    sent: list[Sent] = []

    if action == "add":
        topic = data.draw(st.sampled_from(topics), label="add")
        waiter = link.add(topic)
        model.wanted.add(topic)
        model.waiters[waiter] = None
        sent.append(Sent((server.dialect.subscribe, topic), waiter))
    elif action == "discard":
        topic = data.draw(st.sampled_from(topics), label="discard")
        link.discard(topic)
        if topic in model.wanted:
            model.wanted.discard(topic)
            sent.append(Sent((server.dialect.unsubscribe, topic)))
    elif action == "answer":
        oldest = model.unanswered.popleft()
        model.resync_left -= oldest.resync
        name = oldest.command[0]
        if name == server.dialect.subscribe:
            kind = data.draw(st.sampled_from(["ack", "moved", "refused"]), label="answer")
        elif name == server.dialect.unsubscribe:
            kind = data.draw(st.sampled_from(["ack", "moved"]), label="answer")
        else:
            kind = "ack"
        # The reader clears its "PING unanswered" flag on any frame but not on
        # an error reply; the model follows it (see ``PubSubLink._read_loop``).
        if kind == "ack":
            conn.feed(server.answer(oldest.command))
            model.awaiting_pong = False
            model.settle_waiter(oldest.waiter, SubscribeOutcome.ACKED)
        elif name == server.dialect.unsubscribe:  # an error still means "not subscribed"
            server.subscribed.discard(oldest.command[1])
            conn.feed(MOVED)
        else:
            moved = kind == "moved"
            conn.feed(MOVED if moved else NOPERM)
            model.settle_waiter(
                oldest.waiter, SubscribeOutcome.MOVED if moved else SubscribeOutcome.REFUSED
            )
            model.forget(oldest.command[1], Reply.MOVED if moved else Reply.REFUSED)
    elif action == "push":
        topic = data.draw(st.sampled_from(sorted(server.subscribed)), label="push")
        payload = b"%d" % next(payloads)
        conn.feed(server.message(topic, payload))
        model.awaiting_pong = False
        if topic in model.wanted:  # the link filters by what it wants right now
            model.delivered.append((topic, payload))
    elif action == "drop":
        droppable = sorted(t for t in server.subscribed if not model.touches(t))
        topic = data.draw(st.sampled_from(droppable), label="drop")
        conn.feed(server.drop(topic))
        model.awaiting_pong = False
        model.forget(topic, Reply.LOST)
    else:  # silence: the read times out once, so the link pings
        conn.feed(SILENCE)
        model.awaiting_pong = True
        sent.append(Sent(("PING",)))
    await exchange(link, conn, model, sent)


def check(link: PubSubLink, conn: FakeConnection, model: LinkModel, listener: Listener) -> None:
    assert not conn.disconnected and link.failures == 0, "no desync, no reconnect"
    assert link.state is (LinkState.READY if model.resync_left == 0 else LinkState.SYNCING)
    assert link.wanted == model.wanted
    assert listener.messages == model.delivered  # each wanted push once, in order
    assert listener.lost == model.lost
    assert {w: outcome(w) for w in model.waiters} == model.waiters


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
async def test_random_interleavings_are_matched_and_pushes_delivered_in_order(
    data: st.DataObject,
) -> None:
    dialect = data.draw(st.sampled_from([PLAIN, SHARDED]), label="dialect")
    topics = ["a", "b", "c"]
    conns: list[FakeConnection] = []
    model = LinkModel(FakeServer(dialect))
    # Topics wanted before the link connects are re-subscribed when it does.
    initial = data.draw(st.lists(st.sampled_from(topics), unique=True), label="initial")
    model.wanted, model.resync_left = set(initial), len(initial)
    async with started_link(dial_from(conns), dialect, settle=False) as (link, listener):
        for topic in initial:
            assert outcome(link.add(topic)) is SubscribeOutcome.DROPPED  # not connected yet
        await eventually(lambda: bool(conns), "the link to dial", spins=SPINS)
        conn = conns[0]
        resync = [Sent((dialect.subscribe, t), None, True) for t in model.wanted]
        await exchange(link, conn, model, resync)
        payloads = itertools.count()
        for _ in range(data.draw(st.integers(0, 40), label="steps")):
            await step(data, link, conn, model, topics, payloads)
            check(link, conn, model, listener)
    assert link.state is LinkState.CLOSED
    # Whatever was still waiting is released by the close.
    pending = [w for w, r in model.waiters.items() if r is None]
    assert all(outcome(w) is SubscribeOutcome.DROPPED for w in pending)
    assert len(conns) == 1


async def test_a_desync_drops_the_connection_and_resubscribes_on_a_new_one() -> None:
    conns: list[FakeConnection] = []
    async with started_link(dial_from(conns)) as (link, listener):
        first = conns[0]
        waiter = link.add("a")
        await eventually(lambda: first.received == [("SUBSCRIBE", "a")], "SUBSCRIBE a")
        first.feed([b"subscribe", b"b", 1])  # answers a command never sent
        assert await waiter is SubscribeOutcome.DROPPED
        await eventually(lambda: len(conns) == 2, "a second connection")
        second = conns[1]
        assert first.disconnected
        await eventually(lambda: second.received == [("SUBSCRIBE", "a")], "the resubscribe")
        assert link.state is LinkState.SYNCING
        second.feed([b"subscribe", b"a", 1])
        await eventually(lambda: link.state is LinkState.READY, "READY")
        assert listener.states == [
            LinkState.CONNECTING, LinkState.SYNCING, LinkState.READY,  # nothing to resubscribe
            LinkState.BACKOFF,
            LinkState.CONNECTING, LinkState.SYNCING, LinkState.READY,
        ]
        assert link.ready_count == 2 and link.failures == 0


async def test_two_silent_intervals_declare_the_connection_dead() -> None:
    conns: list[FakeConnection] = []
    async with started_link(dial_from(conns)) as (_, listener):
        first = conns[0]
        first.feed(SILENCE)
        await eventually(lambda: first.received == [("PING",)], "a PING")
        first.feed(b"PONG")  # answered: still alive
        first.feed(SILENCE)
        await eventually(lambda: len(first.received) == 2, "a second PING")
        assert not first.disconnected
        first.feed(SILENCE)  # and that one is not answered
        await eventually(lambda: len(conns) == 2, "a new connection")
        assert first.disconnected
        assert LinkState.BACKOFF in listener.states


async def test_failed_dials_back_off_until_one_succeeds() -> None:
    conns: list[FakeConnection] = []
    async with started_link(dial_from(conns, refusals=3)) as (link, listener):
        # The first attempt failed: wanted now, subscribed on reconnect.
        assert outcome(link.add("a")) is SubscribeOutcome.DROPPED
        assert listener.states[:2] == [LinkState.CONNECTING, LinkState.BACKOFF]
        assert link.failures >= 1  # (the next attempt may already have failed too)
        await eventually(
            lambda: bool(conns) and conns[0].received == [("SUBSCRIBE", "a")], "a resubscribe"
        )
        assert link.failures == 3
        conns[0].feed([b"subscribe", b"a", 1])
        await listener.until(lambda: link.state is LinkState.READY)
        assert link.failures == 0 and link.ready_count == 1
        assert listener.states.count(LinkState.BACKOFF) == 3


async def test_pushes_for_unwanted_topics_and_listener_errors_do_not_stop_the_reader() -> None:
    class Failing(Listener):
        def on_link_message(self, topic: str, payload: bytes) -> None:
            super().on_link_message(topic, payload)
            raise RuntimeError("handler bug")

    conns: list[FakeConnection] = []
    async with started_link(dial_from(conns), listener=Failing()) as (link, listener):
        conn = conns[0]
        link.add("a")
        conn.feed([b"subscribe", b"a", 1])
        conn.feed([b"message", b"a", b"1"])
        conn.feed([b"message", b"zz", b"not wanted"])
        conn.feed([b"message", b"a", b"2"])
        await eventually(lambda: conn.idle, "the reader to drain")
        assert listener.messages == [("a", b"1"), ("a", b"2")]
        assert not conn.disconnected and link.state is LinkState.READY


# --------------------------------------------------------------------------- helpers


def test_backoff_doubles_up_to_the_cap_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the top of each range
    backoff = Backoff(0.05, 0.3)
    assert [backoff.next_delay_s() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    backoff.reset()
    assert backoff.next_delay_s() == 0.05


def test_backoff_is_jittered_within_its_ceiling() -> None:
    delays = [Backoff(1.0, 4.0).next_delay_s() for _ in range(200)]  # each the first: <= 1
    assert all(0.0 <= d <= 1.0 for d in delays) and len(set(delays)) > 100


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:s3cret@cache:6380", "rediss://app:***@cache:6380"),
        ("redis://app@cache:6379", "redis://app@cache:6379"),  # no password to hide
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_enforced_kwargs_pin_what_correctness_depends_on() -> None:
    kwargs = enforced_connection_kwargs(Tuning(client_name="n", connect_timeout_s=1.5))
    assert kwargs["protocol"] == 2
    assert kwargs["decode_responses"] is False
    assert kwargs["retry"].get_retries() == 0 and kwargs["retry_on_error"] == []
    assert kwargs["socket_connect_timeout"] == 1.5 and kwargs["client_name"] == "n"
    assert kwargs["health_check_interval"] == 0


async def test_connection_factory_layers_later_wins_and_enforced_wins_over_all() -> None:
    tuning = Tuning(client_name="hub")
    factory = ConnectionFactory.merge(
        {"password": "from-options", "protocol": 3, "username": "u"},
        {"password": "from-url", "connection_class": SSLConnection},
        None,
        options=tuning,
    )
    assert factory.connection_class is SSLConnection
    assert factory.kwargs["password"] == "from-url" and factory.kwargs["username"] == "u"
    assert factory.kwargs["protocol"] == 2 and factory.kwargs["client_name"] == "hub"
    assert "connection_class" not in factory.kwargs
    plain = ConnectionFactory.merge(parse_url("redis://h:1/2"), options=tuning)
    assert plain.connection_class is Connection and plain.kwargs["db"] == 2
    client = ConnectionFactory.merge(options=tuning).client(host="10.0.0.7", port=7001)
    try:  # a cluster node's address is given per client
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["protocol"]) == ("10.0.0.7", 7001, 2)
    finally:
        await client.aclose()


async def test_dial_gives_up_after_its_timeout_and_closes_the_connection() -> None:
    class Stuck:
        disconnected = False

        async def connect(self) -> None:
            await asyncio.sleep(3600)

        async def disconnect(self, nowait: bool = False) -> None:
            self.disconnected = True

    conn = Stuck()
    with pytest.raises(TimeoutError):
        await dial_connection(cast(AbstractConnection, conn), 0.01)
    assert conn.disconnected


# --------------------------------------------------------------------------- real server


def real_tuning(key_prefix: str, **changes: float) -> Tuning:
    """Tuning whose CLIENT SETNAME is unique to the test, to find only its connections."""
    return dataclasses.replace(Tuning(client_name=f"conn-{key_prefix.rstrip(':')}"), **changes)


async def subscribed(link: PubSubLink, topic: str) -> SubscribeOutcome:
    return await asyncio.wait_for(link.add(topic), TIMEOUT_S)


async def named_clients(url: str, name: str) -> list[dict[str, str]]:
    """CLIENT LIST fields of the connections named ``name`` (and no other)."""
    admin = aioredis.Redis.from_url(url, protocol=2)
    try:
        listing = (await admin.execute_command("CLIENT", "LIST")).decode()
    finally:
        await admin.aclose()
    rows = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in
            listing.splitlines()]
    return [row for row in rows if row.get("name") == name]


async def command(url: str, *args: object) -> Any:
    admin = aioredis.Redis.from_url(url, protocol=2)
    try:
        return await admin.execute_command(*args)
    finally:
        await admin.aclose()


@pytest.mark.parametrize("dialect", [PLAIN, SHARDED], ids=["plain", "sharded"])
async def test_fake_server_speaks_like_redis(
    redis_url: str, key_prefix: str, dialect: Dialect
) -> None:
    """The frames ``FakeServer`` makes are the ones a real server sends."""
    topic, other = f"{key_prefix}t", f"{key_prefix}never"
    publish = "PUBLISH" if dialect is PLAIN else "SPUBLISH"
    script: list[tuple[str, ...]] = [
        ("PING",), (dialect.subscribe, topic), ("PING",), (publish, topic, "hello"),
        (dialect.unsubscribe, topic), ("PING",), (dialect.unsubscribe, other),
    ]
    conn = Connection(**parse_url(redis_url), protocol=2)
    fake = FakeServer(dialect)
    real: list[object] = []
    expected: list[object] = []
    try:
        await conn.connect()  # type: ignore[no-untyped-call]
        for line in script:
            if line[0] == publish:
                await command(redis_url, *line)
                expected.append(fake.message(topic, b"hello"))
            else:
                await conn.send_command(*line)
                expected.append(fake.answer(line))
            real.append(await conn.read_response(timeout=TIMEOUT_S))
    finally:
        await conn.disconnect()
    assert real == expected


async def test_link_subscribes_delivers_in_order_and_unsubscribes(
    redis_url: str, key_prefix: str
) -> None:
    tuning = real_tuning(key_prefix)
    dial = ConnectionFactory.merge(parse_url(redis_url), options=tuning).dialer()
    topic = f"{key_prefix}c:1"
    async with started_link(dial, PLAIN, tuning) as (link, listener):
        assert link.state is LinkState.READY
        assert await subscribed(link, topic) is SubscribeOutcome.ACKED
        for i in range(50):
            await command(redis_url, "PUBLISH", topic, b"%d" % i)
        await listener.until(lambda: len(listener.messages) == 50)
        assert listener.messages == [(topic, b"%d" % i) for i in range(50)]
        link.discard(topic)
        async with asyncio.timeout(TIMEOUT_S):
            while (await command(redis_url, "PUBSUB", "NUMSUB", topic))[1]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert link.state is LinkState.READY and link.failures == 0


async def test_link_pings_a_quiet_connection_in_and_out_of_subscribed_mode(
    redis_url: str, key_prefix: str
) -> None:
    # PING is answered "PONG" with no subscription and ["pong", ""] with one;
    # a mismatch would be a desync, i.e. a reconnect.
    tuning = real_tuning(key_prefix, ping_interval_s=0.1)
    dial = ConnectionFactory.merge(parse_url(redis_url), options=tuning).dialer()
    async with started_link(dial, PLAIN, tuning) as (link, _):
        await asyncio.sleep(0.35)  # a few intervals, unsubscribed
        assert [c["cmd"] for c in await named_clients(redis_url, tuning.client_name)] == ["ping"]
        assert await subscribed(link, f"{key_prefix}c:1") is SubscribeOutcome.ACKED
        await asyncio.sleep(0.35)  # a few intervals, subscribed
        assert [c["cmd"] for c in await named_clients(redis_url, tuning.client_name)] == ["ping"]
        assert link.state is LinkState.READY
        assert link.ready_count == 1 and link.failures == 0, "no ping was mismatched"


async def test_link_reconnects_and_resubscribes_after_its_connection_is_killed(
    redis_url: str, key_prefix: str
) -> None:
    tuning = real_tuning(key_prefix)
    dial = ConnectionFactory.merge(parse_url(redis_url), options=tuning).dialer()
    topics = [f"{key_prefix}c:{i}" for i in range(3)]
    async with started_link(dial, PLAIN, tuning) as (link, listener):
        for topic in topics:
            assert await subscribed(link, topic) is SubscribeOutcome.ACKED
        (ours,) = await named_clients(redis_url, tuning.client_name)
        assert await command(redis_url, "CLIENT", "KILL", "ID", ours["id"]) == 1
        await listener.until(lambda: link.ready_count == 2)
        assert LinkState.BACKOFF in listener.states and link.state is LinkState.READY
        for topic in topics:
            assert await command(redis_url, "PUBLISH", topic, b"after") == 1  # once, not twice
        await listener.until(lambda: len(listener.messages) == len(topics))
        assert sorted(listener.messages) == sorted((t, b"after") for t in topics)


async def test_sharded_subscribe_on_a_node_not_owning_the_slot_meets_moved(
    redis_cluster_nodes: list[str], key_prefix: str
) -> None:
    topic = f"{key_prefix}c:1"
    slot = key_slot(topic.encode())
    owner = next(
        f"{e[2][0].decode()}:{int(e[2][1])}"
        for e in await command(f"redis://{redis_cluster_nodes[0]}", "CLUSTER", "SLOTS")
        if int(e[0]) <= slot <= int(e[1])
    )
    host, port = next(a for a in redis_cluster_nodes if a != owner).rsplit(":", 1)
    tuning = real_tuning(key_prefix)
    dial = ConnectionFactory.merge(options=tuning).dialer(host=host, port=int(port))
    async with started_link(dial, SHARDED, tuning) as (link, listener):
        assert await subscribed(link, topic) is SubscribeOutcome.MOVED
        assert listener.lost == [(topic, Reply.MOVED)]
        assert topic not in link.wanted
        assert link.state is LinkState.READY and link.failures == 0  # not a desync
