"""PgDatabase: sharding by workspace, migrations, query plans - on real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from parley.model import NewMessage
from storage.migrate import apply_migrations
from storage.postgres import PgDatabase
from storage.writer import GroupCommitWriter
from tests.fixtures.postgres import PgFactory

_ids = itertools.count(5_000_000)


@pytest.fixture
async def two_shards(pg_factory: PgFactory) -> AsyncIterator[PgDatabase]:
    db = PgDatabase([await pg_factory.new(), await pg_factory.new()], pool_max=4)
    await db.connect()
    await db.migrate()
    yield db
    await db.close()


async def test_workspaces_spread_over_both_shards_and_data_stays_home(
        two_shards: PgDatabase) -> None:
    db = two_shards
    owner = await db.users.create_user(next(_ids), "o@x.io", "Owner", "h")
    assert owner is not None
    writer = GroupCommitWriter(db)
    placed: dict[str, list[int]] = {"shard0": [], "shard1": []}
    for i in range(24):
        ws = await db.workspaces.create_workspace(next(_ids), f"W{i}", owner, next(_ids))
        placed[ws.shard].append(ws.id)
        general = (await db.roster.user_channels(ws.id, owner.id))[0][0].id
        await writer.append(ws.shard, NewMessage(
            id=next(_ids), channel_id=general, workspace_id=ws.id, user_id=owner.id,
            text=f"hello {i}", client_msg_id=None, thread_root_id=None,
            created_at=dt.datetime.now(dt.UTC)))
    assert placed["shard0"] and placed["shard1"], placed
    for shard, mine in placed.items():
        pool = db.pool(shard)
        on_shard = {r["id"] for r in await pool.fetch("SELECT id FROM workspaces")}
        assert on_shard == set(mine), "a workspace's rows live only on its shard"
        msg_ws = {r["workspace_id"] for r in await pool.fetch("SELECT workspace_id FROM messages")}
        assert msg_ws == set(mine)
        chan_ws = {r["workspace_id"] for r in await pool.fetch("SELECT workspace_id FROM channels")}
        assert chan_ws == set(mine)
    # Lookups route through the directory on shard0.
    for shard, mine in placed.items():
        for wid in mine:
            assert await db.workspaces.shard_of(wid) == shard
            assert (await db.workspaces.workspace(wid)) is not None
    assert {w.id for w in await db.workspaces.workspaces_of(owner.id)} == set(
        placed["shard0"] + placed["shard1"])
    await writer.close()


async def test_migrations_are_idempotent_and_safe_concurrently(pg_factory: PgFactory,
                                                               pg_admin_dsn: str) -> None:
    # A database made from scratch (not the template) by two racing runners.
    name = f"parley_mig_{next(_ids)}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    pg_factory.created.append(name)
    from storage.embedded import EmbeddedPostgres

    dsn = EmbeddedPostgres.dsn_for(pg_admin_dsn, name)
    c1, c2 = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    r1, r2 = await asyncio.gather(apply_migrations(c1, ("directory", "shard")),
                                  apply_migrations(c2, ("directory", "shard")))
    assert sorted(r1 + r2) == sorted(set(r1 + r2)), "each file applied once"
    assert len(r1 + r2) >= 2
    assert await apply_migrations(c1, ("directory", "shard")) == []
    await c1.close()
    await c2.close()


async def test_history_page_is_one_index_scan(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("SET enable_seqscan = off")  # tiny tables: ask for the plan at scale
    plan = "\n".join(r[0] for r in await conn.fetch(
        """EXPLAIN SELECT * FROM messages m WHERE m.channel_id = 1 AND m.workspace_id = 2
           AND m.seq < 100 ORDER BY m.seq DESC LIMIT 51"""))
    assert "Index Scan Backward using messages_pkey" in plan, plan
    assert "Sort" not in plan, plan
    plan = "\n".join(r[0] for r in await conn.fetch(
        """EXPLAIN SELECT * FROM messages m WHERE m.channel_id = 1 AND m.workspace_id = 2
           AND m.seq > 10 ORDER BY m.seq LIMIT 51"""))
    assert "Index Scan using messages_pkey" in plan and "Sort" not in plan, plan
    await conn.close()


async def test_cached_shard_knows_only_what_was_looked_up_and_needs_no_io(
        two_shards: PgDatabase) -> None:
    db = two_shards
    owner = await db.users.create_user(next(_ids), "c@x.io", "Owner", "h")
    assert owner is not None
    ws = await db.workspaces.create_workspace(next(_ids), "W", owner, next(_ids))
    assert db.workspaces.cached_shard(ws.id) == ws.shard, "create_workspace warms the cache"
    # Another process (a fresh store on the same databases) knows nothing yet.
    other = PgDatabase(db.dsns, pool_max=2)
    await other.connect()
    try:
        assert other.cached_shard(ws.id) is None
        assert await other.shard_of(ws.id) == ws.shard
        assert other.cached_shard(ws.id) == ws.shard
        missing = next(_ids)
        assert await other.shard_of(missing) is None
        assert other.cached_shard(missing) is None, "absence is not cached"
    finally:
        await other.close()
    # Cache-only: answers with every pool closed.
    assert other.cached_shard(ws.id) == ws.shard
