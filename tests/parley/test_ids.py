"""Snowflake ids across processes: leased worker ids make them unique."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from core_ext import snowflake_parts
from parley.errors import Unavailable
from parley.ids import IdAllocator, LeasedIdAllocator
from storage.postgres import PgDatabase

_CHILD = textwrap.dedent("""
    import asyncio, json, sys
    from parley.ids import LeasedIdAllocator
    from storage.postgres import PgDatabase

    async def main():
        db = PgDatabase([sys.argv[1]], pool_max=2)
        await db.connect()
        ids = LeasedIdAllocator(db.leases)
        await ids.start()
        out = [ids.next_id() for _ in range(20000)]
        print(json.dumps({"worker": ids.worker_id, "ids": out}))
        await asyncio.sleep(float(sys.argv[2]))  # hold the lease while the others run
        await ids.close()
        await db.close()

    asyncio.run(main())
""")


async def test_ids_from_several_processes_never_collide(pg_dsn: str) -> None:
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, pg_dsn, "1.5", stdout=subprocess.PIPE)
        for _ in range(4)]
    outputs = [json.loads((await p.communicate())[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    workers = [o["worker"] for o in outputs]
    assert len(set(workers)) == 4, workers
    every = [i for o in outputs for i in o["ids"]]
    assert len(every) == len(set(every)) == 80_000
    for o in outputs:
        assert o["ids"] == sorted(o["ids"])  # monotonic within a process
        assert {snowflake_parts(i)[1] for i in o["ids"]} == {o["worker"]}


async def test_released_and_expired_leases_are_reused(pg_dsn: str) -> None:
    db = PgDatabase([pg_dsn])
    await db.connect()
    first = await db.leases.lease_worker_id("a", 60)
    second = await db.leases.lease_worker_id("b", 60)
    assert (first, second) == (0, 1)
    await db.leases.release_worker_id(0, "a")
    assert await db.leases.lease_worker_id("c", 60) == 0
    assert not await db.leases.renew_worker_id(0, "a", 60)  # a lost it
    assert await db.leases.renew_worker_id(0, "c", 60)
    expired = await db.leases.lease_worker_id("d", 0.001)
    await asyncio.sleep(0.05)
    assert await db.leases.lease_worker_id("e", 60) == expired
    await db.close()


async def test_an_allocator_stops_issuing_when_its_lease_may_have_expired(pg_dsn: str) -> None:
    db = PgDatabase([pg_dsn])
    await db.connect()
    ids = LeasedIdAllocator(db.leases)
    await ids.start()
    ids.next_id()
    ids._valid_until = 0.0  # as if renewals had failed for a whole lease period
    with pytest.raises(Unavailable):
        ids.next_id()
    await ids.close()
    await db.close()


def test_fixed_worker_ids_are_monotonic_and_carry_the_worker() -> None:
    ids = IdAllocator(7)
    seq = [ids.next_id() for _ in range(10_000)]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)
    assert snowflake_parts(seq[0])[1] == 7
    assert ids.timestamp(seq[0]).year >= 2026
