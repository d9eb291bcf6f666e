"""Conformance suite for ``parley.ports.presence.PresenceStore``.

Every test runs against ``MemoryPresenceStore``, ``RedisPresenceStore`` on
one real server (``redis_url``) and ``RedisPresenceStore.cluster`` on a real
three-primary cluster (``redis_cluster_nodes``, the hub suite's), each clause
of the contract once.  Several stores of one ``Deployment`` play several
gateway nodes; Redis keys start with ``key_prefix``, so tests sharing a
server never see each other.

Leases are real: a short TTL and a real sleep, so Redis expires keys on its
own clock exactly as in production.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis

from parley.config import Settings
from parley.ports.presence import OFFLINE_UNKNOWN, Presence, PresenceStore, Status
from server.composition import make_presence_store
from storage.presence_memory import MemoryPresenceState, MemoryPresenceStore
from storage.presence_redis import RedisPresenceStore
from tests.fixtures.redis import start_valkey_server

KINDS = ["memory", "redis", "cluster"]
#: Lease TTL in tests; long enough for a few commands, short enough to wait out.
SHORT_TTL_S = 0.4
#: How long past the TTL a check waits (Redis expires keys to the millisecond).
EXPIRY_SLACK_S = 0.2
#: A TTL no test outlives.
LONG_TTL_S = 60.0

ON, AWAY, OFF = Status.ONLINE, Status.AWAY, Status.OFFLINE
_ids = itertools.count(1_000_001)


def uid() -> int:
    return next(_ids)


@dataclass
class Deployment:
    """Stores (nodes) sharing one backend."""

    make: Callable[[], PresenceStore]
    nodes: list[PresenceStore] = field(default_factory=list)

    def node(self) -> PresenceStore:
        store = self.make()
        self.nodes.append(store)
        return store


@pytest.fixture(params=KINDS)
async def deployment(request: pytest.FixtureRequest,
                     key_prefix: str) -> AsyncIterator[Deployment]:
    servers: list[str] = []
    dep: Deployment
    if request.param == "memory":
        state = MemoryPresenceState()
        dep = Deployment(lambda: MemoryPresenceStore(state))
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        servers = [url]
        dep = Deployment(lambda: RedisPresenceStore(url, key_prefix=key_prefix))
    else:
        nodes: list[str] = request.getfixturevalue("redis_cluster_nodes")
        servers = [f"redis://{n}" for n in nodes]
        dep = Deployment(lambda: RedisPresenceStore.cluster(nodes, key_prefix=key_prefix))
    try:
        yield dep
    finally:
        for store in dep.nodes:
            await store.close()
        for url in servers:
            delete_keys(url, key_prefix)


def delete_keys(url: str, prefix: str) -> None:
    """Remove what a test left (user hashes have no TTL) on a possibly shared
    server; on a cluster, call it for every primary (it only sees its own keys)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        # One UNLINK per key: a cluster node refuses keys of several slots in one.
        for i in range(0, len(keys), 1000):
            pipe = client.pipeline(transaction=False)
            for key in keys[i:i + 1000]:
                pipe.unlink(key)
            pipe.execute()
    finally:
        client.close()


