"""The bundle of backends that domain actions use, built by the composition
root.  Typed by interfaces only: nothing here names a concrete backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from parley import events
from parley.appkeys import AppKeys
from parley.auth import TokenIssuer
from parley.config import Settings
from parley.ids import IdAllocator
from parley.outage import OutageLog
from parley.ports.app_links import AppLinks
from parley.ports.appender import MessageAppender
from parley.ports.blobs import BlobStore
from parley.ports.hub import Hub, LocalDelivery
from parley.ports.media import Thumbnailer
from parley.ports.outbound import OutboundHttp
from parley.ports.presence import PresenceStore
from parley.ports.stores import Stores

log = logging.getLogger("parley.services")


def _publish_outage() -> OutageLog:
    return OutageLog(log, "hub publish",
                     consequence="live delivery waits; gateways backfill from PostgreSQL "
                                 "when the hub is back")


#: What actions hand to ``publish_many`` / ``publish_soon``: a topic and an
#: encoded event (``events.encode``), plus its seq for a sequenced event on a
#: channel topic (only ``message.created``).
Outgoing = tuple[str, bytes] | tuple[str, bytes, int]


def _to_hub(item: Outgoing) -> tuple[str, bytes]:
    """The hub's form of an event: a publication on channel topics (see
    ``parley.events``), the bare event elsewhere."""
    topic = item[0]
    if topic.startswith(events.CHANNEL_TOPIC_PREFIX):
        return topic, events.publication(item[1], item[2] if len(item) == 3 else None)
    return topic, item[1]


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Stores  # the database ports, one per aggregate
    writer: MessageAppender
    hub: Hub
    ids: IdAllocator
    tokens: TokenIssuer
    presence: PresenceStore
    blobs: BlobStore  # file bytes (local disk or S3); the index lives in ``store``
    thumbnails: Thumbnailer  # untrusted image decoding, out of this process
    app_keys: AppKeys  # signing secrets and upload URLs, derived from the server secret
    outbound: OutboundHttp  # requests to apps' URLs (SSRF-guarded)
    # Socket Mode sockets held by this process (its gateway sets it when it
    # starts); None in a process without a gateway.
    app_links: AppLinks | None = None
    # This process's gateway router, when it has one (the gateway sets it):
    # sequenced channel events reach local sockets without waiting for the
    # hub (parley.ports.hub.LocalDelivery).
    local: LocalDelivery | None = None
    # publish_soon's outbox: events queued in this loop iteration, and the one
    # task that hands them to the hub (one at a time, so they stay in order).
    _outbox: list[Outgoing] = field(default_factory=list, init=False, repr=False)
    _outbox_task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    # One log line when publishing starts failing, a count at intervals, one
    # at recovery: not a traceback per failed publish (parley/outage.py).
    _publish_log: OutageLog = field(default_factory=_publish_outage, init=False, repr=False)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Best-effort publish: the database already holds the truth, and
        gateways backfill whatever the hub loses (see parley.ports.hub.Hub)."""
        try:
            await self.hub.publish(*_to_hub((topic, payload)))
        except Exception as exc:
            self._publish_log.failure(exc, topic)
        else:
            self._publish_log.success()

    async def publish_many(self, items: Sequence[Outgoing]) -> None:
        try:
            await self.hub.publish_many([_to_hub(item) for item in items])
        except Exception as exc:
            self._publish_log.failure(exc, f"{len(items)} events")
        else:
            self._publish_log.success()

    def publish_soon(self, items: Sequence[Outgoing]) -> None:
        """``publish_many`` without a coroutine per caller: the items of every
        call made in one loop iteration go to the hub together, in call
        order, after the calls made before them.  Best-effort, like
        ``publish``; the gateway's hot path calls it once per committed
        message.

        Sequenced channel events also reach this process's own subscribers
        now, synchronously (``_deliver_here``): called from a commit callback
        just after the sender's ack is queued, the ack and the sender's own
        ``message.created`` leave in one write."""
        self._deliver_here(items)
        self._outbox.extend(items)
        if self._outbox_task is None:
            self._outbox_task = asyncio.get_running_loop().create_task(self._drain_outbox())

    async def _drain_outbox(self) -> None:
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                await self.publish_many(batch)
        finally:
            self._outbox_task = None

    def _deliver_here(self, items: Sequence[Outgoing]) -> None:
        """Sequenced channel events to this process's router (see
        ``LocalDelivery``); the hub's copy follows and is dropped by seq.
        A router bug must not cost the publish: logged, and the hub's copy
        still delivers."""
        local = self.local
        if local is None:
            return
        for item in items:
            if len(item) == 3:
                try:
                    local.deliver_now(item[0], item[1], item[2])
                except Exception:
                    log.exception("local delivery failed on %s", item[0])
