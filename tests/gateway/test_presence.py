"""``gateway.presence``: the presence state machine, subscriptions, typing.

Real Redis throughout: each gateway is a ``PresenceService`` over its own
``RedisPresenceStore`` (one node; keys under the test's ``key_prefix``) and
its own ``RedisHub``, as in production.  Sessions are fakes that record what
they are sent.  Gateway-side times (idle, grace, throttles) run on a fake
clock passed as ``now``; leases run on Redis's own clock, with a short TTL
and real sleeps.

These test the module; end-to-end tests through the WebSocket gateway come
with the wiring.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.presence import (
    ERR_SUBSCRIPTION_LIMIT,
    PRESENCE_CHANGED,
    LocalPresence,
    PresenceOptions,
    presence_topic,
)
from gateway.presence_service import PresenceService
from parley import events
from parley.ports.presence import Presence, Status, SyncResult
from storage.hub_redis import HubOptions, RedisHub
from storage.presence_redis import RedisPresenceStore
from tests.storage.test_presence_conformance import delete_keys

#: Bound on waiting for anything that travels through Redis pub/sub.
DELIVERY_TIMEOUT_S = 5.0
#: Lease TTL for the tests that let a lease expire.
SHORT_TTL_S = 1.0
#: Slack past the TTL before checking expiry.
EXPIRY_SLACK_S = 0.3
#: Gateway-side times, on the fake clock.
OPTS = PresenceOptions(ttl_s=60.0, lease_renew_s=30.0, change_flush_s=1.0,
                       reap_interval_s=0.0, idle_after_s=600.0, idle_check_s=0.0,
                       offline_grace_s=10.0, max_subscriptions=5, typing_throttle_s=3.0)
HUB_OPTIONS = HubOptions(connect_timeout_s=1.0, backoff_base_s=0.02, backoff_cap_s=0.25)

_ids = itertools.count(7_000_001)
T0 = 1_000.0


def new_id() -> int:
    # Distinct per run too: hub topics (p:<uid>, c:<cid>) carry no key prefix.
    return (int(time.time() * 1000) % 10**9) * 10**6 + next(_ids) % 10**6


# --------------------------------------------------------------------------- fakes


class FakeSession:
    """Records what the gateway would write to the socket."""

    def __init__(self, user_id: int, workspace_id: int = 1, channels: tuple[int, ...] = ()):
        self.user_id = user_id
        self.workspace_id = workspace_id
        self.channels: set[int] = set(channels)
        self.sent: list[dict[str, Any]] = []

    def send(self, obj: dict[str, Any]) -> None:
        self.sent.append(obj)

    def reply(self, ref: Any, data: dict[str, Any]) -> None:
        self.send({"t": "ack", "ref": ref, "d": data})

    def error(self, ref: Any, code: str, message: str, *, retryable: bool = False,
              **extra: Any) -> None:
        self.send({"t": "error", "ref": ref,
                   "d": {"code": code, "message": message, "retryable": retryable, **extra}})

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e["t"] == kind]

    def shown(self, user_id: int) -> tuple[str, bool] | None:
        """What this connection currently shows for ``user_id``."""
        state = None
        for e in self.sent:
            if e["t"] == "ack" and "presences" in e["d"]:
                for p in e["d"]["presences"]:
                    if p["user_id"] == user_id:
                        state = (p["status"], p["dnd"])
            elif e["t"] == PRESENCE_CHANGED and e["d"]["user_id"] == user_id:
                state = (e["d"]["status"], e["d"]["dnd"])
        return state

    async def reply_to(self, ref: Any) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            while True:
                for e in self.sent:
                    if e.get("ref") == ref and e["t"] in ("ack", "error"):
                        return e
                await asyncio.sleep(0.005)

        return await asyncio.wait_for(found(), DELIVERY_TIMEOUT_S)


class HubHandler:
    """Plays the router: ``p:`` topics to presence, ``c:`` topics recorded."""

    def __init__(self) -> None:
        self.service: PresenceService | None = None
        self.channel_events: list[tuple[str, dict[str, Any]]] = []

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic.startswith("p:"):
            assert self.service is not None
            self.service.on_hub_message(topic, payload)
        else:
            # A channel topic carries publications (parley.events): header, then the event.
            self.channel_events.append((topic, events.decode(events.read_publication(payload)[1])))

    def on_reset(self) -> None:
        if self.service is not None:
            self.service.on_hub_reset()


class CountingStore:
    """A ``RedisPresenceStore`` that counts calls (to prove what a heartbeat costs)."""

    def __init__(self, inner: RedisPresenceStore) -> None:
        self.inner = inner
        self.syncs: list[tuple[dict[int, Status], list[int]]] = []
        self.fail_after_write = 0  # this many next syncs write, then raise (a lost reply)

    @property
    def node_id(self) -> str:
        return self.inner.node_id

    async def sync(self, upserts: Any, removals: Any, ttl_s: float) -> SyncResult:
        self.syncs.append((dict(upserts), list(removals)))
        result = await self.inner.sync(upserts, removals, ttl_s)
        if self.fail_after_write:
            self.fail_after_write -= 1
            raise ConnectionError("reply lost")
        return result

    async def reap(self) -> dict[int, Presence]:
        return await self.inner.reap()

    async def set_settings(self, user_id: int, *, away: bool | None = None,
                           dnd: bool | None = None) -> Presence:
        return await self.inner.set_settings(user_id, away=away, dnd=dnd)

    async def get_many(self, user_ids: Any) -> dict[int, Presence]:
        return await self.inner.get_many(user_ids)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Gateway:
    service: PresenceService
    store: CountingStore
    hub: RedisHub
    handler: HubHandler
    sizes: dict[int, int] = field(default_factory=dict)
    now: float = T0

    def at(self, seconds: float) -> float:
        self.now = T0 + seconds
        return self.now

    async def tick(self, at: float | None = None) -> None:
        await self.service.tick(self.now if at is None else self.at(at))


@dataclass
class Cluster:
    make: Callable[..., Awaitable[Gateway]]
    gateways: list[Gateway] = field(default_factory=list)


@pytest.fixture
async def cluster(redis_url: str, key_prefix: str) -> AsyncIterator[Cluster]:
    made: list[Gateway] = []

    async def make(options: PresenceOptions = OPTS) -> Gateway:
        handler = HubHandler()
        hub = RedisHub(redis_url, options=HUB_OPTIONS)
        await hub.start(handler)
        store = CountingStore(RedisPresenceStore(redis_url, key_prefix=key_prefix))
        sizes: dict[int, int] = {}

        async def channel_size(workspace_id: int, channel_id: int) -> int:
            return sizes.get(channel_id, 2)

        service = PresenceService(store, hub, channel_size, options=options,
                                  clock=lambda: gw.now)
        handler.service = service
        gw = Gateway(service, store, hub, handler, sizes)
        made.append(gw)
        return gw

    try:
        yield Cluster(make, made)
    finally:
        for gw in made:
            await gw.service.close()
            await gw.hub.close()
            await gw.store.close()
        delete_keys(redis_url, key_prefix)


async def eventually(check: Callable[[], object], timeout: float = DELIVERY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def watch(gw: Gateway, *user_ids: int, ref: Any = "w") -> FakeSession:
    """A connection on ``gw`` that subscribed to ``user_ids``."""
    watcher = FakeSession(new_id())
    gw.service.on_open(watcher)
    assert gw.service.handle(watcher, "presence.subscribe", ref, {"user_ids": list(user_ids)})
    reply = await watcher.reply_to(ref)
    assert reply["t"] == "ack", reply
    return watcher


# --------------------------------------------------------------------------- state machine


async def test_a_connecting_user_goes_online_at_the_next_flush(cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    user = FakeSession(new_id())
    watcher = await watch(b, user.user_id)
    assert watcher.shown(user.user_id) == ("offline", False)
    a.service.on_open(user)
    await a.tick()
    await eventually(lambda: watcher.shown(user.user_id) == ("online", False))


async def test_heartbeats_touch_no_store_and_publish_nothing(cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    users = [FakeSession(new_id()) for _ in range(20)]
    for s in users:
        a.service.on_open(s)
    await a.tick(at=0)
    watcher = await watch(b, users[0].user_id)
    syncs = len(a.store.syncs)
    published = a.service.stats.published
    for second in range(1, 29):  # heartbeats and flushes, lease not yet due
        for s in users:
            a.service.on_heartbeat(s, a.at(second))
        await a.tick()
    assert len(a.store.syncs) == syncs
    assert a.service.stats.published == published
    assert len(watcher.of(PRESENCE_CHANGED)) == 0
    await a.tick(at=30)  # the lease renewal: one sync, nothing in it
    assert a.store.syncs[syncs:] == [({}, [])]


async def test_an_idle_user_goes_away_and_activity_brings_them_back(cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    user = FakeSession(new_id())
    a.service.on_open(user, now=a.at(0))
    await a.tick()
    watcher = await watch(b, user.user_id)
    assert watcher.shown(user.user_id) == ("online", False)
    # Heartbeats that report no activity keep the connection, not the activity.
    a.service.on_heartbeat(user, a.at(300), active=False)
    await a.tick(at=599)
    assert watcher.shown(user.user_id) == ("online", False)
    await a.tick(at=600)
    await eventually(lambda: watcher.shown(user.user_id) == ("away", False))
    a.service.on_heartbeat(user, a.at(620))
    await a.tick()
    await eventually(lambda: watcher.shown(user.user_id) == ("online", False))


async def test_typing_counts_as_activity(cluster: Cluster) -> None:
    a = await cluster.make()
    cid = new_id()
    user = FakeSession(new_id(), channels=(cid,))
    a.service.on_open(user, now=a.at(0))
    await a.tick(at=601)
    assert (await a.store.get_many([user.user_id]))[user.user_id].status is Status.AWAY
    a.service.handle(user, "typing", None, {"channel_id": cid}, now=a.at(602))
    await a.tick()
    assert (await a.store.get_many([user.user_id]))[user.user_id].status is Status.ONLINE


async def test_several_devices_online_if_any_is_offline_when_the_last_goes(
        cluster: Cluster) -> None:
    a, b, c = await cluster.make(), await cluster.make(), await cluster.make()
    uid = new_id()
    phone, laptop_a, laptop_b = FakeSession(uid), FakeSession(uid), FakeSession(uid)
    a.service.on_open(phone, now=a.at(0))
    a.service.on_open(laptop_a, now=a.at(0))
    b.service.on_open(laptop_b, now=b.at(0))
    await a.tick()
    await b.tick()
    watcher = await watch(c, uid)
    assert watcher.shown(uid) == ("online", False)
    # Idle on gateway a, active on gateway b: online.
    await a.tick(at=700)
    await asyncio.sleep(0.05)
    assert watcher.shown(uid) == ("online", False)
    assert (await c.store.get_many([uid]))[uid].status is Status.ONLINE
    # The active device leaves: only idle ones remain, so away.
    b.service.on_close(laptop_b, now=b.at(700))
    await b.tick(at=711)
    await eventually(lambda: watcher.shown(uid) == ("away", False))
    # One of two devices on a closes: still away; the second: offline after the grace.
    a.service.on_close(phone, now=a.at(720))
    await a.tick(at=740)
    a.service.on_close(laptop_a, now=a.at(741))
    await a.tick(at=750)
    assert watcher.shown(uid) == ("away", False)
    await a.tick(at=751)
    await eventually(lambda: watcher.shown(uid) == ("offline", False))


async def test_a_reconnect_within_the_grace_period_changes_nothing(cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    uid = new_id()
    first = FakeSession(uid)
    a.service.on_open(first, now=a.at(0))
    await a.tick()
    watcher = await watch(b, uid)
    syncs = len(a.store.syncs)
    a.service.on_close(first, now=a.at(5))
    a.service.on_open(FakeSession(uid), now=a.at(9))
    for second in range(10, 25):
        await a.tick(at=second)
    assert len(a.store.syncs) == syncs
    await asyncio.sleep(0.05)
    assert watcher.of(PRESENCE_CHANGED) == []


async def test_away_and_dnd_set_by_the_user_apply_on_every_gateway(cluster: Cluster) -> None:
    a, b, c = await cluster.make(), await cluster.make(), await cluster.make()
    uid = new_id()
    on_a, on_b = FakeSession(uid), FakeSession(uid)
    a.service.on_open(on_a)
    b.service.on_open(on_b)
    await a.tick()
    await b.tick()
    watcher = await watch(c, uid)
    assert a.service.handle(on_a, "presence.set", 1, {"status": "away"})
    assert (await on_a.reply_to(1))["d"] == {"user_id": uid, "status": "away", "dnd": False}
    await eventually(lambda: watcher.shown(uid) == ("away", False))
    b.service.handle(on_b, "presence.set", 2, {"dnd": True})
    await on_b.reply_to(2)
    await eventually(lambda: watcher.shown(uid) == ("away", True))
    b.service.handle(on_b, "presence.set", 3, {"status": "auto", "dnd": False})
    await on_b.reply_to(3)
    await eventually(lambda: watcher.shown(uid) == ("online", False))


async def test_presence_set_rejects_bad_fields(cluster: Cluster) -> None:
    a = await cluster.make()
    s = FakeSession(new_id())
    a.service.on_open(s)
    for ref, d in enumerate([{}, {"status": "busy"}, {"dnd": "yes"}]):
        a.service.handle(s, "presence.set", ref, d)
        assert (await s.reply_to(ref))["d"]["code"] == "invalid_field"


async def test_a_failed_flush_is_retried_and_leaving_users_still_go(cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    stays, leaves = FakeSession(new_id()), FakeSession(new_id())
    w = await watch(b, stays.user_id, leaves.user_id)
    a.service.on_open(stays, now=a.at(0))
    a.service.on_open(leaves, now=a.at(0))
    a.service.on_close(leaves, now=a.at(0.5))
    a.store.fail_after_write = 1  # written, but the gateway cannot know
    await a.tick(at=1)
    assert a.service.stats.sync_failures == 1
    await a.tick(at=2)  # retried
    await eventually(lambda: w.shown(stays.user_id) == ("online", False))
    # The user who had already left is removed after the grace.
    await a.tick(at=11)
    await eventually(lambda: w.shown(leaves.user_id) == ("offline", False))
    got = await b.store.get_many([stays.user_id, leaves.user_id])
    assert [got[stays.user_id].status, got[leaves.user_id].status] == [Status.ONLINE,
                                                                       Status.OFFLINE]


# --------------------------------------------------------------------------- killed gateways


async def test_a_killed_gateway_leaves_no_one_online_past_the_ttl(cluster: Cluster) -> None:
    short = PresenceOptions(ttl_s=SHORT_TTL_S, lease_renew_s=SHORT_TTL_S / 2,
                            reap_interval_s=0.0, idle_check_s=0.0)
    doomed, survivor = await cluster.make(short), await cluster.make(short)
    users = [FakeSession(new_id()) for _ in range(10)]
    for s in users:
        doomed.service.on_open(s)
    await doomed.tick()
    died_at = time.monotonic()  # "killed": no tick, no close, from here on
    watcher = await watch(survivor, *(s.user_id for s in users))
    assert {watcher.shown(s.user_id) for s in users} == {("online", False)}
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S - (time.monotonic() - died_at))
    ids = [s.user_id for s in users]
    # Readers see everyone offline once the lease has expired, with no write.
    assert {p.status for p in (await survivor.store.get_many(ids)).values()} == {Status.OFFLINE}
    # The survivor's next tick reaps the dead gateway and tells the subscribers.
    await survivor.tick()
    await eventually(lambda: {watcher.shown(u) for u in ids} == {("offline", False)})
    assert time.monotonic() - died_at < SHORT_TTL_S + 2 * EXPIRY_SLACK_S + 1.0


async def test_a_stalled_gateway_resyncs_under_a_new_lease(cluster: Cluster) -> None:
    short = PresenceOptions(ttl_s=SHORT_TTL_S, lease_renew_s=SHORT_TTL_S / 2,
                            reap_interval_s=0.0, idle_check_s=0.0)
    stalled, other = await cluster.make(short), await cluster.make(short)
    user = FakeSession(new_id())
    stalled.service.on_open(user)
    await stalled.tick()
    watcher = await watch(other, user.user_id)
    node = stalled.store.node_id
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    await other.tick()  # reaps the stalled node's entries
    await eventually(lambda: watcher.shown(user.user_id) == ("offline", False))
    await stalled.tick(at=60)  # wakes up: lease lapsed, new id, everyone re-sent
    assert stalled.service.stats.lapses == 1 and stalled.store.node_id != node
    await eventually(lambda: watcher.shown(user.user_id) == ("online", False))


# --------------------------------------------------------------------------- subscriptions


async def test_subscribers_receive_only_the_users_they_watch(cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    u1, u2, bystander = FakeSession(new_id()), FakeSession(new_id()), FakeSession(new_id())
    w1 = await watch(b, u1.user_id)
    w2 = await watch(b, u2.user_id)
    b.service.on_open(bystander)
    for s in (u1, u2):
        a.service.on_open(s)
    await a.tick()
    await eventually(lambda: w1.shown(u1.user_id) == ("online", False)
                     and w2.shown(u2.user_id) == ("online", False))
    assert {e["d"]["user_id"] for e in w1.of(PRESENCE_CHANGED)} == {u1.user_id}
    assert {e["d"]["user_id"] for e in w2.of(PRESENCE_CHANGED)} == {u2.user_id}
    assert bystander.sent == []  # nothing goes to the whole workspace


async def test_the_subscription_cap_is_per_connection_with_a_typed_error(
        cluster: Cluster) -> None:
    a = await cluster.make()  # max_subscriptions=5
    ids = [new_id() for _ in range(7)]
    s = await watch(a, *ids[:4])
    a.service.handle(s, "presence.subscribe", "over", {"user_ids": ids[4:6]})
    err = await s.reply_to("over")
    assert err["t"] == "error" and err["d"]["code"] == ERR_SUBSCRIPTION_LIMIT
    assert err["d"]["limit"] == 5 and err["d"]["subscribed"] == 4
    assert a.service.subscriptions(s) == frozenset(ids[:4])  # all or nothing
    a.service.handle(s, "presence.subscribe", "too-many", {"user_ids": ids[:6]})
    assert (await s.reply_to("too-many"))["d"]["code"] == ERR_SUBSCRIPTION_LIMIT
    # Subscribing again to watched users is free; unsubscribing makes room.
    a.service.handle(s, "presence.subscribe", "again", {"user_ids": ids[:4]})
    assert (await s.reply_to("again"))["t"] == "ack"
    a.service.handle(s, "presence.unsubscribe", "un", {"user_ids": ids[:2]})
    assert (await s.reply_to("un"))["d"] == {"subscribed": 2}
    a.service.handle(s, "presence.subscribe", "fits", {"user_ids": ids[4:7]})
    assert (await s.reply_to("fits"))["t"] == "ack"
    assert len(a.service.subscriptions(s)) == 5
    # Another connection has its own budget.
    await watch(a, *ids[:5])


async def test_unsubscribe_and_close_stop_events_and_release_hub_topics(
        cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    u1, u2 = FakeSession(new_id()), FakeSession(new_id())
    w = await watch(b, u1.user_id, u2.user_id)
    other = await watch(b, u2.user_id)
    assert b.service.watched_users == 2
    b.service.handle(w, "presence.unsubscribe", "u", {"user_ids": [u1.user_id]})
    await w.reply_to("u")
    assert b.service.watched_users == 1
    b.service.on_close(other)
    b.service.handle(w, "presence.unsubscribe", "all", {"all": True})
    await w.reply_to("all")
    assert b.service.watched_users == 0
    await asyncio.sleep(0.05)  # the hub unsubscribes run as tasks
    assert presence_topic(u1.user_id) not in b.hub._refcounts
    a.service.on_open(u1)
    a.service.on_open(u2)
    await a.tick()
    await asyncio.sleep(0.1)
    assert w.of(PRESENCE_CHANGED) == [] and other.of(PRESENCE_CHANGED) == []


async def test_subscribe_validates_ids(cluster: Cluster) -> None:
    a = await cluster.make()
    s = FakeSession(new_id())
    a.service.on_open(s)
    bad: list[dict[str, Any]] = [{}, {"user_ids": []}, {"user_ids": ["x"]}, {"user_ids": 5}]
    for ref, d in enumerate(bad):
        a.service.handle(s, "presence.subscribe", ref, d)
        assert (await s.reply_to(ref))["d"]["code"] == "invalid_field"
    a.service.handle(s, "presence.subscribe", "json", {"user_ids": [str(s.user_id)]})
    assert (await s.reply_to("json"))["t"] == "ack"  # JSON clients send ids as strings


async def test_a_visibility_filter_refuses_users_of_other_workspaces(
        redis_url: str, key_prefix: str) -> None:
    hub = RedisHub(redis_url, options=HUB_OPTIONS)
    handler = HubHandler()
    await hub.start(handler)
    store = RedisPresenceStore(redis_url, key_prefix=key_prefix)
    colleague, stranger = new_id(), new_id()

    async def size(w: int, c: int) -> int:
        return 2

    async def visible(workspace_id: int, ids: list[int]) -> set[int]:
        return {colleague}

    service = PresenceService(store, hub, size, visible=visible, options=OPTS)
    handler.service = service
    try:
        s = FakeSession(new_id())
        service.on_open(s)
        service.handle(s, "presence.subscribe", 1, {"user_ids": [colleague, stranger]})
        err = await s.reply_to(1)
        assert err["d"]["code"] == "user_not_found" and err["d"]["user_ids"] == [stranger]
        assert service.subscriptions(s) == frozenset() and service.watched_users == 0
        service.handle(s, "presence.subscribe", 2, {"user_ids": [colleague]})
        assert (await s.reply_to(2))["t"] == "ack"
    finally:
        await service.close()
        await hub.close()
        await store.close()
        delete_keys(redis_url, key_prefix)


async def test_a_hub_reset_refetches_watched_users(cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    uid = new_id()
    w = await watch(b, uid)
    # A change the hub "lost": written to the store, never published.
    await a.store.sync({uid: Status.ONLINE}, (), 60.0)
    await asyncio.sleep(0.05)
    assert w.shown(uid) == ("offline", False)
    b.service.on_hub_reset()
    await eventually(lambda: w.shown(uid) == ("online", False))


async def test_stale_presence_never_overwrites_newer(cluster: Cluster) -> None:
    a = await cluster.make()
    uid = new_id()
    w = await watch(a, uid)
    topic = presence_topic(uid)

    def payload(status: str, v: int) -> bytes:
        return msgpack.packb({"user_id": uid, "status": status, "dnd": False, "v": v})

    a.service.on_hub_message(topic, payload("online", 10))
    a.service.on_hub_message(topic, payload("away", 9))
    assert w.shown(uid) == ("online", False)
    a.service.on_hub_message(topic, b"\xc1garbage")
    a.service.on_hub_message(topic, payload("away", 11))
    assert w.shown(uid) == ("away", False)
    assert len(w.of(PRESENCE_CHANGED)) == 2
    # A hub reset re-reads and believes the store even with a lower version
    # (a Redis restart starts versions again).
    a.service.on_hub_reset()
    await eventually(lambda: w.shown(uid) == ("offline", False))


# --------------------------------------------------------------------------- typing


async def typing_events(gw: Gateway, cid: int) -> list[dict[str, Any]]:
    await asyncio.sleep(0.1)  # let the hub deliver
    return [e for t, e in gw.handler.channel_events if t == events.channel_topic(cid)]


async def test_typing_goes_to_the_channel_topic_unsequenced_with_an_expiry(
        cluster: Cluster) -> None:
    a, b = await cluster.make(), await cluster.make()
    cid = new_id()
    await b.hub.subscribe(events.channel_topic(cid))
    s = FakeSession(new_id(), channels=(cid,))
    a.service.on_open(s)
    assert a.service.handle(s, "typing", "t", {"channel_id": cid})
    assert (await s.reply_to("t"))["d"] == {"sent": True}
    await eventually(lambda: b.handler.channel_events)
    [(topic, event)] = b.handler.channel_events
    assert topic == f"c:{cid}"
    assert event == {"t": "typing", "d": {"channel_id": cid, "user_id": s.user_id,
                                          "expires_in_ms": 5000}}
    assert "seq" not in event["d"]  # the router delivers it straight away


async def test_typing_is_throttled_per_user_and_channel(cluster: Cluster) -> None:
    a = await cluster.make()
    c1, c2 = new_id(), new_id()
    await a.hub.subscribe(events.channel_topic(c1))
    await a.hub.subscribe(events.channel_topic(c2))
    alice = FakeSession(new_id(), channels=(c1, c2))
    bob = FakeSession(new_id(), channels=(c1,))
    a.service.on_open(alice)
    a.service.on_open(bob)
    sent = []
    for at, who, cid in [(0.0, alice, c1), (1.0, alice, c1), (2.9, alice, c1),
                         (1.0, alice, c2), (1.5, bob, c1), (3.0, alice, c1)]:
        a.service.handle(who, "typing", None, {"channel_id": cid}, now=a.at(at))
        sent.append((at, who.user_id, cid))
    e1 = await typing_events(a, c1)
    e2 = await typing_events(a, c2)
    assert [e["d"]["user_id"] for e in e1] == [alice.user_id, bob.user_id, alice.user_id]
    assert [e["d"]["user_id"] for e in e2] == [alice.user_id]
    assert a.service.stats.typing_throttled == 2
    assert alice.sent == []  # no ref: fire and forget
    a.service.handle(alice, "typing", "r", {"channel_id": c1}, now=a.at(4.0))
    assert (await alice.reply_to("r"))["d"] == {"sent": False, "reason": "throttled"}


async def test_typing_is_not_sent_in_channels_above_the_size_limit(cluster: Cluster) -> None:
    a = await cluster.make()
    big, limit = new_id(), new_id()
    a.sizes[big] = 1_001
    a.sizes[limit] = 1_000
    await a.hub.subscribe(events.channel_topic(big))
    await a.hub.subscribe(events.channel_topic(limit))
    s = FakeSession(new_id(), channels=(big, limit))
    a.service.on_open(s)
    a.service.handle(s, "typing", 1, {"channel_id": big})
    assert (await s.reply_to(1))["d"] == {"sent": False, "reason": "channel_too_large"}
    a.service.handle(s, "typing", 2, {"channel_id": limit})
    assert (await s.reply_to(2))["d"] == {"sent": True}
    assert await typing_events(a, big) == []
    assert len(await typing_events(a, limit)) == 1
    assert a.service.stats.typing_suppressed == 1


async def test_typing_needs_membership_and_is_never_stored(
        cluster: Cluster, redis_url: str, key_prefix: str) -> None:
    import redis.asyncio as aioredis

    a = await cluster.make()
    cid = new_id()
    s = FakeSession(new_id(), channels=(cid,))
    a.service.on_open(s)
    await a.tick()
    r = aioredis.Redis.from_url(redis_url)
    try:
        keys_before = sorted(await r.keys(key_prefix + "*"))
        a.service.handle(s, "typing", 1, {"channel_id": new_id()})
        assert (await s.reply_to(1))["d"]["code"] == "channel_not_found"
        a.service.handle(s, "typing", 2, {"channel_id": cid})
        await s.reply_to(2)
        await a.tick(at=5)
        assert sorted(await r.keys(key_prefix + "*")) == keys_before
    finally:
        await r.aclose()


async def test_other_ops_are_left_to_the_gateway(cluster: Cluster) -> None:
    a = await cluster.make()
    s = FakeSession(new_id())
    a.service.on_open(s)
    assert not a.service.handle(s, "send", 1, {})
    assert not a.service.handle(s, "heartbeat", 1, {})
    assert s.sent == []


# --------------------------------------------------------------------------- sans-IO core


def test_a_heartbeat_allocates_nothing() -> None:
    local = LocalPresence(idle_after_s=600.0)
    keys = [object() for _ in range(1000)]
    for i, k in enumerate(keys):
        local.open(k, i, 0.0)
    local.due(0.0)
    now = 1.5
    activity = local.activity
    for k in keys:  # warm up
        activity(k, now)
    remaining = iter(keys)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        for k in remaining:
            activity(k, now)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Not even a temporary: the peak is where it started.
    assert (current - start, peak - start) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["open", "close", "active", "wait"]),
                          st.integers(0, 5), st.integers(0, 2), st.integers(1, 400)),
                max_size=60))
def test_local_presence_matches_a_model(steps: list[tuple[str, int, int, int]]) -> None:
    """After every ``due``, the entries written equal a direct model of the rules."""
    idle, grace = 600.0, 10.0
    local = LocalPresence(idle_after_s=idle, idle_check_s=0.0, offline_grace_s=grace)
    conns: dict[int, int] = {}  # connection key -> user
    last_active: dict[int, float] = {}
    last_close: dict[int, float] = {}
    store: dict[int, Status] = {}
    now = 0.0
    for op, key, user, dt in steps:
        if op == "open" and key not in conns:
            conns[key] = user
            local.open(key, user, now)
            last_active[user] = now
        elif op == "close" and key in conns:
            u = conns.pop(key)
            local.close(key, now)
            if u not in conns.values():
                last_close[u] = now
        elif op == "active" and key in conns:
            local.activity(key, now)
            last_active[conns[key]] = now
        elif op == "wait":
            now += dt
        batch = local.due(now)
        for u in batch.removals:
            store.pop(u, None)
        store.update(batch.upserts)
        connected = set(conns.values())
        present = {u for u in last_active
                   if u in connected or now < last_close.get(u, -1e9) + grace}
        assert set(store) == present
        for u in connected:  # a leaving user's entry is frozen until it is removed
            assert store[u] is (Status.AWAY if now - last_active[u] >= idle else Status.ONLINE)