def count_keys(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(1 for _ in client.scan_iter(match=prefix + "*", count=1000))
    finally:
        client.close()


def status(p: Presence) -> tuple[Status, bool]:
    return p.status, p.dnd


# --------------------------------------------------------------------------- single node


async def test_unknown_users_are_offline_with_version_zero(deployment: Deployment) -> None:
    store = deployment.node()
    a, b = uid(), uid()
    assert await store.get_many([a, b]) == {a: OFFLINE_UNKNOWN, b: OFFLINE_UNKNOWN}
    assert await store.get_many([]) == {}


async def test_get_many_answers_each_id_once(deployment: Deployment) -> None:
    store = deployment.node()
    a = uid()
    await store.sync({a: ON}, (), LONG_TTL_S)
    got = await store.get_many([a, a, a])
    assert list(got) == [a] and got[a].status is ON


async def test_sync_upserts_and_returns_the_presence_of_users_it_touched(
        deployment: Deployment) -> None:
    store = deployment.node()
    a, b, c = uid(), uid(), uid()
    result = await store.sync({a: ON, b: AWAY}, (), LONG_TTL_S)
    assert not result.lapsed
    assert {u: p.status for u, p in result.changed.items()} == {a: ON, b: AWAY}
    got = await store.get_many([a, b, c])
    assert [got[a].status, got[b].status, got[c].status] == [ON, AWAY, OFF]


async def test_an_entry_is_online_or_away_never_offline(deployment: Deployment) -> None:
    store = deployment.node()
    with pytest.raises(ValueError):
        await store.sync({uid(): OFF}, (), LONG_TTL_S)


async def test_removal_takes_the_user_offline(deployment: Deployment) -> None:
    store = deployment.node()
    a = uid()
    await store.sync({a: ON}, (), LONG_TTL_S)
    result = await store.sync({}, [a], LONG_TTL_S)
    assert result.changed[a].status is OFF
    assert (await store.get_many([a]))[a].status is OFF


async def test_a_user_both_upserted_and_removed_is_upserted(deployment: Deployment) -> None:
    store = deployment.node()
    a = uid()
    await store.sync({a: ON}, [a], LONG_TTL_S)
    assert (await store.get_many([a]))[a].status is ON


async def test_sync_with_nothing_to_write_renews_every_local_user(
        deployment: Deployment) -> None:
    store, reader = deployment.node(), deployment.node()
    users = [uid() for _ in range(50)]
    await store.sync(dict.fromkeys(users, ON), (), SHORT_TTL_S)
    for _ in range(4):  # 4 x TTL/2 = twice the TTL in all
        await asyncio.sleep(SHORT_TTL_S / 2)
        result = await store.sync({}, (), SHORT_TTL_S)
        assert not result.lapsed and result.changed == {}
    assert {p.status for p in (await reader.get_many(users)).values()} == {ON}


async def test_versions_grow_with_every_write(deployment: Deployment) -> None:
    store = deployment.node()
    a = uid()
    seen = [(await store.get_many([a]))[a].version]
    seen.append((await store.sync({a: ON}, (), LONG_TTL_S)).changed[a].version)
    seen.append((await store.sync({a: AWAY}, (), LONG_TTL_S)).changed[a].version)
    seen.append((await store.set_settings(a, dnd=True)).version)
    seen.append((await store.sync({}, [a], LONG_TTL_S)).changed[a].version)
    seen.append((await store.get_many([a]))[a].version)
    assert seen[0] == 0
    assert all(x < y for x, y in itertools.pairwise(seen[:-1])), seen
    assert seen[-1] == seen[-2]  # a read writes nothing


# --------------------------------------------------------------------------- settings


async def test_manual_away_shows_a_connected_user_as_away(deployment: Deployment) -> None:
    store = deployment.node()
    a = uid()
    await store.sync({a: ON}, (), LONG_TTL_S)
    assert (await store.set_settings(a, away=True)).status is AWAY
    assert (await store.get_many([a]))[a].status is AWAY
    assert (await store.set_settings(a, away=False)).status is ON


async def test_manual_away_does_not_make_an_offline_user_appear(
        deployment: Deployment) -> None:
    store = deployment.node()
    a = uid()
    assert (await store.set_settings(a, away=True)).status is OFF


async def test_dnd_is_reported_and_none_leaves_a_setting_alone(
        deployment: Deployment) -> None:
    store = deployment.node()
    a = uid()
    await store.sync({a: ON}, (), LONG_TTL_S)
    assert status(await store.set_settings(a, dnd=True)) == (ON, True)
    assert status(await store.set_settings(a, away=True)) == (AWAY, True)
    assert status(await store.set_settings(a)) == (AWAY, True)
    assert status(await store.set_settings(a, dnd=False, away=False)) == (ON, False)


async def test_settings_outlive_the_nodes(deployment: Deployment) -> None:
    first = deployment.node()
    a = uid()
    await first.sync({a: ON}, (), SHORT_TTL_S)
    await first.set_settings(a, dnd=True)
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    second = deployment.node()
    await second.reap()
    await second.sync({a: ON}, (), LONG_TTL_S)
    assert status((await second.get_many([a]))[a]) == (ON, True)


# --------------------------------------------------------------------------- several nodes


async def test_online_on_any_node_means_online(deployment: Deployment) -> None:
    n1, n2 = deployment.node(), deployment.node()
    a = uid()
    await n1.sync({a: AWAY}, (), LONG_TTL_S)
    assert (await n2.get_many([a]))[a].status is AWAY
    result = await n2.sync({a: ON}, (), LONG_TTL_S)
    assert result.changed[a].status is ON
    await n2.sync({a: AWAY}, (), LONG_TTL_S)
    assert (await n1.get_many([a]))[a].status is AWAY


async def test_leaving_one_node_keeps_the_user_on_the_others(deployment: Deployment) -> None:
    n1, n2 = deployment.node(), deployment.node()
    a = uid()
    await n1.sync({a: ON}, (), LONG_TTL_S)
    await n2.sync({a: AWAY}, (), LONG_TTL_S)
    assert (await n1.sync({}, [a], LONG_TTL_S)).changed[a].status is AWAY
    assert (await n2.sync({}, [a], LONG_TTL_S)).changed[a].status is OFF


async def test_a_node_has_its_own_id(deployment: Deployment) -> None:
    assert deployment.node().node_id != deployment.node().node_id


# --------------------------------------------------------------------------- TTL, lapse, reap


async def test_entries_stop_counting_once_the_lease_expires(deployment: Deployment) -> None:
    dying, survivor = deployment.node(), deployment.node()
    a, b, both = uid(), uid(), uid()
    await dying.sync({a: ON, both: AWAY}, (), SHORT_TTL_S)
    await survivor.sync({b: ON, both: ON}, (), LONG_TTL_S)
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    got = await survivor.get_many([a, b, both])
    # No write happened: the lease expiring is enough.
    assert [got[a].status, got[b].status, got[both].status] == [OFF, ON, ON]


async def test_a_sync_after_expiry_reports_lapsed_under_a_fresh_id(
        deployment: Deployment) -> None:
    node, reader = deployment.node(), deployment.node()
    a, b = uid(), uid()
    await node.sync({a: ON}, (), SHORT_TTL_S)
    old_id = node.node_id
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    result = await node.sync({b: ON}, (), LONG_TTL_S)
    assert result.lapsed and node.node_id != old_id
    assert result.changed[b].status is ON
    # The caller re-sends everyone, as the contract asks.
    again = await node.sync({a: ON, b: ON}, (), LONG_TTL_S)
    assert not again.lapsed
    got = await reader.get_many([a, b])
    assert got[a].status is ON and got[b].status is ON
    # Reaping the old id takes nothing away from the new one.
    await reader.reap()
    assert (await reader.get_many([a]))[a].status is ON


async def test_reap_removes_dead_entries_and_reports_each_user_once(
        deployment: Deployment) -> None:
    dead1, dead2 = deployment.node(), deployment.node()
    reapers = [deployment.node() for _ in range(3)]
    alive = deployment.node()
    users1 = [uid() for _ in range(30)]
    users2 = [uid() for _ in range(30)]
    shared = users1[0]
    await dead1.sync(dict.fromkeys(users1, ON), (), SHORT_TTL_S)
    await dead2.sync(dict.fromkeys(users2, AWAY), (), SHORT_TTL_S)
    await alive.sync({shared: AWAY}, (), LONG_TTL_S)
    for r in reapers:
        await r.sync({}, (), LONG_TTL_S)
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    before = await alive.get_many(users1 + users2)
    results = await asyncio.gather(*(r.reap() for r in reapers))
    reported = [u for res in results for u in res]
    assert sorted(reported) == sorted(users1 + users2)  # each once, by one reaper
    merged = {u: p for res in results for u, p in res.items()}
    assert merged[shared].status is AWAY  # still held by a live node
    assert {merged[u].status for u in users1[1:] + users2} == {OFF}
    # Versions moved on, so the reap orders after what came before.
    assert all(p.version > before[u].version for u, p in merged.items())
    assert await reapers[0].reap() == {}


async def test_a_reap_cut_short_is_redone_once_its_claim_expires(
        deployment: Deployment) -> None:
    """Redis stores only (a memory reap cannot fail part-way): a reaper that
    claimed a dead node and then failed leaves the node listed, so a later
    reap does the work and reports the users; until the claim expires no
    other reaper touches the node."""
    dead, reaper = deployment.node(), deployment.node()
    if not isinstance(reaper, RedisPresenceStore):
        pytest.skip("a memory reap cannot fail part-way")
    reaper.reap_claim_ms = int(SHORT_TTL_S * 1000)
    users = [uid() for _ in range(5)]
    await dead.sync(dict.fromkeys(users, ON), (), SHORT_TTL_S)
    await reaper.sync({}, (), LONG_TTL_S)
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    # The crashed reaper's state: its claim, nothing else done.
    claim = reaper._claim(dead.node_id)
    assert await reaper._r.set(claim, b"crashed", nx=True, px=reaper.reap_claim_ms)
    assert await reaper.reap() == {}
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    got = await reaper.reap()
    assert sorted(got) == sorted(users)
    assert {p.status for p in got.values()} == {OFF}
    assert await reaper.reap() == {}


async def test_reap_leaves_live_nodes_alone(deployment: Deployment) -> None:
    node, reaper = deployment.node(), deployment.node()
    a = uid()
    await node.sync({a: ON}, (), LONG_TTL_S)
    await reaper.sync({}, (), LONG_TTL_S)
    assert await reaper.reap() == {}
    assert (await reaper.get_many([a]))[a].status is ON


async def test_close_leaves_the_lease_to_expire(deployment: Deployment) -> None:
    node, reader = deployment.node(), deployment.node()
    a = uid()
    await node.sync({a: ON}, (), SHORT_TTL_S)
    await node.close()
    await node.close()  # idempotent
    assert (await reader.get_many([a]))[a].status is ON
    await asyncio.sleep(SHORT_TTL_S + EXPIRY_SLACK_S)
    assert (await reader.get_many([a]))[a].status is OFF
    with pytest.raises(RuntimeError):
        await node.get_many([a])


# --------------------------------------------------------------------------- Redis only


async def test_key_prefixes_isolate_deployments(redis_url: str, key_prefix: str) -> None:
    one = RedisPresenceStore(redis_url, key_prefix=key_prefix + "one:")
    two = RedisPresenceStore(redis_url, key_prefix=key_prefix + "two:")
    try:
        a = uid()
        await one.sync({a: ON}, (), LONG_TTL_S)
        assert (await two.get_many([a]))[a].status is OFF
        await two.sync({}, (), SHORT_TTL_S)
        assert await one.reap() == {}
    finally:
        await one.close()
        await two.close()
        delete_keys(redis_url, key_prefix)


def _calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def test_renewing_every_user_is_one_command_and_writes_scale_with_changes() -> None:
    """The budget that lets one gateway absorb heartbeats (own server: exact counts)."""
    server, url = start_valkey_server()
    admin = redis.Redis.from_url(url)
    store = RedisPresenceStore(url, key_prefix="cost:")
    try:
        users = [uid() for _ in range(1000)]
        await store.sync(dict.fromkeys(users, ON), (), LONG_TTL_S)
        before = _calls(admin)
        await store.sync({}, (), LONG_TTL_S)
        after = _calls(admin)
        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        delta["info"] -= 1  # our own INFO
        assert {k: v for k, v in delta.items() if v} == {"set": 1}
        before = _calls(admin)
        await store.sync({users[0]: AWAY, users[1]: AWAY}, [users[2]], LONG_TTL_S)
        after = _calls(admin)
        spent = sum(after.values()) - sum(before.values()) - 1
        # lease 1 + 3 per user + SADD + SREM + MGET
        assert spent == 1 + 3 * 3 + 3
    finally:
        await store.close()
        admin.close()
        server.stop()


# --------------------------------------------------------------------------- cluster only


async def test_cluster_keys_spread_over_every_primary(redis_cluster_nodes: list[str],
                                                      key_prefix: str) -> None:
    """The cluster runs of this suite exercise routing: keys land on every node."""
    store = RedisPresenceStore.cluster(redis_cluster_nodes, key_prefix=key_prefix)
    urls = [f"redis://{n}" for n in redis_cluster_nodes]
    try:
        users = [uid() for _ in range(60)]
        result = await store.sync(dict.fromkeys(users, ON), (), LONG_TTL_S)
        assert {p.status for p in result.changed.values()} == {ON}
        assert all(count_keys(url, key_prefix) > 0 for url in urls)
    finally:
        await store.close()
        for url in urls:
            delete_keys(url, key_prefix)


async def test_make_presence_store_uses_the_cluster_for_several_urls(
        redis_cluster_nodes: list[str]) -> None:
    # Read-only (nothing to clean up under the default prefix): users in
    # several slots, which a single-server client would get MOVED for.
    settings = Settings(redis_url=",".join(f"redis://{n}" for n in redis_cluster_nodes))
    store = make_presence_store(settings)
    try:
        users = [uid() for _ in range(20)]
        assert await store.get_many(users) == dict.fromkeys(users, OFFLINE_UNKNOWN)
    finally:
        await store.close()


async def test_on_a_cluster_renewing_every_user_is_still_one_command(
        redis_cluster_nodes: list[str], key_prefix: str) -> None:
    """The heartbeat budget holds when the store routes over a cluster: a
    sync with nothing to write is one ``SET`` on one primary, whatever the
    number of users (summed over every primary's command statistics)."""
    admins = [redis.Redis.from_url(f"redis://{n}") for n in redis_cluster_nodes]
    store = RedisPresenceStore.cluster(redis_cluster_nodes, key_prefix=key_prefix)

    def calls() -> dict[str, int]:
        total: dict[str, int] = {}
        for admin in admins:
            for name, n in _calls(admin).items():
                total[name] = total.get(name, 0) + n
        return total

    try:
        users = [uid() for _ in range(1000)]
        await store.sync(dict.fromkeys(users, ON), (), LONG_TTL_S)  # also maps the slots
        before = calls()
        await store.sync({}, (), LONG_TTL_S)
        after = calls()
        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        delta["info"] -= len(admins)  # our own INFO, one per primary
        # The cluster is shared with the hub suite, whose idle links may PING.
        delta.pop("ping", None)
        assert {k: v for k, v in delta.items() if v} == {"set": 1}
    finally:
        await store.close()
        for admin in admins:
            admin.close()
        for node in redis_cluster_nodes:
            delete_keys(f"redis://{node}", key_prefix)
