"""PostgreSQL storage through asyncpg: the source of truth.

Layout: the first DSN is also the *directory* (accounts, sessions, workspace
placement, worker leases); every DSN is a *shard* holding whole workspaces.
``PgDatabase`` owns one pool per DSN, routes each workspace to its shard and
builds one store object per port (``storage/pg_*.py``) on those pools.

Every workspace-scoped query takes ``workspace_id`` and filters by it: that
is the tenant boundary, and no query here joins across workspaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from parley.model import StoreUnavailable
from parley.ports.stores import Stores
from storage.migrate import apply_migrations, pending_migrations
from storage.pg_accounts import PgLeases, PgSessions, PgUsers
from storage.pg_app_events import PgAppEvents
from storage.pg_app_health import PgAppHealth
from storage.pg_apps import PgApps, PgInstalls, PgWebhooks
from storage.pg_channels import PgChannels, PgReads, PgRoster
from storage.pg_common import (
    CONNECTION_ERRORS as CONNECTION_ERRORS,  # re-exported: the writer uses it
)
from storage.pg_files import PgFileLimits, PgFiles, PgShares
from storage.pg_messages import (
    PgExtras,
    PgMessages,
    PgPins,
    PgReactions,
    PgThreads,
    PgTimeline,
)
from storage.pg_search import PgSearch, PgSearchIndexer
from storage.pg_workspaces import PgInvites, PgMembers, PgWorkspaces
from storage.shards import HashRing, shard_name


class PgDatabase:
    """Pools for the directory and every shard, placement, and one store
    object per port (``users``, ``channels``, ``messages``, ...) sharing them.

    ``stores()`` is the bundle the domain sees (``parley.ports.stores.Stores``);
    the writer and the tests reach the store objects directly."""

    def __init__(self, dsns: Sequence[str], *, pool_max: int = 16,
                 search_index_partitions: int = 1) -> None:
        if not dsns:
            raise ValueError("at least one PostgreSQL DSN is required")
        self.dsns = list(dsns)
        self.shard_names = [shard_name(i) for i in range(len(self.dsns))]
        self.ring = HashRing(self.shard_names)
        self._pool_max = pool_max
        self.pools: dict[str, asyncpg.Pool] = {}
        # workspace id -> shard; placement never changes, so caching is safe.
        self._placement: dict[int, str] = {}
        self.users = PgUsers(self)
        self.sessions = PgSessions(self)
        self.leases = PgLeases(self)
        self.workspaces = PgWorkspaces(self)
        self.members = PgMembers(self)
        self.invites = PgInvites(self)
        self.channels = PgChannels(self)
        self.roster = PgRoster(self)
        self.reads = PgReads(self)
        self.messages = PgMessages(self)
        self.extras = PgExtras(self)
        self.timeline = PgTimeline(self)
        self.threads = PgThreads(self)
        self.reactions = PgReactions(self)
        self.pins = PgPins(self)
        self.search = PgSearch(self)
        # Not a domain store: the indexer loop's port.
        self.indexer = PgSearchIndexer(self, partitions=search_index_partitions)
        self.files = PgFiles(self)
        self.shares = PgShares(self)
        self.file_limits = PgFileLimits(self)
        self.apps = PgApps(self)
        self.installs = PgInstalls(self)
        self.webhooks = PgWebhooks(self)
        self.app_events = PgAppEvents(self)
        self.app_health = PgAppHealth(self)

    def stores(self) -> Stores:
        """The ports the domain uses, all on these pools."""
        return Stores(
            users=self.users, sessions=self.sessions, leases=self.leases,
            workspaces=self.workspaces, members=self.members, invites=self.invites,
            channels=self.channels, roster=self.roster, reads=self.reads,
            messages=self.messages, extras=self.extras, timeline=self.timeline,
            threads=self.threads, reactions=self.reactions, pins=self.pins, search=self.search,
            files=self.files, shares=self.shares, file_limits=self.file_limits,
            apps=self.apps, installs=self.installs, webhooks=self.webhooks,
            app_events=self.app_events, app_health=self.app_health, health=self)

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        for name, dsn in zip(self.shard_names, self.dsns, strict=True):
            self.pools[name] = await asyncpg.create_pool(
                dsn, min_size=1, max_size=self._pool_max, command_timeout=30)

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        for i, name in enumerate(self.shard_names):
            kinds = ("directory", "shard") if i == 0 else ("shard",)
            async with self.pools[name].acquire() as conn:
                applied += [f"{name}:{a}" for a in await apply_migrations(conn, kinds)]
        return applied

    async def pending(self) -> list[str]:
        out: list[str] = []
        for i, name in enumerate(self.shard_names):
            kinds = ("directory", "shard") if i == 0 else ("shard",)
            async with self.pools[name].acquire() as conn:
                out += [f"{name}:{p}" for p in await pending_migrations(conn, kinds)]
        return out

    async def ping(self) -> bool:
        try:
            return not await self.pending()
        except (*CONNECTION_ERRORS, StoreUnavailable, asyncpg.PostgresError):
            return False

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()

    @property
    def directory(self) -> asyncpg.Pool:
        return self.pools[self.shard_names[0]]

    def pool(self, shard: str) -> asyncpg.Pool:
        return self.pools[shard]

    async def shard_of(self, workspace_id: int) -> str | None:
        shard = self._placement.get(workspace_id)
        if shard is None:
            shard = await self._call(
                self.directory.fetchval,
                "SELECT shard FROM workspace_directory WHERE workspace_id = $1", workspace_id)
            if shard is not None:
                self._placement[workspace_id] = shard
        return shard

    def cached_shard(self, workspace_id: int) -> str | None:
        return self._placement.get(workspace_id)

    def remember_shard(self, workspace_id: int, shard: str) -> None:
        self._placement[workspace_id] = shard

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await fn(*args)
        except CONNECTION_ERRORS as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    async def _shard_pool(self, workspace_id: int) -> asyncpg.Pool | None:
        shard = await self.shard_of(workspace_id)
        return None if shard is None else self.pools[shard]
