"""The composition root: the one place that picks concrete backends.

From ``Settings`` it builds the ``Services`` bundle the actions use:

===============  ===============================  ===================================
concern          default (nothing configured)     configured
===============  ===============================  ===================================
PostgreSQL       embedded server in data_dir/pg   ``database_url`` (one DSN per shard)
hub              in-process                       Redis pub/sub / Redis Cluster
presence         in-process                       Redis / Redis Cluster (same URLs)
snowflake ids    worker id 0                      worker id leased in PostgreSQL
secret           data_dir/secret (generated)      ``jwt_secret``
file bytes       local disk in data_dir/files     ``s3_bucket`` (+ ``s3_endpoint``): S3
===============  ===============================  ===================================

Background work (``Runtime.start_maintenance``): the cleanup of uploads
never completed, and the Events API dispatcher (events to apps' request
URLs, through the SSRF-guarded ``GuardedHttp``) when ``app_events_dispatch``
is ``inline``; otherwise only the failing-app check, the dispatcher being a
child process (server/app_events_proc.py).  ``server/runner.py`` starts
them in processes that serve the API; several processes running them at
once is harmless (cleanup steps are compare-and-sets; dispatchers lease
(app, channel) pairs; disabling an app is a compare-and-set).

The search indexer (``Runtime.start_indexer``, ``parley.actions.search.index_loop``
over ``storage.pg_search.PgSearchIndexer``) runs in every serving process,
API or gateway: one indexes a shard at a time (an advisory lock per batch),
so more processes only mean another takes over at once when one stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parley.actions.app_dispatch import EventDispatcher
from parley.appkeys import AppKeys
from parley.auth import TokenIssuer
from parley.config import Settings
from parley.ids import IdAllocator, LeasedIdAllocator
from parley.ports.blobs import BlobStore
from parley.ports.hub import Hub
from parley.ports.presence import PresenceStore
from parley.ports.search import SearchIndexer
from parley.services import Services
from storage.embedded import EmbeddedPostgres
from storage.outbound import AddressPolicy, GuardedHttp
from storage.postgres import PgDatabase
from storage.thumbnails import ProcessThumbnailer
from storage.writer import GroupCommitWriter

log = logging.getLogger("parley")


@dataclass
class Runtime:
    settings: Settings
    services: Services
    db: PgDatabase
    writer: GroupCommitWriter
    indexer: SearchIndexer
    embedded: EmbeddedPostgres | None = None
    ids: IdAllocator | None = None
    notes: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dispatcher: EventDispatcher | None = None

    def _start(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        if any(t.get_name() == name for t in self.tasks):
            coro.close()
            return
        self.tasks.append(asyncio.create_task(coro, name=name))

    def start_maintenance(self) -> None:
        """Start the background tasks of an API process (idempotent)."""
        from parley.actions.files import cleanup_loop

        self._start("parley-upload-cleanup", cleanup_loop(self.services))
        if self.settings.app_events_dispatch == "inline":
            self.start_dispatcher()
        else:
            # The dispatcher is elsewhere (server/app_events_proc.py); the
            # failing-app check stays here, where its DMs reach the hub.
            from parley.actions.app_health import check_loop

            self._start("parley-app-health", check_loop(self.services))

    def start_dispatcher(self, *, check_health: bool = True) -> EventDispatcher:
        """Start (once) this process's Events API dispatcher.
        ``check_health=False``: it counts tries but leaves turning failing
        apps off to the API processes (a dispatcher child's case)."""
        if self.dispatcher is None:
            self.dispatcher = EventDispatcher(self.services, self.services.outbound,
                                              check_health=check_health)
            self._start("parley-app-events", self.dispatcher.run())
        return self.dispatcher

    def start_indexer(self) -> None:
        """Start the search indexer loop (idempotent); any serving process."""
        from parley.actions.search import index_loop

        for part in range(self.indexer.partitions):
            self._start(f"parley-search-indexer-{part}", index_loop(self.indexer, partition=part))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
        self.dispatcher = None
        await self.services.outbound.close()
        await self.writer.close()
        await self.services.hub.close()
        await self.services.presence.close()
        await self.services.blobs.close()
        if isinstance(self.ids, LeasedIdAllocator):
            await self.ids.close()
        await self.db.close()
        if self.embedded is not None:
            self.embedded.stop()


def load_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.data_dir / "secret"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def make_hub(settings: Settings) -> Hub:
    # Imported here so that a deployment loads only the backend it uses.
    urls = settings.redis_urls
    if not urls:
        from storage.hub_memory import InProcessHub

        return InProcessHub()
    if len(urls) == 1:
        from storage.hub_redis import RedisHub

        return RedisHub(urls[0])
    from storage.hub_redis_cluster import RedisClusterHub

    return RedisClusterHub(urls)


def make_presence_store(settings: Settings) -> PresenceStore:
    """Chosen like the hub (``make_hub``): in-process with no Redis URL; one
    URL: that Redis server; several: the Redis Cluster they are startup
    nodes of, each command routed to the node owning its key's slot."""
    urls = settings.redis_urls
    if not urls:
        from storage.presence_memory import MemoryPresenceStore

        return MemoryPresenceStore()
    from storage.presence_redis import RedisPresenceStore

    if len(urls) == 1:
        return RedisPresenceStore(urls[0])
    return RedisPresenceStore.cluster(urls)


def make_blob_store(settings: Settings, secret: str) -> BlobStore:
    """S3 (or an S3-compatible service) when a bucket is configured, else
    local disk under data_dir/files with URLs signed by a key derived from
    the server secret."""
    if settings.s3_bucket:
        from storage.blobs_s3 import S3BlobStore

        return S3BlobStore(bucket=settings.s3_bucket, endpoint=settings.s3_endpoint,
                           region=settings.s3_region, access_key=settings.s3_access_key,
                           secret_key=settings.s3_secret_key)
    from storage.blobs_local import LocalBlobStore

    return LocalBlobStore(Path(settings.data_dir) / "files", secret.encode())


async def build(settings: Settings, *, migrate: bool = True,
                dsns: list[str] | None = None, serving: bool = True) -> Runtime:
    """Start every backend ``settings`` selects and return them wired up.

    ``dsns`` overrides the database list (tests pass their own databases).
    ``serving=False`` (``parley migrate``, ``parley shards``) issues no ids,
    so it leases no worker id and may run before the schema exists.
    """
    embedded: EmbeddedPostgres | None = None
    notes: list[str] = []
    dsns = dsns or settings.database_urls
    if not dsns:
        embedded = EmbeddedPostgres(Path(settings.data_dir))
        dsns = [embedded.start()]
        notes.append(f"embedded PostgreSQL in {embedded.pgdata}")
    db = PgDatabase(dsns, pool_max=settings.pg_pool_max,
                    search_index_partitions=settings.search_index_partitions)
    try:
        await db.connect()
        if migrate:
            applied = await db.migrate()
            if applied:
                notes.append(f"applied migrations: {', '.join(applied)}")
        ids: IdAllocator
        if embedded is not None or not serving:
            ids = IdAllocator(0)  # a single embedded process owns the database
        else:
            leased = LeasedIdAllocator(db.leases)
            await leased.start()
            ids = leased
        hub = make_hub(settings)
        presence = make_presence_store(settings)
        writer = GroupCommitWriter(db, window_ms=settings.commit_window_ms,
                                   max_batch=settings.commit_max_batch,
                                   lanes=settings.commit_lanes)
        secret = load_secret(settings)
        tokens = TokenIssuer(secret, settings.jwt_issuer, settings.jwt_audience,
                             settings.access_token_ttl_s)
        blobs = make_blob_store(settings, secret)
        notes.append(f"files in S3 bucket {settings.s3_bucket}" if settings.s3_bucket
                     else f"files on local disk in {Path(settings.data_dir) / 'files'}")
    except BaseException:
        await db.close()
        if embedded is not None:
            embedded.stop()
        raise
    svc = Services(settings=settings, store=db.stores(), writer=writer, hub=hub, ids=ids,
                   tokens=tokens, presence=presence, blobs=blobs,
                   thumbnails=ProcessThumbnailer(), app_keys=AppKeys(secret),
                   outbound=GuardedHttp(AddressPolicy(settings.outbound_cidrs)))
    return Runtime(settings=settings, services=svc, db=db, writer=writer, indexer=db.indexer,
                   embedded=embedded, ids=ids, notes=notes)
