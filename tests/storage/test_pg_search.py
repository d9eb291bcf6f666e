"""The search indexer (storage/pg_search.py, migration shard/0008) against
real PostgreSQL: the ``SearchIndexer`` contract of parley/ports/search.py.

Servers are not started here (the ``runtime`` fixture), so no indexer loop
runs behind the tests' backs: each test drives ``index_batch`` itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import asyncpg
import pytest

from parley.actions.search import catch_up, index_pass
from parley.model import Message, NewMessage, User, Workspace
from server.composition import Runtime
from storage.migrate import apply_migrations
from storage.pg_search import _INDEX_BATCH, PgSearchIndexer
from storage.postgres import PgDatabase
from storage.writer import GroupCommitWriter
from tests.fixtures.postgres import PgFactory, _with_db

_ids = itertools.count(9_000_000)
SHARD_SCHEMA_BEFORE = ("shard", "0008_search_indexer.sql")


async def _user(db: PgDatabase) -> User:
    n = next(_ids)
    u = await db.users.create_user(n, f"s{n}@x.io", f"S{n}", "h")
    assert u is not None
    return u


async def _workspace(db: PgDatabase) -> tuple[Workspace, User, int]:
    owner = await _user(db)
    ws = await db.workspaces.create_workspace(next(_ids), "W", owner, next(_ids))
    general = await db.channels.default_channel(ws.id)
    assert general is not None
    return ws, owner, general.id


async def _post(rt: Runtime | GroupCommitWriter, ws: Workspace, channel: int, user: User,
                text: str) -> int:
    writer = rt.writer if isinstance(rt, Runtime) else rt
    stored = await writer.append(ws.shard, NewMessage(
        id=next(_ids), channel_id=channel, workspace_id=ws.id, user_id=user.id, text=text,
        client_msg_id=None, thread_root_id=None, created_at=dt.datetime.now(dt.UTC)))
    return stored.id


async def _find(db: PgDatabase, ws: Workspace, user: User, query: str, *,
                include_public: bool = True) -> list[int]:
    found: list[Message] = await db.search.search(
        ws.id, user.id, query, include_public=include_public, channel_id=None, author_id=None,
        since=None, until=None, before_id=None, limit=100)
    return [m.id for m in found]


async def _index_all(indexer: PgSearchIndexer, shard: str, limit: int = 500) -> int:
    """One batch of every partition of ``shard``: changes applied in all."""
    done = [await indexer.index_batch(shard, limit, p) for p in range(indexer.partitions)]
    assert None not in done, "no other indexer runs in these tests"
    return sum(n or 0 for n in done)


async def _index_rows(db: PgDatabase, shard: str) -> list[int]:
    return [r["message_id"] for r in await db.pools[shard].fetch(
        "SELECT message_id FROM message_search ORDER BY message_id")]


async def test_a_message_is_searchable_once_the_indexer_applied_it(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(db)
    mid = await _post(runtime, ws, general, owner, "the quarterly rocket launch")
    assert await db.indexer.backlog(ws.shard) == 1, "queued by the batch insert's transaction"
    assert await _find(db, ws, owner, "rocket") == [], "not on the commit path any more"
    assert await _index_all(db.indexer, ws.shard) == 1
    assert await _find(db, ws, owner, "rocket") == [mid]
    assert await db.indexer.backlog(ws.shard) == 0
    assert await _index_all(db.indexer, ws.shard) == 0


async def test_edits_and_deletes_reach_the_index(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(db)
    mid = await _post(runtime, ws, general, owner, "alpha release notes")
    await catch_up(db.indexer)
    edited = await db.messages.edit_message(ws.id, mid, "beta release notes",
                                            dt.datetime.now(dt.UTC))
    assert edited is not None
    await catch_up(db.indexer)
    assert await _find(db, ws, owner, "alpha") == []
    assert await _find(db, ws, owner, "beta") == [mid]
    assert await db.messages.delete_message(ws.id, mid) is not None
    # A deleted message is never found, even before the indexer catches up.
    assert await _find(db, ws, owner, "beta") == []
    await catch_up(db.indexer)
    assert await _index_rows(db, ws.shard) == [], "its entry is gone"


async def test_a_batch_that_dies_before_commit_loses_nothing_and_indexes_nothing(
        runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(db)
    mids = [await _post(runtime, ws, general, owner, f"crash test {i}") for i in range(12)]
    conn = await asyncpg.connect(db.dsns[0])
    tx = conn.transaction()
    await tx.start()
    row = await conn.fetchrow(_INDEX_BATCH, 5, 1, 0)
    assert row is not None and row["claimed"] == 5 and row["put"] == 5
    conn.terminate()  # the indexer's process dies mid-transaction
    # PostgreSQL rolls the dead backend's transaction back (asynchronously).
    await catch_up(db.indexer)
    assert await _index_rows(db, ws.shard) == sorted(mids)
    assert sorted(await _find(db, ws, owner, "crash")) == sorted(mids)


async def test_a_batch_that_raises_before_commit_changes_nothing(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(db)
    for i in range(3):
        await _post(runtime, ws, general, owner, f"rollback {i}")

    class Boom(Exception):
        pass

    try:
        async with db.pools[ws.shard].acquire() as conn, conn.transaction():
            await conn.fetchrow(_INDEX_BATCH, 500, 1, 0)  # one part: the whole queue
            raise Boom
    except Boom:
        pass
    assert await db.indexer.backlog(ws.shard) == 3
    assert await _index_rows(db, ws.shard) == []
    assert await _index_all(db.indexer, ws.shard) == 3


async def _concurrent_batches(indexer: PgSearchIndexer, shard: str, workers: int,
                              limit: int) -> tuple[int, int]:
    """``workers`` loops of ``index_batch`` at once until the queue is empty:
    (changes applied in all, calls that found the shard held)."""
    applied, held = 0, 0

    async def worker(part: int) -> None:
        nonlocal applied, held
        while True:
            n = await indexer.index_batch(shard, limit, part)
            if n is None:
                held += 1
                await asyncio.sleep(0)
                continue
            if n == 0 and await indexer.backlog(shard) == 0:
                return
            applied += n

    await asyncio.gather(*(worker(i % indexer.partitions) for i in range(workers)))
    return applied, held


async def test_concurrent_indexers_never_index_a_message_twice(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(db)
    mids = await asyncio.gather(*(_post(runtime, ws, general, owner, f"race {i} words")
                                  for i in range(300)))
    # Without the shard lock: only the queue's row locks (SKIP LOCKED) keep
    # the batches apart, and each change is applied exactly once.
    applied, _ = await _concurrent_batches(PgSearchIndexer(db, exclusive=False), ws.shard,
                                           workers=4, limit=40)
    assert applied == 300
    assert await _index_rows(db, ws.shard) == sorted(mids)
    # With it (the default): one batch at a time; the others return at once.
    more = await asyncio.gather(*(_post(runtime, ws, general, owner, f"race again {i}")
                                  for i in range(200)))
    applied, _ = await _concurrent_batches(db.indexer, ws.shard, workers=4, limit=40)
    assert applied == 200
    assert await _index_rows(db, ws.shard) == sorted([*mids, *more])


async def test_the_shard_lock_turns_a_second_indexer_away(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(db)
    await _post(runtime, ws, general, owner, "held")
    parts = range(db.indexer.partitions)
    assert len(parts) > 1, "the default setting splits the queue"
    async with db.pools[ws.shard].acquire() as conn, conn.transaction():
        for p in parts:
            assert await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", 0x50534958, p)
        for p in parts:
            assert await db.indexer.index_batch(ws.shard, 500, p) is None
        assert await index_pass(db.indexer) == (0, False)
    assert await _index_all(db.indexer, ws.shard) == 1


async def test_an_edit_committed_during_a_batch_is_applied_by_a_later_one(
        runtime: Runtime) -> None:
    """The indexer read the old text; the edit commits after that read.  Its
    queue upsert waits for the batch, then queues the message again."""
    db = runtime.db
    ws, owner, general = await _workspace(db)
    mid = await _post(runtime, ws, general, owner, "draft wording")
    pool = db.pools[ws.shard]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.fetchrow(_INDEX_BATCH, 500, 1, 0)  # claimed, read "draft wording"
        edit = asyncio.create_task(db.messages.edit_message(ws.id, mid, "final wording",
                                                            dt.datetime.now(dt.UTC)))
        deadline = asyncio.get_running_loop().time() + 10
        while not await pool.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            assert asyncio.get_running_loop().time() < deadline, "the edit never waited"
            assert not edit.done(), "the edit must wait for the batch's row lock"
            await asyncio.sleep(0.005)
        await tx.commit()
    assert await edit is not None
    assert await db.indexer.backlog(ws.shard) == 1, "queued again after the batch"
    assert await _find(db, ws, owner, "draft") == [mid], "stale until the next batch"
    await catch_up(db.indexer)
    assert await _find(db, ws, owner, "draft") == []
    assert await _find(db, ws, owner, "final") == [mid]


async def test_search_stays_scoped_to_what_the_user_may_read(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, _ = await _workspace(db)
    member = await _user(db)
    await db.members.add_member(ws.id, member, "member")
    private = await db.channels.create_channel(next(_ids), ws.id, "private", "attic", owner.id)
    public = await db.channels.create_channel(next(_ids), ws.id, "public", "town", owner.id)
    assert private is not None and public is not None
    in_private = await _post(runtime, ws, private.id, owner, "zebra in private")
    in_public = await _post(runtime, ws, public.id, owner, "zebra in public")
    other, stranger, other_general = await _workspace(db)
    await _post(runtime, other, other_general, stranger, "zebra elsewhere")
    await catch_up(db.indexer)
    assert await _find(db, ws, owner, "zebra") == [in_public, in_private]
    assert await _find(db, ws, member, "zebra") == [in_public], "not in the private channel"
    assert await _find(db, ws, member, "zebra", include_public=False) == []
    assert await _find(db, ws, stranger, "zebra") == [in_public], "a non-member: public only"
    assert len(await _find(db, other, stranger, "zebra")) == 1, "each workspace its own"


async def test_migration_0008_keeps_existing_messages_searchable(
        pg_factory: PgFactory, pg_admin_dsn: str) -> None:
    """A database at the schema before issue 21 (0007), with messages, then 0008."""
    name = f"parley_t_pre21_{next(_ids)}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    pg_factory.created.append(name)  # dropped with the test's other databases
    dsn = _with_db(pg_admin_dsn, name)
    conn = await asyncpg.connect(dsn)
    db = PgDatabase([dsn], pool_max=4)
    try:
        await apply_migrations(conn, ("directory", "shard"), stop_before=SHARD_SCHEMA_BEFORE)
        await db.connect()
        ws, owner, general = await _workspace(db)
        writer = GroupCommitWriter(db, window_ms=0.5, lanes=1)
        kept = await _post(writer, ws, general, owner, "legacy walrus")
        gone = await _post(writer, ws, general, owner, "deleted walrus")
        await writer.close()
        await conn.execute("UPDATE messages SET text = '', deleted_at = now() WHERE id = $1",
                           gone)
        applied = await apply_migrations(conn, ("shard",))
        assert applied[0] == "shard/0008_search_indexer.sql", applied
        assert await _find(db, ws, owner, "walrus") == [kept]
        assert await db.indexer.backlog(ws.shard) == 0, "nothing left to index"
        assert await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'messages' AND column_name = 'tsv'") == 0
    finally:
        await conn.close()
        await db.close()


async def test_partitions_split_the_queue_disjointly_and_index_concurrently(
        runtime: Runtime) -> None:
    """Every queued change is in exactly one part (by a hash of the id, so
    even ids made one at a time spread), parts are indexed independently, and
    concurrent indexers of all parts still apply each change once."""
    db = runtime.db
    ws, owner, general = await _workspace(db)
    mids = await asyncio.gather(*(_post(runtime, ws, general, owner, f"part {i} words")
                                  for i in range(200)))
    four = PgSearchIndexer(db, partitions=4)
    counts = [await four.index_batch(ws.shard, 1000, p) for p in range(4)]
    assert sum(c or 0 for c in counts) == 200  # disjoint and covering
    assert all(c and c > 20 for c in counts), counts  # spread: about 50 each
    assert await _index_rows(db, ws.shard) == sorted(mids)
    # Concurrently, two batches per part at once: each change applied once.
    more = await asyncio.gather(*(_post(runtime, ws, general, owner, f"again {i}")
                                  for i in range(300)))
    applied, _ = await _concurrent_batches(four, ws.shard, workers=8, limit=30)
    assert applied == 300
    assert await _index_rows(db, ws.shard) == sorted([*mids, *more])
    with pytest.raises(ValueError):
        await four.index_batch(ws.shard, 10, 4)
    with pytest.raises(ValueError):
        PgSearchIndexer(db, partitions=0)
