"""The bundle of backends that domain actions use, built by the composition
root.  Typed by interfaces only: nothing here names a concrete backend."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from parley.auth import TokenIssuer
from parley.config import Settings
from parley.ids import IdAllocator
from storage.interfaces import Hub, MessageAppender, Store
from storage.interfaces_blobs import BlobStore
from storage.interfaces_presence import PresenceStore

log = logging.getLogger("parley.services")


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    writer: MessageAppender
    hub: Hub
    ids: IdAllocator
    tokens: TokenIssuer
    presence: PresenceStore
    blobs: BlobStore  # file bytes (local disk or S3); the index lives in ``store``

    async def publish(self, topic: str, payload: bytes) -> None:
        """Best-effort publish: the database already holds the truth, and
        gateways backfill whatever the hub loses (see storage.interfaces.Hub)."""
        try:
            await self.hub.publish(topic, payload)
        except Exception:
            log.warning("hub publish to %s failed; gateways will backfill", topic, exc_info=True)

    async def publish_many(self, items: list[tuple[str, bytes]]) -> None:
        try:
            await self.hub.publish_many(items)
        except Exception:
            log.warning("hub publish of %d events failed; gateways will backfill", len(items),
                        exc_info=True)
