"""The hub port: how events move between the processes of a deployment.

Implementations: ``storage/hub_memory.py`` (one process), ``storage/hub_redis.py``
(Redis pub/sub), ``storage/hub_redis_cluster.py`` (sharded pub/sub); one
conformance suite (``tests/storage/test_hub_conformance.py``) for all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class HubHandler(Protocol):
    """What a hub calls when something arrives.  Called on the event loop."""

    def on_message(self, topic: str, payload: bytes) -> None:
        """A payload published to ``topic`` arrived.

        Must not block: it runs on the hub's reader task.  Payloads of one
        topic arrive in the order one publisher published them; payloads from
        two publishers may interleave in any order.
        """

    def on_reset(self) -> None:
        """Delivery may have lost payloads (a connection dropped and came back).

        Every subscription is active again by the time this is called, so a
        consumer that now backfills from the database (PostgreSQL is the source
        of truth) and deduplicates by sequence number misses nothing.
        """


class Hub(Protocol):
    """Moves events between the processes of a Parley deployment.

    Contract, for every implementation:

    * Delivery is **at most once** and best-effort: a payload may be lost
      (for example while Redis restarts), never duplicated by the hub, and
      never altered.  Consumers restore order and fill gaps from PostgreSQL;
      the hub only makes the common case fast.
    * ``subscribe`` is **reference-counted** per topic within one hub
      instance: after n subscribes, n unsubscribes remove the subscription,
      and the backend is subscribed to the topic at most once.  When
      ``subscribe`` returns, every payload published to the topic afterwards
      (by any process) is delivered unless lost as above.
    * ``publish`` returns once the payload is handed to the backend; a
      process receives its own publishes to topics it is subscribed to.
    * ``publish_many`` behaves like calling ``publish`` for each item in
      order, but batches the round trips (one pipeline per call).
    * Payloads are opaque bytes; topics are short ASCII strings
      (``c:<channel id>`` for channels, ``u:<user id>`` for per-user events).
    * ``healthy`` is False while the backend is unreachable; the hub keeps
      retrying on its own and calls ``HubHandler.on_reset`` once it is back.
    """

    @property
    def healthy(self) -> bool: ...

    async def start(self, handler: HubHandler) -> None:
        """Connect and start delivering to ``handler``.  Called once."""

    async def subscribe(self, topic: str) -> None: ...

    async def unsubscribe(self, topic: str) -> None: ...

    async def publish(self, topic: str, payload: bytes) -> None: ...

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None: ...

    async def close(self) -> None:
        """Stop delivery and release connections.  Idempotent."""


class LocalDelivery(Protocol):
    """The subscribers of this process, reached without the hub.

    A gateway sets ``Services.local`` to its router.  When an action
    publishes a *sequenced* channel event (``message.created``), the event is
    handed here synchronously, in the same loop iteration as the commit
    callback that publishes it, and to the hub as well (for the other
    processes).  The hub's copy comes back to this process too (a process
    receives its own publishes) and is dropped there by its seq, which the
    local copy already took: so a local subscriber gets the event once, one
    hub round trip sooner, and the sender's ack and its own ``message.created``
    leave in one socket write.

    Only sequenced events come here: an unsequenced one (typing, a member
    joined) has no seq to drop the hub's copy by, so it would arrive twice.
    """

    def deliver_now(self, topic: str, body: bytes, seq: int) -> None:
        """Deliver ``body`` (an ``events.encode`` payload, not a publication)
        with ``seq`` on channel ``topic`` to local subscribers, as if the hub
        had delivered it.  Must not raise for an unknown topic (nothing
        subscribed here: nothing to do) and must not block."""
