"""In-process ``Hub``: the embedded default, and the reference implementation.

Rules for this file:

* Every hub sharing one ``InProcessBus`` plays one gateway process of a
  deployment; all of them run on one event loop.  A bus is private to its hub
  unless one is passed in (tests pass one to model two processes).
* Delivery is always deferred with ``loop.call_soon``: ``publish`` never calls
  a handler synchronously, so a handler may publish without re-entering
  itself, exactly as with a networked hub.
* Nothing is ever lost here, so ``on_reset`` is never called and ``healthy`` is
  True from ``start`` until ``close``.

Order: ``call_soon`` callbacks run in FIFO order, and one publish schedules
one callback per subscribed hub, so a hub sees the payloads of one publisher
in publish order (per topic and, stronger than the contract, across topics).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from parley.ports.hub import HubHandler

__all__ = ["InProcessBus", "InProcessHub"]

log = logging.getLogger(__name__)


class InProcessBus:
    """Topic -> subscribed hubs, shared by the hubs of one simulated deployment.

    Invariant: a hub is in ``_subscribers[topic]`` iff its reference count for
    ``topic`` is positive (the "backend subscribed at most once" clause).
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, set[InProcessHub]] = {}

    def attach(self, topic: str, hub: InProcessHub) -> None:
        self._subscribers.setdefault(topic, set()).add(hub)

    def detach(self, topic: str, hub: InProcessHub) -> None:
        hubs = self._subscribers.get(topic)
        if hubs is None:
            return
        hubs.discard(hub)
        if not hubs:
            del self._subscribers[topic]

    def subscriber_count(self, topic: str) -> int:
        """How many hubs are subscribed to ``topic`` (``PUBSUB NUMSUB`` analogue)."""
        return len(self._subscribers.get(topic, ()))

    def fan_out(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Hand ``items`` (in order) to every hub subscribed to their topics."""
        per_hub: dict[InProcessHub, list[tuple[str, bytes]]] = {}
        for topic, payload in items:
            for hub in self._subscribers.get(topic, ()):
                per_hub.setdefault(hub, []).append((topic, payload))
        for hub, batch in per_hub.items():
            hub._enqueue(batch)


class InProcessHub:
    """A ``Hub`` whose backend is a dict; see the module docstring.

    ``InProcessHub(bus=None)``: pass a shared ``InProcessBus`` to connect
    several hubs as if they were processes of one deployment.
    """

    def __init__(self, bus: InProcessBus | None = None) -> None:
        self._bus = bus if bus is not None else InProcessBus()
        self._refcounts: dict[str, int] = {}
        self._handler: HubHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def healthy(self) -> bool:
        return self._handler is not None and not self._closed

    @property
    def bus(self) -> InProcessBus:
        return self._bus

    async def start(self, handler: HubHandler) -> None:
        """Start delivering to ``handler`` (on the running loop).  Called once."""
        if self._handler is not None:
            raise RuntimeError("InProcessHub.start called twice")
        self._loop = asyncio.get_running_loop()
        self._handler = handler

    def _check_open(self) -> None:
        if self._handler is None:
            raise RuntimeError("hub not started")
        if self._closed:
            raise RuntimeError("hub closed")

    async def subscribe(self, topic: str) -> None:
        self._check_open()
        count = self._refcounts.get(topic, 0)
        self._refcounts[topic] = count + 1
        if count == 0:
            self._bus.attach(topic, self)

    async def unsubscribe(self, topic: str) -> None:
        """Drop one reference; an unbalanced unsubscribe is a no-op."""
        self._check_open()
        count = self._refcounts.get(topic, 0)
        if count <= 1:
            self._refcounts.pop(topic, None)
            if count == 1:
                self._bus.detach(topic, self)
        else:
            self._refcounts[topic] = count - 1

    async def publish(self, topic: str, payload: bytes) -> None:
        self._check_open()
        self._bus.fan_out(((topic, bytes(payload)),))

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._check_open()
        self._bus.fan_out([(t, bytes(p)) for t, p in items])

    async def close(self) -> None:
        """Stop delivery (also of payloads already scheduled).  Idempotent."""
        if self._closed:
            return
        self._closed = True
        for topic in self._refcounts:
            self._bus.detach(topic, self)
        self._refcounts.clear()

    # -- delivery ------------------------------------------------------------

    def _enqueue(self, batch: list[tuple[str, bytes]]) -> None:
        assert self._loop is not None  # attached to the bus only after start
        self._loop.call_soon(self._deliver, batch)

    def _deliver(self, batch: list[tuple[str, bytes]]) -> None:
        handler = self._handler
        if handler is None or self._closed:
            return
        for topic, payload in batch:
            # Re-checked per payload: an unsubscribe that returned before this
            # callback ran must stop delivery, even mid-batch.
            if topic not in self._refcounts:
                continue
            try:
                handler.on_message(topic, payload)
            except Exception:
                log.exception("hub handler failed on topic %r", topic)
