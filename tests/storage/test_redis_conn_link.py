"""Tests for ``storage.redis_conn.PubSubLink``: the self-healing pub/sub link.

Two layers (reply matching and the helpers are in ``test_redis_conn.py``):

* ``PubSubLink`` runs against ``FakeConnection``, a scripted stand-in for a
  redis-py connection fed by ``FakeServer``, which answers the way Redis does
  (replies in command order, pushes in between; both in
  ``redis_conn_fakes.py``).  A Hypothesis test drives it with random
  interleavings and checks every waiter gets the outcome of its own command
  and every push for a wanted topic arrives, once, in order.
* Where the behaviour depends on a real server (what its frames look like,
  PING while subscribed, reconnecting after a kill, MOVED from a cluster
  node) the tests use ``redis_url``/``redis_cluster_nodes``, ``key_prefix``
  topics and a per-test client name; the only connections they kill are the
  ones carrying that name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, parse_url
from redis.crc import key_slot

from storage.redis_conn import (
    PLAIN,
    SHARDED,
    ConnectionFactory,
    Dialect,
    LinkState,
    PubSubLink,
    Reply,
    SubscribeOutcome,
)
from tests.storage.redis_conn_fakes import (
    MOVED,
    NOPERM,
    SILENCE,
    SPINS,
    TIMEOUT_S,
    FakeConnection,
    FakeServer,
    Listener,
    Tuning,
    dial_from,
    eventually,
    outcome,
    started_link,
)

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
