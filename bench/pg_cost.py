"""PostgreSQL CPU per durable message, before and after issue 21.

``python -m bench.pg_cost [--batches 40] [--batch 300] [--text realistic]``

What it measures: the on-CPU time of the one PostgreSQL backend that runs
the group-commit writer's call (``parley_append_batch``, one implicit
transaction per batch of ``--batch`` messages over ``--channels`` channels,
each with an idempotency key), per message, read from the backend's
``/proc/<pid>/schedstat`` (nanoseconds on CPU) and ``/proc/<pid>/stat``
(utime + stime, in clock ticks) around the measured batches; the pid is the
connection's ``pg_backend_pid()``, so PostgreSQL must run on this machine.

Schemas, each in a fresh database of the server ``--admin-url`` points at:

* ``before``: the shard migrations up to 0007 (the tsvector column and its
  GIN index maintained in the commit transaction);
* ``after``: every migration (0008: the commit queues the message for the
  indexer; the indexer's own cost is measured separately, ``indexer``: the
  backend that runs the indexer batches of 500 over the same messages).

Warm-up batches (``--warmup``) run first and are not counted (plan cache,
buffers).  Prints a table and writes bench/results/pg_cost-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import secrets
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import textgen
from bench.common import git_revision, machine_info
from parley.model import User
from storage.migrate import apply_migrations
from storage.pg_common import insert_channel
from storage.pg_search import _INDEX_BATCH
from storage.postgres import PgDatabase

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_ADMIN_URL = os.environ.get("PARLEY_TEST_DATABASE_URL",
                                   "postgresql://postgres@127.0.0.1:5432/postgres")
#: ``before``: the schema as it was before issue 21 (no 0008).
SCHEMAS: dict[str, tuple[str, str] | None] = {
    "before": ("shard", "0008_search_indexer.sql"),
    "after": None,
}
_APPEND = ("SELECT count(*) FILTER (WHERE o_code = 0)"
           " FROM parley_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_ids = itertools.count(int(time.time() * 1000) << 22)


def next_id() -> int:
    """A fresh id (snowflake-shaped: milliseconds << 22, then a counter)."""
    return next(_ids)


def backend_cpu(pid: int) -> tuple[float, float]:
    """(seconds on CPU from schedstat, utime + stime seconds from stat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        ns = int(f.read().split()[0])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ns / 1e9, ticks / _CLK_TCK


@dataclass
class Fixture:
    """A fresh database with a workspace, ``channels`` channels and a sender
    (their creator, so a member) in each."""

    name: str
    dsn: str
    db: PgDatabase
    workspace_id: int
    senders: list[tuple[int, int]]  # (channel id, user id)

    async def drop(self, admin_url: str) -> None:
        await self.db.close()
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


async def make_fixture(admin_url: str, schema: str, channels: int) -> Fixture:
    name = f"parley_bench_{schema}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = admin_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, ("directory", "shard"), stop_before=SCHEMAS[schema])
    finally:
        await conn.close()
    db = PgDatabase([dsn], pool_max=4)
    await db.connect()
    users: list[User] = []
    for _ in range(channels):
        n = next(_ids)
        u = await db.users.create_user(n, f"b{n}@bench.io", f"B{n}", "h")
        assert u is not None
        users.append(u)
    ws = await db.workspaces.create_workspace(next(_ids), "bench", users[0], next(_ids))
    # Members and channels by the bare inserts: the store's methods also
    # write the Events API's outbox (migration 0009 on), which the
    # ``before`` schema predates.
    senders = []
    conn = await asyncpg.connect(dsn)
    try:
        for i, u in enumerate(users):
            if i:
                await conn.execute(
                    """INSERT INTO workspace_members (workspace_id, user_id, role, display_name)
                       VALUES ($1, $2, 'member', $3)""", ws.id, u.id, u.display_name)
            cid = next(_ids)
            async with conn.transaction():
                await insert_channel(conn, cid, ws.id, "public", f"c{i}", u.id, [u.id])
            senders.append((cid, u.id))
    finally:
        await conn.close()
    return Fixture(name, dsn, db, ws.id, senders)


def batch_args(fx: Fixture, texts: list[str], start: int) -> list[Any]:
    """``parley_append_batch``'s arrays for ``len(texts)`` messages, round robin
    over the senders, each with a fresh idempotency key."""
    n = len(texts)
    who = [fx.senders[(start + i) % len(fx.senders)] for i in range(n)]
    now = dt.datetime.now(dt.UTC)
    ids = [next(_ids) for _ in range(n)]
    return [[c for c, _ in who], [u for _, u in who], [fx.workspace_id] * n, ids, texts,
            [f"k{i}" for i in ids], [None] * n, [now] * n, [False] * n]


async def measure_append(fx: Fixture, corpus: list[str], batches: int, batch: int,
                         warmup: int) -> dict[str, Any]:
    conn = await asyncpg.connect(fx.dsn)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        pos = 0

        def texts() -> list[str]:
            nonlocal pos
            out = [corpus[(pos + i) % len(corpus)] for i in range(batch)]
            pos += batch
            return out

        for _ in range(warmup):
            await conn.fetchval(_APPEND, *batch_args(fx, texts(), pos))
        per_batch_us: list[float] = []
        stored = 0
        cpu0, tick0 = backend_cpu(pid)
        t0 = time.perf_counter()
        for _ in range(batches):
            args = batch_args(fx, texts(), pos)
            b0, _ = backend_cpu(pid)
            stored += await conn.fetchval(_APPEND, *args)
            b1, _ = backend_cpu(pid)
            per_batch_us.append((b1 - b0) / batch * 1e6)
        wall = time.perf_counter() - t0
        cpu1, tick1 = backend_cpu(pid)
    finally:
        await conn.close()
    assert stored == batches * batch, (stored, batches * batch)
    return {"messages": stored, "cpu_us_per_message": round((cpu1 - cpu0) / stored * 1e6, 1),
            "stat_us_per_message": round((tick1 - tick0) / stored * 1e6, 1),
            "batch_cpu_us_per_message_p50": round(statistics.median(per_batch_us), 1),
            "batch_cpu_us_per_message_max": round(max(per_batch_us), 1),
            "wall_ms_per_batch": round(wall / batches * 1e3, 2)}


async def measure_indexer(fx: Fixture, limit: int = 500) -> dict[str, Any]:
    """Drain the queue with indexer batches on one backend; its CPU per message."""
    conn = await asyncpg.connect(fx.dsn)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        cpu0, tick0 = backend_cpu(pid)
        done = 0
        t0 = time.perf_counter()
        while True:
            async with conn.transaction():
                row = await conn.fetchrow(_INDEX_BATCH, limit, 1, 0)  # one part: all of it
            assert row is not None
            if not row["claimed"]:
                break
            done += int(row["claimed"])
        wall = time.perf_counter() - t0
        cpu1, tick1 = backend_cpu(pid)
    finally:
        await conn.close()
    return {"messages": done, "cpu_us_per_message": round((cpu1 - cpu0) / done * 1e6, 1),
            "stat_us_per_message": round((tick1 - tick0) / done * 1e6, 1),
            "wall_us_per_message": round(wall / done * 1e6, 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    size = args.size
    corpus = (textgen.corpus(4096, args.seed, size) if args.text == "realistic"
              else [f"~ts={i:019d}~" + "x" * max(0, (size or 100) - 24) for i in range(4096)])
    out: dict[str, Any] = {"parameters": {k: getattr(args, k) for k in (
        "batches", "batch", "warmup", "channels", "text", "seed", "size")},
        "mean_text_bytes": round(statistics.mean(len(t.encode()) for t in corpus), 1),
        # Provenance, for the capacity model's inputs (bench/capacity.py).
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "revision": git_revision(), "machine": machine_info(),
        "loadavg_1m_start": round(os.getloadavg()[0], 2)}
    for schema in args.schemas.split(","):
        fx = await make_fixture(args.admin_url, schema, args.channels)
        try:
            out[schema] = await measure_append(fx, corpus, args.batches, args.batch,
                                               args.warmup)
            if schema == "after":
                out["indexer"] = await measure_indexer(fx)
        finally:
            await fx.drop(args.admin_url)
    out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pg_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL,
                    help="PostgreSQL DSN allowed to create databases (on this machine)")
    ap.add_argument("--schemas", default="before,after")
    ap.add_argument("--batches", type=int, default=40, help="measured batches per schema")
    ap.add_argument("--batch", type=int, default=300, help="messages per batch")
    ap.add_argument("--warmup", type=int, default=5, help="uncounted batches first")
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--text", choices=textgen.TEXT_KINDS, default=textgen.TEXT_KINDS[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=None,
                    help="text bytes (default: realistic sizes, mean 200; fixed 100)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    print(f"PostgreSQL CPU per message, batches of {args.batch}, {args.text} text "
          f"(mean {result['mean_text_bytes']} bytes):")
    for key in ("before", "after", "indexer"):
        if key in result:
            r = result[key]
            print(f"  {key:8s} {r['cpu_us_per_message']:7.1f} us (stat: "
                  f"{r['stat_us_per_message']:.1f} us) over {r['messages']} messages")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"pg_cost-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
