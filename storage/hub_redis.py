"""Redis pub/sub ``Hub``, plus the hub policy and batching the cluster hub reuses.

Rules for this file:

* Nothing is retried once it may have reached Redis.  A lost publish is
  allowed (delivery is at most once); a duplicated one is not.  Clients are
  therefore built with zero retries, and a failed pipeline fails its callers.
* Connections, reply matching, reconnects and keep-alive live in
  ``storage.redis_conn`` (whose link tasks never raise); this file decides
  what to subscribe, how to publish and when to call ``on_reset``.
* Nothing here blocks the loop; every wait is bounded by a timeout or by a
  connection that is being torn down.

Theory of operation
-------------------
A ``RedisHub`` is one gateway process's view of Redis.

*Subscriptions* are reference-counted per topic; the first reference makes
the backend subscription, the last removes it.  A payload reaches the handler
only while its topic is wanted, so nothing arrives after ``unsubscribe``
returns, even before Redis confirms the UNSUBSCRIBE.

*Receiving* uses one dedicated connection owned by a ``PubSubLink``
(``storage.redis_conn``), which keeps the server subscribed to the wanted
topics across reconnects and reports payloads and state changes to the hub.

*Publishing* goes through a ``PublishBatcher``: publishes issued in the same
loop iteration, or while the previous pipeline is in flight, go out as one
pipeline; exactly one pipeline is in flight at a time, so Redis receives a
process's publishes in call order, which is what gives per-publisher order.

*Resets*: whenever a link fails (enters ``BACKOFF``) a reset becomes owed; it
is paid (``handler.on_reset()``) once every link is ``READY`` again, i.e. once
every wanted topic has been acknowledged by the server, as the contract asks.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from parley.ports.hub import HubHandler
from storage.redis_conn import (
    PLAIN,
    ConnectionFactory,
    LinkState,
    PubSubLink,
    Reply,
    SubscribeOutcome,
    redact_url,
)

__all__ = [
    "HubCore",
    "HubOptions",
    "HubStats",
    "HubUnavailable",
    "PublishBatcher",
    "RedisHub",
]

log = logging.getLogger(__name__)

#: Bound on dialling plus the connection handshake (AUTH/SELECT/SETINFO).
DEFAULT_CONNECT_TIMEOUT_S = 2.0
#: Bound on one publish pipeline round trip once connected.
DEFAULT_SOCKET_TIMEOUT_S = 5.0
#: Reader silence before it sends PING; a second silent interval with the PING
#: unanswered declares the connection dead (so detection takes at most 2x this).
DEFAULT_PING_INTERVAL_S = 5.0
#: First reconnect delay (upper bound of the jitter); doubles per failure.
DEFAULT_BACKOFF_BASE_S = 0.05
#: Largest reconnect delay: Redis restarts take ~1 s; retrying every 2 s at
#: worst keeps the outage visible to users short without hammering Redis.
DEFAULT_BACKOFF_CAP_S = 2.0
#: Payloads per pipeline when coalescing publishes.  One ``publish_many`` call
#: is never split, whatever its size.
DEFAULT_MAX_BATCH_ITEMS = 1024
#: How long ``close`` waits for the publish pipeline already in flight.
CLOSE_DRAIN_TIMEOUT_S = 5.0


class HubUnavailable(ConnectionError):
    """A publish failed: the payload may or may not have reached the backend.

    A subclass of the built-in ``ConnectionError``, so callers can catch it
    without importing a backend module.
    """


@dataclass(frozen=True, slots=True)
class HubOptions:
    """Tuning shared by ``RedisHub`` and ``RedisClusterHub``; the defaults suit production.

    ``connection_kwargs`` are extra keyword arguments for every redis-py
    connection (``password``, ``username``, ``ssl``...); the hub overrides the
    ones its correctness depends on (RESP2, raw bytes, no retries, timeouts).
    ``on_health_change`` is an observability hook called with the new value of
    ``healthy`` each time it flips (for metrics and readiness probes).  The
    connection fields are what ``storage.redis_conn.ConnectionTuning`` asks for.
    """

    client_name: str = "parley-hub"
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S
    ping_interval_s: float = DEFAULT_PING_INTERVAL_S
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    connection_kwargs: Mapping[str, Any] | None = None
    on_health_change: Callable[[bool], None] | None = None


@dataclass(slots=True)
class HubStats:
    """Monotonic counters, for metrics and tests; cheap to bump on hot paths."""

    published: int = 0  # payloads Redis acknowledged
    publish_failures: int = 0  # payloads whose publish raised HubUnavailable
    pipelines: int = 0  # publish round trips (pipelines) completed
    delivered: int = 0  # payloads handed to handler.on_message
    reconnects: int = 0  # pub/sub connections established after a failure
    redirects: int = 0  # payloads resent to a new owner after MOVED (cluster)
    resets: int = 0  # handler.on_reset calls


# --------------------------------------------------------------------------- publishing


SendBatch = Callable[[list[tuple[str, bytes]]], Awaitable[list[BaseException | None]]]


@dataclass(slots=True, eq=False)
class _PublishRequest:
    items: list[tuple[str, bytes]]
    future: asyncio.Future[None]


class PublishBatcher:
    """Coalesces publishes into ordered pipelines, one pipeline in flight at a time.

    ``send(items)`` performs one round trip (per node) and returns, per item,
    ``None`` or the exception that item failed with; raising fails them all.
    A request fails if any of its items failed.  Cancelling a waiting caller
    does not withdraw its payloads.
    """

    def __init__(self, send: SendBatch, *, max_batch_items: int, stats: HubStats) -> None:
        self._send = send
        self._max_batch_items = max_batch_items
        self._stats = stats
        self._queue: deque[_PublishRequest] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, items: list[tuple[str, bytes]]) -> None:
        if self._closed:
            raise RuntimeError("hub closed")
        if not items:
            return
        loop = asyncio.get_running_loop()
        request = _PublishRequest(items, loop.create_future())
        self._queue.append(request)
        if self._drainer is None:
            # Runs from the next loop iteration: every publish issued in this
            # one joins the same pipeline.
            self._drainer = loop.create_task(self._drain(), name="hub-publisher")
        await request.future

    def _take_batch(self) -> list[_PublishRequest]:
        batch = [self._queue.popleft()]
        size = len(batch[0].items)
        while self._queue and size + len(self._queue[0].items) <= self._max_batch_items:
            request = self._queue.popleft()
            batch.append(request)
            size += len(request.items)
        return batch

    async def _drain(self) -> None:
        batch: list[_PublishRequest] = []
        try:
            while self._queue:
                batch = self._take_batch()
                flat = [item for request in batch for item in request.items]
                try:
                    errors = await self._send(flat)
                except Exception as exc:
                    errors = [exc] * len(flat)
                offset = 0
                for request in batch:
                    n = len(request.items)
                    failed = next((e for e in errors[offset : offset + n] if e is not None), None)
                    offset += n
                    if failed is None:
                        self._stats.published += n
                        if not request.future.done():
                            request.future.set_result(None)
                    else:
                        self._stats.publish_failures += n
                        if not request.future.done():
                            error = HubUnavailable(f"publish failed: {failed}")
                            error.__cause__ = failed
                            request.future.set_exception(error)
                batch = []
        finally:
            self._drainer = None
            # Only reached with requests left when close() cancelled us; the
            # batch in flight may or may not have been published.
            for request in [*batch, *self._queue]:
                if not request.future.done():
                    request.future.set_exception(HubUnavailable("hub closed mid-publish"))
            self._queue.clear()

    async def close(self) -> None:
        """Refuse new publishes; let the pipeline in flight finish (bounded)."""
        self._closed = True
        drainer = self._drainer
        if drainer is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(drainer), CLOSE_DRAIN_TIMEOUT_S)
        except Exception:
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)


# --------------------------------------------------------------------------- shared hub plumbing


class HubCore(abc.ABC):
    """What both Redis hubs share: the ``Hub`` methods, reference counts, publish
    batching, dispatch, health and resets.  A hub supplies its links and how to
    connect, publish one batch and disconnect.

    Invariants:

    * ``_refcounts[topic] > 0`` iff the topic is wanted by exactly one link
      (the one ``_link_for`` names) or is in ``_homeless`` (cluster only:
      its slot has no known owner until the next topology refresh).
    * A reset is owed from the moment a payload may have been lost (a link
      failed, a subscription was dropped by the server) until it is paid,
      which happens only when the hub is healthy and no topic is being
      re-subscribed, so "every subscription is active again" holds.
    """

    def __init__(self, options: HubOptions) -> None:
        self._options = options
        self.stats = HubStats()
        self._refcounts: dict[str, int] = {}
        self._handler: HubHandler | None = None
        self._closed = False
        self._reset_owed = False
        self._reported_healthy = False
        # Topic -> the waiter of its re-subscription after the server dropped it.
        self._rehoming: dict[str, asyncio.Future[SubscribeOutcome]] = {}
        # Subscribed topics no link carries yet (slot owner unknown).
        self._homeless: set[str] = set()
        self._batcher = PublishBatcher(
            self._send_batch, max_batch_items=options.max_batch_items, stats=self.stats
        )

    # -- what each hub supplies ----------------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Start the links (``start`` has set the handler); return once settled."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close every link and client (``close``, after the last pipeline)."""

    @abc.abstractmethod
    async def _send_batch(self, items: list[tuple[str, bytes]]) -> list[BaseException | None]:
        """Publish ``items`` in order (``PublishBatcher``'s ``send``)."""

    @abc.abstractmethod
    def _links(self) -> Iterable[PubSubLink]:
        """Every link of the hub."""

    @abc.abstractmethod
    def _link_for(self, topic: str) -> PubSubLink | None:
        """The link that carries ``topic``, or None while that is unknown."""

    @abc.abstractmethod
    def _topology_needed(self) -> None:
        """Some topic has no link (or met MOVED): find out who owns what."""

    def _topology_ready(self) -> bool:
        """Hub-specific readiness beyond "every link READY"."""
        return True

    # -- health and resets ---------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while any part of the backend is unreachable (see the ``Hub`` contract)."""
        if self._handler is None or self._closed:
            return False
        return self._topology_ready() and all(
            link.state is LinkState.READY for link in self._links()
        )

    def _check_open(self) -> None:
        if self._handler is None:
            raise RuntimeError("hub not started")
        if self._closed:
            raise RuntimeError("hub closed")

    def _owe_reset(self) -> None:
        if self._handler is not None and not self._closed:
            self._reset_owed = True

    def _health_changed(self) -> None:
        """Report a health flip, and pay an owed reset once everything is active."""
        healthy = self.healthy
        if healthy != self._reported_healthy:
            self._reported_healthy = healthy
            hook = self._options.on_health_change
            if hook is not None:
                try:
                    hook(healthy)
                except Exception:
                    log.exception("hub on_health_change hook failed")
        settled = not self._rehoming and not self._homeless
        if healthy and settled and self._reset_owed and self._handler is not None:
            self._reset_owed = False
            self.stats.resets += 1
            try:
                self._handler.on_reset()
            except Exception:
                log.exception("hub handler on_reset failed")

    def _rehome(self, topic: str) -> None:
        """Subscribe ``topic`` again on the link that now carries it; a reset follows."""
        if topic not in self._refcounts or self._closed:
            return
        self._owe_reset()
        link = self._link_for(topic)
        if link is None:
            self._homeless.add(topic)
            self._topology_needed()
            return
        self._homeless.discard(topic)
        waiter = link.add(topic)
        self._rehoming[topic] = waiter
        waiter.add_done_callback(lambda w: self._rehomed(topic, w))

    def _refused(self, link: PubSubLink, topic: str, reply: Reply) -> bool:
        """Handle a SUBSCRIBE the server rejected (ACL...); True if ``reply`` was that.

        Not retried, since it would be refused again, possibly in a tight loop.
        A waiting ``subscribe`` raises; a topic refused while re-subscribing
        stays inactive until it is unsubscribed and subscribed again.
        """
        if reply is not Reply.REFUSED:
            return False
        log.error("hub %s: the server refused to subscribe %r (see its log)", link.name, topic)
        return True

    def _rehomed(self, topic: str, waiter: asyncio.Future[SubscribeOutcome]) -> None:
        if self._rehoming.get(topic) is waiter:
            del self._rehoming[topic]
        self._health_changed()

    # -- LinkListener --------------------------------------------------------

    def on_link_message(self, topic: str, payload: bytes) -> None:
        handler = self._handler
        if handler is not None and not self._closed:
            self.stats.delivered += 1
            handler.on_message(topic, payload)

    def on_link_state(self, link: PubSubLink, state: LinkState) -> None:
        if state is LinkState.BACKOFF:
            self._owe_reset()
        elif state is LinkState.READY and link.ready_count > 1:
            self.stats.reconnects += 1
        self._health_changed()

    # -- Hub -----------------------------------------------------------------

    async def start(self, handler: HubHandler) -> None:
        """Connect and start delivering to ``handler``.  Called once."""
        if self._handler is not None:
            raise RuntimeError("hub already started")
        if self._closed:
            raise RuntimeError("hub closed")
        self._handler = handler
        await self._connect()

    async def subscribe(self, topic: str) -> None:
        self._check_open()
        await self._acquire(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._check_open()
        self._release(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        self._check_open()
        await self._batcher.submit([(topic, payload)])

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._check_open()
        await self._batcher.submit(list(items))

    async def close(self) -> None:
        """Stop delivery and release connections.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._batcher.close()
        await self._disconnect()
        self._refcounts.clear()
        self._health_changed()

    async def _execute(self, pipe: Pipeline, where: str) -> list[BaseException | None]:
        """Run one publish pipeline: per command, None or the error it met.

        Raises ``HubUnavailable`` when the pipeline as a whole failed (the
        payloads may or may not have reached ``where``).
        """
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            raise HubUnavailable(f"publish to {where} failed: {exc}") from exc
        self.stats.pipelines += 1
        return [r if isinstance(r, BaseException) else None for r in results]

    # -- reference counting --------------------------------------------------

    async def _acquire(self, topic: str) -> None:
        """Take one reference; return once the subscription is active (or known lost)."""
        count = self._refcounts.get(topic, 0)
        self._refcounts[topic] = count + 1
        waiter = self._waiter_for(topic, first=count == 0)
        if waiter is None:
            return
        try:
            # Shielded: a second subscriber shares this waiter, and cancelling
            # one caller must not cancel it for the other.
            outcome = await asyncio.shield(waiter)
        except asyncio.CancelledError:
            self._release(topic)
            raise
        if outcome is SubscribeOutcome.REFUSED:
            self._release(topic)
            raise HubUnavailable(f"subscribing to {topic!r} was refused (see the log)")
        if outcome is SubscribeOutcome.MOVED:
            await self._after_moved(topic)

    def _waiter_for(self, topic: str, *, first: bool) -> asyncio.Future[SubscribeOutcome] | None:
        link = self._link_for(topic)
        if link is None:
            # Like subscribing while disconnected: returns now, a reset follows.
            self._homeless.add(topic)
            self._owe_reset()
            self._topology_needed()
            return None
        if first:
            return link.add(topic)
        return link.pending(topic) or self._rehoming.get(topic)

    @abc.abstractmethod
    async def _after_moved(self, topic: str) -> None:
        """A SUBSCRIBE of ``topic`` met MOVED; wait until it is re-homed (or given up)."""

    def _release(self, topic: str) -> None:
        """Drop one reference; an unbalanced release is a no-op."""
        count = self._refcounts.get(topic, 0)
        if count > 1:
            self._refcounts[topic] = count - 1
            return
        if count == 1:
            del self._refcounts[topic]
            self._rehoming.pop(topic, None)
            self._homeless.discard(topic)
            link = self._link_for(topic)
            if link is not None:
                link.discard(topic)


# --------------------------------------------------------------------------- RedisHub


class RedisHub(HubCore):
    """A ``Hub`` over Redis pub/sub (SUBSCRIBE/PUBLISH): one topic per channel.

    ``RedisHub(url, *, options=None)``: ``url`` is a redis-py URL
    (``redis://``, ``rediss://``, ``unix://``).  Beyond the ``Hub`` contract:

    * ``start`` waits for the first connection attempt (at most
      ``connect_timeout_s``) and does not raise if Redis is down: the hub is
      then unhealthy, keeps retrying, and calls ``on_reset`` once connected.
    * ``subscribe`` returns once Redis acknowledged the SUBSCRIBE, or at once
      while disconnected (the topic is subscribed on reconnect, then
      ``on_reset`` is called).
    * ``publish``/``publish_many`` raise ``HubUnavailable`` (a
      ``ConnectionError``) when the payloads may not have reached Redis; they
      are never retried.  Cancelling a publish does not withdraw it.
    * After ``close``, every method but ``close`` raises ``RuntimeError``.
    """

    def __init__(self, url: str, *, options: HubOptions | None = None) -> None:
        super().__init__(options or HubOptions())
        self._where = redact_url(url)  # for logs and errors
        connections = ConnectionFactory.merge(
            self._options.connection_kwargs, parse_url(url), options=self._options
        )
        self._link = PubSubLink(self._where, connections.dialer(), PLAIN, self, self._options)
        self._client = connections.client()

    def _links(self) -> Iterable[PubSubLink]:
        return (self._link,)

    def _link_for(self, topic: str) -> PubSubLink:
        return self._link

    async def _connect(self) -> None:
        self._link.start()
        await self._link.wait_settled()

    async def _send_batch(self, items: list[tuple[str, bytes]]) -> list[BaseException | None]:
        pipe = self._client.pipeline(transaction=False)
        for topic, payload in items:
            pipe.publish(topic, payload)
        return await self._execute(pipe, self._where)

    async def _after_moved(self, topic: str) -> None:
        # A standalone server never answers MOVED; nothing will re-home it.
        return None

    def _topology_needed(self) -> None:
        # One server, one link: there is no topology to learn.
        return None

    def on_link_lost(self, link: PubSubLink, topic: str, reply: Reply) -> None:
        if self._refused(link, topic, reply):
            return
        # Plain pub/sub has no server-side unsubscribe or MOVED; if it happens
        # anyway, subscribe again and tell the consumer it may have missed some.
        log.warning("hub %s: subscription to %r ended by the server (%s)", link.name, topic, reply)
        self._rehome(topic)

    async def _disconnect(self) -> None:
        await self._link.close()
        await self._client.aclose()
