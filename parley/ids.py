"""Snowflake ids for a process: the core_ext generator plus a worker-id lease.

A single embedded process uses worker id 0.  Processes sharing a database
lease a worker id in PostgreSQL (``worker_leases``) for ``LEASE_TTL_S`` and
renew it every ``LEASE_RENEW_S``.  Invariant: a process never issues an id
after its lease could have expired (``valid_until`` is measured on the
monotonic clock from *before* the lease query was sent), so two live
processes never share a worker id and ids are unique across the fleet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time

from core_ext import SnowflakeGenerator, snowflake_parts
from parley.errors import Unavailable
from parley.ports.accounts import LeaseStore

log = logging.getLogger("parley.ids")

LEASE_TTL_S = 60.0
LEASE_RENEW_S = 15.0
LEASE_SAFETY_S = 5.0  # stop issuing this long before the lease would expire


class IdAllocator:
    """Issues snowflake ids; ``next_id`` is synchronous and cheap."""

    def __init__(self, worker_id: int = 0) -> None:
        self._gen = SnowflakeGenerator(worker_id)
        self.worker_id = worker_id
        self._valid_until = float("inf")  # fixed worker id: no lease to lose

    def next_id(self) -> int:
        if time.monotonic() >= self._valid_until:
            raise Unavailable("id_lease_lost", "this process lost its id lease; retry shortly")
        return int(self._gen.next_id())

    @staticmethod
    def timestamp(snowflake: int) -> dt.datetime:
        ms = snowflake_parts(snowflake)[0]
        return dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC)

    def _set(self, worker_id: int, valid_until: float) -> None:
        if worker_id != self.worker_id:
            self._gen = SnowflakeGenerator(worker_id)
            self.worker_id = worker_id
        self._valid_until = valid_until


class LeasedIdAllocator(IdAllocator):
    """An IdAllocator whose worker id is leased from a LeaseStore."""

    def __init__(self, store: LeaseStore) -> None:
        super().__init__(0)
        self._store = store
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sent = time.monotonic()
        worker_id = await self._store.lease_worker_id(self._holder, LEASE_TTL_S)
        if worker_id is None:
            raise RuntimeError("all 1024 snowflake worker ids are leased")
        self._set(worker_id, sent + LEASE_TTL_S - LEASE_SAFETY_S)
        self._task = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_S)
            sent = time.monotonic()
            try:
                if await self._store.renew_worker_id(self.worker_id, self._holder, LEASE_TTL_S):
                    self._set(self.worker_id, sent + LEASE_TTL_S - LEASE_SAFETY_S)
                    continue
                # Lost it (expired while we could not reach the database): take a new one.
                worker_id = await self._store.lease_worker_id(self._holder, LEASE_TTL_S)
                if worker_id is not None:
                    self._set(worker_id, sent + LEASE_TTL_S - LEASE_SAFETY_S)
            except Exception:  # the database is down: keep the old lease until it runs out
                log.warning("worker id lease renewal failed", exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._valid_until = 0.0
        try:
            await self._store.release_worker_id(self.worker_id, self._holder)
        except Exception:
            log.warning("could not release worker id %s", self.worker_id, exc_info=True)
