"""Redis Cluster ``Hub`` over sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7+).

Rules for this file:

* A sharded subscription only works on the primary owning the topic's hash
  slot, so the hub keeps one ``PubSubLink`` (one dedicated connection) per
  primary and puts each topic on the link of its slot's owner.  Replicas are
  not used.
* The slot map comes from ``CLUSTER SLOTS`` and is replaced, never patched:
  ``_apply`` installs a new map and moves every topic whose owner changed in
  one synchronous step, so "a subscribed topic is wanted by the link of its
  owner in the current map, or is homeless" holds between awaits.
* Everything from ``hub_redis`` and ``redis_conn`` holds here too: no retry
  once something may have reached Redis, link tasks never raise, resets are
  paid only when every subscription is active.

What is handled after a topology change (resharding, failover):

* A subscribed topic's slot migrates away: the old owner sends an unsolicited
  ``sunsubscribe``; the topic becomes homeless, the map is refreshed, the topic
  is subscribed on the new owner, then ``on_reset`` is called.
* ``SSUBSCRIBE`` answered with ``MOVED``/``ASK`` (stale map): same path; a
  ``subscribe`` waiting on it returns once the topic is active on the new owner.
* ``SPUBLISH`` answered with ``MOVED``: the map is refreshed and those payloads
  (which Redis did not execute) are sent once more to the new owner, in order.
  ``ASK`` (a slot mid-migration) and ``CLUSTERDOWN`` fail the publish.
* A link that cannot connect triggers a refresh, so a failover that promoted
  a replica moves the topics to it; links to nodes that are no longer
  primaries are closed.
* A slot with no owner: its topics wait (homeless, ``healthy`` False) and the
  refresh is retried with backoff until the cluster covers it again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import MovedError, RedisError

from storage.hub_redis import HubCore, HubOptions, HubUnavailable
from storage.redis_conn import (
    SHARDED,
    Backoff,
    ConnectionFactory,
    LinkState,
    NodeAddress,
    PubSubLink,
    Reply,
    SubscribeOutcome,
    startup_url_kwargs,
)

__all__ = ["NodeAddress", "RedisClusterHub", "SlotMap"]

log = logging.getLogger(__name__)

#: How many MOVED answers one ``subscribe`` follows before returning anyway
#: (the subscription then stays homeless/retrying and a reset follows).
MAX_SUBSCRIBE_REDIRECTS = 3
#: Least time between two CLUSTER SLOTS fetches of one hub.
MIN_REFRESH_INTERVAL_S = 0.1


def topic_slot(topic: str) -> int:
    """The hash slot of ``topic`` (hash tags ``{...}`` honoured, as Redis does)."""
    return key_slot(topic.encode())


class SlotMap:
    """Which primary serves each hash slot.  Immutable; from one ``CLUSTER SLOTS`` reply."""

    __slots__ = ("_owners", "complete", "primaries")

    def __init__(self, owners: Sequence[NodeAddress | None]) -> None:
        if len(owners) != REDIS_CLUSTER_HASH_SLOTS:
            raise ValueError("a slot map covers exactly 16384 slots")
        self._owners = tuple(owners)
        self.primaries = frozenset(o for o in self._owners if o is not None)
        self.complete = None not in self._owners

    @classmethod
    def from_cluster_slots(cls, reply: Any, asked: NodeAddress) -> SlotMap:
        """Parse ``CLUSTER SLOTS`` (RESP2); an empty host means "the node asked"."""
        owners: list[NodeAddress | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            raw_host = primary[0]
            host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
            if host in ("", "?"):
                host = asked.host
            address = NodeAddress(host, int(primary[1]))
            for slot in range(start, end + 1):
                owners[slot] = address
        return cls(owners)

    def node_for_slot(self, slot: int) -> NodeAddress | None:
        return self._owners[slot]

    def node_for_topic(self, topic: str) -> NodeAddress | None:
        return self._owners[topic_slot(topic)]


class RedisClusterHub(HubCore):
    """A ``Hub`` over Redis Cluster sharded pub/sub; see the module docstring.

    ``RedisClusterHub(startup_nodes, *, options=None)``: ``startup_nodes`` are
    any cluster nodes (one is enough; the rest of the topology is discovered)
    as ``host:port`` or as ``redis://``/``rediss://`` URLs; credentials and TLS
    are taken from the first URL, unless ``options.connection_kwargs`` sets
    them.  Semantics beyond the ``Hub`` contract are those of
    ``RedisHub`` (``start`` does not raise when the cluster is down;
    ``subscribe`` returns at once while a topic's node is unreachable;
    publishes raise ``HubUnavailable`` and are never retried after they may
    have been executed).  ``healthy`` is True when the slot map covers every
    slot and the link to every primary is READY.  ``publish_many`` sends one
    pipeline per primary involved; it may be partially delivered when it fails.
    """

    def __init__(self, startup_nodes: Sequence[str], *, options: HubOptions | None = None) -> None:
        super().__init__(options or HubOptions())
        if not startup_nodes:
            raise ValueError("RedisClusterHub needs at least one startup node")
        self._startup = [NodeAddress.parse(n) for n in startup_nodes]
        from_url = startup_url_kwargs(startup_nodes)
        # Unlike RedisHub's URL, the startup URL yields to connection_kwargs.
        self._connections = ConnectionFactory.merge(
            from_url, self._options.connection_kwargs, options=self._options
        )
        self._slot_map: SlotMap | None = None
        self._node_links: dict[NodeAddress, PubSubLink] = {}
        self._clients: dict[NodeAddress, aioredis.Redis] = {}
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_again = False
        self._last_refresh_at = float("-inf")
        self._background: set[asyncio.Task[None]] = set()

    # -- HubCore hooks -------------------------------------------------------

    def _links(self) -> Iterable[PubSubLink]:
        return self._node_links.values()

    def _link_for(self, topic: str) -> PubSubLink | None:
        if self._slot_map is None:
            return None
        owner = self._slot_map.node_for_topic(topic)
        return None if owner is None else self._node_links.get(owner)

    def _topology_ready(self) -> bool:
        return self._slot_map is not None and self._slot_map.complete

    def _topology_needed(self) -> None:
        if self._closed:
            return
        if self._refresh_task is not None:
            # One is running; it may have read the map before this change.
            self._refresh_again = True
            return
        self._refresh_task = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name="hub-cluster-refresh"
        )

    async def _after_moved(self, topic: str) -> None:
        for _ in range(MAX_SUBSCRIBE_REDIRECTS):
            task = self._refresh_task
            if task is not None:
                await asyncio.wait((task,))  # never raises, even if close() cancels it
            waiter = self._rehoming.get(topic)
            if waiter is None:
                return
            await asyncio.wait((waiter,))
            if waiter.cancelled() or waiter.result() is not SubscribeOutcome.MOVED:
                return

    # -- LinkListener (beyond HubCore) ---------------------------------------

    def on_link_state(self, link: PubSubLink, state: LinkState) -> None:
        super().on_link_state(link, state)
        if state is LinkState.BACKOFF:
            # The node may be gone for good (failover): ask who owns what now.
            self._topology_needed()

    def on_link_lost(self, link: PubSubLink, topic: str, reply: Reply) -> None:
        if topic not in self._refcounts or self._refused(link, topic, reply):
            return
        log.info("hub cluster: %r left %s (%s); refreshing slots", topic, link.name, reply.value)
        self._homeless.add(topic)
        self._owe_reset()
        self._topology_needed()

    # -- topology ------------------------------------------------------------

    def _client(self, node: NodeAddress) -> aioredis.Redis:
        client = self._clients.get(node)
        if client is None:
            client = self._connections.client(host=node.host, port=node.port)
            self._clients[node] = client
        return client

    async def _fetch_slot_map(self) -> SlotMap:
        known = list(self._slot_map.primaries) if self._slot_map is not None else []
        random.shuffle(known)  # spread the CLUSTER SLOTS load
        candidates = list(dict.fromkeys([*known, *self._startup]))
        errors: list[str] = []
        for node in candidates:
            try:
                async with asyncio.timeout(self._options.connect_timeout_s):
                    # Raw reply on purpose ("CLUSTER SLOTS" as one word would be
                    # reshaped by a response callback); redis-py leaves this untyped.
                    client = self._client(node)
                    reply = await client.execute_command(  # type: ignore[no-untyped-call]
                        "CLUSTER", "SLOTS"
                    )
                return SlotMap.from_cluster_slots(reply, node)
            except (RedisError, OSError, TimeoutError, ValueError) as exc:
                errors.append(f"{node}: {exc}")
        raise HubUnavailable("no cluster node answered CLUSTER SLOTS: " + "; ".join(errors))

    async def _refresh_loop(self) -> None:
        """Fetch and apply the slot map until it covers every subscribed topic."""
        backoff = Backoff(self._options.backoff_base_s, self._options.backoff_cap_s)
        loop = asyncio.get_running_loop()
        try:
            while not self._closed:
                # A node that answers MOVED while CLUSTER SLOTS still names it
                # (mid-migration) would otherwise make this a tight loop.
                pause_s = self._last_refresh_at + MIN_REFRESH_INTERVAL_S - loop.time()
                if pause_s > 0:
                    await asyncio.sleep(pause_s)
                self._last_refresh_at = loop.time()
                self._refresh_again = False
                try:
                    self._apply(await self._fetch_slot_map())
                except Exception as exc:
                    log.warning("hub cluster: topology refresh failed: %s", exc)
                else:
                    if not self._refresh_again and not self._homeless:
                        return
                await asyncio.sleep(backoff.next_delay_s())
        finally:
            self._refresh_task = None

    def _apply(self, new: SlotMap) -> None:
        """Install ``new`` and move every topic whose owner changed (no awaits)."""
        if self._closed:
            return
        old = self._slot_map
        self._slot_map = new
        for node in new.primaries:
            if node not in self._node_links:
                dial = self._connections.dialer(host=node.host, port=node.port)
                link = PubSubLink(str(node), dial, SHARDED, self, self._options)
                self._node_links[node] = link
                link.start()
        for topic in list(self._refcounts):
            old_owner = old.node_for_topic(topic) if old is not None else None
            new_owner = new.node_for_topic(topic)
            if topic in self._homeless:
                self._rehome(topic)
            elif old_owner != new_owner:
                if old_owner is not None and old_owner in self._node_links:
                    self._node_links[old_owner].discard(topic)
                self._rehome(topic)
        for node in [n for n in self._node_links if n not in new.primaries]:
            log.info("hub cluster: %s is no longer a primary; closing its link", node)
            self._spawn(self._node_links.pop(node).close())
            client = self._clients.pop(node, None)
            if client is not None:
                self._spawn(client.aclose())
        self._health_changed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- Hub -----------------------------------------------------------------

    async def _connect(self) -> None:
        """Learn the topology and connect to every primary."""
        try:
            self._apply(await self._fetch_slot_map())
        except HubUnavailable as exc:
            log.warning("hub cluster: starting without a topology: %s", exc)
            self._owe_reset()
            self._topology_needed()
            return
        await asyncio.gather(*(link.wait_settled() for link in self._node_links.values()))

    async def _send_batch(self, items: list[tuple[str, bytes]]) -> list[BaseException | None]:
        errors = await self._send_once(items, range(len(items)))
        moved = [i for i, e in enumerate(errors) if isinstance(e, MovedError)]
        if moved:
            # MOVED means "not executed": resending cannot duplicate.  Indexes
            # stay in order, so per-topic order survives the detour.
            await self._refresh_now()
            self.stats.redirects += len(moved)
            retried = await self._send_once(items, moved)
            for i, error in zip(moved, retried, strict=True):
                errors[i] = error
        return errors

    async def _refresh_now(self) -> None:
        self._topology_needed()
        task = self._refresh_task
        if task is None:
            return
        done, _ = await asyncio.wait((task,), timeout=self._options.connect_timeout_s)
        if not done:
            log.warning("hub cluster: topology refresh still running; publishing anyway")

    async def _send_once(
        self, items: list[tuple[str, bytes]], indexes: Iterable[int]
    ) -> list[BaseException | None]:
        """SPUBLISH ``items[indexes]``, one pipeline per owner, concurrently."""
        errors: list[BaseException | None] = [None] * len(items)
        by_node: dict[NodeAddress, list[int]] = {}
        slot_map = self._slot_map
        for i in indexes:
            owner = slot_map.node_for_topic(items[i][0]) if slot_map is not None else None
            if owner is None:
                errors[i] = HubUnavailable(f"no cluster node owns the slot of {items[i][0]!r}")
                self._topology_needed()
            else:
                by_node.setdefault(owner, []).append(i)
        nodes = list(by_node)
        results = await asyncio.gather(
            *(self._send_node(node, [items[i] for i in by_node[node]]) for node in nodes)
        )
        for node, node_errors in zip(nodes, results, strict=True):
            for i, error in zip(by_node[node], node_errors, strict=True):
                errors[i] = error
        return errors

    async def _send_node(
        self, node: NodeAddress, items: list[tuple[str, bytes]]
    ) -> list[BaseException | None]:
        pipe = self._client(node).pipeline(transaction=False)
        for topic, payload in items:
            pipe.spublish(topic, payload)
        try:
            return await self._execute(pipe, str(node))
        except HubUnavailable as error:
            self._topology_needed()
            return [error] * len(items)

    async def _disconnect(self) -> None:
        refresh = self._refresh_task
        if refresh is not None:
            refresh.cancel()
            await asyncio.gather(refresh, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in self._node_links.values()))
        await asyncio.gather(*(client.aclose() for client in self._clients.values()))
        await asyncio.gather(*self._background, return_exceptions=True)
