"""The group-commit writer against real PostgreSQL: gap-free per-channel
sequences, idempotency, membership checks, durability before ack."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from parley.model import AppendRejected, NewMessage, StoreUnavailable, User
from storage.postgres import PgDatabase
from storage.writer import GroupCommitWriter

_ids = itertools.count(1_000_000)


def new_msg(ws: int, ch: int, user: int, text: str = "hi",
            cmid: str | None = None) -> NewMessage:
    return NewMessage(id=next(_ids), channel_id=ch, workspace_id=ws, user_id=user, text=text,
                      client_msg_id=cmid, thread_root_id=None, created_at=dt.datetime.now(dt.UTC))


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[PgDatabase]:
    database = PgDatabase([pg_dsn], pool_max=8)
    await database.connect()
    yield database
    await database.close()


async def _workspace(db: PgDatabase, n_users: int = 3) -> tuple[int, int, list[int]]:
    users = []
    for i in range(n_users):
        u = await db.users.create_user(next(_ids), f"u{i}-{next(_ids)}@x.io", f"U{i}", "h")
        assert u is not None
        users.append(u)
    ws = await db.workspaces.create_workspace(next(_ids), "W", users[0], next(_ids))
    chans = await db.roster.user_channels(ws.id, users[0].id)
    general = chans[0][0].id
    for u in users[1:]:
        await db.members.add_member(ws.id, User(u.id, u.email, u.display_name, "h", False),
                                    "member")
    return ws.id, general, [u.id for u in users]


async def test_concurrent_appends_get_gap_free_sequences_in_one_order(db: PgDatabase) -> None:
    ws, ch, users = await _workspace(db)
    writer = GroupCommitWriter(db, window_ms=1.0, max_batch=64)
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    msgs = [new_msg(ws, ch, users[i % 3], f"m{i}") for i in range(500)]
    stored = await asyncio.gather(*(writer.append(shard, m) for m in msgs))
    assert sorted(s.seq for s in stored) == list(range(1, 501))
    assert writer.batches < 500, "appends were batched"
    rows = await db.messages.history(ws, ch, after=0, limit=1000)
    assert [r.seq for r in rows] == list(range(1, 501))
    assert {r.id for r in rows} == {m.id for m in msgs}
    await writer.close()


async def test_retry_with_same_client_msg_id_returns_the_first_message(db: PgDatabase) -> None:
    ws, ch, users = await _workspace(db)
    writer = GroupCommitWriter(db)
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    first = await writer.append(shard, new_msg(ws, ch, users[1], "once", "abc"))
    again = await writer.append(shard, new_msg(ws, ch, users[1], "once", "abc"))
    assert again.id == first.id and again.seq == first.seq
    # The same key from another sender is a different message.
    other = await writer.append(shard, new_msg(ws, ch, users[2], "once", "abc"))
    assert other.id != first.id and other.seq == 2
    # Duplicates inside one batch.
    dup = await asyncio.gather(*(writer.append(shard, new_msg(ws, ch, users[0], "x", "k"))
                                 for _ in range(10)))
    assert len({d.id for d in dup}) == 1
    assert (await db.channels.channel(ws, ch)).last_seq == 3  # type: ignore[union-attr]
    await writer.close()


async def test_non_member_is_rejected_and_takes_no_sequence_number(db: PgDatabase) -> None:
    ws, ch, users = await _workspace(db)
    outsider = await db.users.create_user(next(_ids), "out@x.io", "Out", "h")
    assert outsider is not None
    writer = GroupCommitWriter(db)
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    ok, bad = await asyncio.gather(
        writer.append(shard, new_msg(ws, ch, users[0])),
        writer.append(shard, new_msg(ws, ch, outsider.id)), return_exceptions=True)
    assert not isinstance(ok, BaseException) and ok.seq == 1
    assert isinstance(bad, AppendRejected) and bad.code == "not_in_channel"
    # A channel id under the wrong workspace is refused the same way.
    wrong = await asyncio.gather(writer.append(shard, new_msg(ws + 1, ch, users[0])),
                                 return_exceptions=True)
    assert isinstance(wrong[0], AppendRejected)
    nxt = await writer.append(shard, new_msg(ws, ch, users[0]))
    assert nxt.seq == 2
    await writer.close()


async def test_unreachable_database_acknowledges_nothing(pg_admin_dsn: str) -> None:
    db = PgDatabase(["postgresql://postgres@127.0.0.1:1/nothing"])
    db.pools["shard0"] = await asyncpg.create_pool(pg_admin_dsn, min_size=0, max_size=1)
    await db.pools["shard0"].close()  # a closed pool behaves like a lost database
    writer = GroupCommitWriter(db)
    with pytest.raises(StoreUnavailable):
        await writer.append("shard0", new_msg(1, 1, 1))
    await writer.close()


async def test_two_writers_on_one_channel_never_duplicate_or_skip(db: PgDatabase,
                                                                  pg_dsn: str) -> None:
    """Two processes' writers (two pools) hammering the same channels."""
    ws, ch, users = await _workspace(db)
    other = PgDatabase([pg_dsn], pool_max=4)
    await other.connect()
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    w1, w2 = GroupCommitWriter(db, max_batch=16), GroupCommitWriter(other, max_batch=16)
    jobs = [(w1 if i % 2 else w2).append(shard, new_msg(ws, ch, users[i % 3], f"{i}"))
            for i in range(400)]
    stored = await asyncio.gather(*jobs)
    assert sorted(s.seq for s in stored) == list(range(1, 401))
    await w1.close()
    await w2.close()
    await other.close()


async def test_submit_calls_back_once_per_message_after_commit_in_seq_order(
        db: PgDatabase) -> None:
    """``submit`` (no coroutine per message): one callback each, after the
    commit, in commit order; rejections and duplicates arrive the same way."""
    ws, ch, users = await _workspace(db)
    writer = GroupCommitWriter(db, window_ms=1.0, max_batch=64)
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    results: list[object] = []
    committed_seen: list[int] = []
    finished = asyncio.Event()
    total = 203  # 200 fresh, a duplicate, a stranger, a repeat of the duplicate

    def done(res: object) -> None:
        if not isinstance(res, BaseException):
            committed_seen.append(res.seq)  # type: ignore[attr-defined]
        results.append(res)
        if len(results) == total:
            finished.set()

    for i in range(200):
        writer.submit(shard, new_msg(ws, ch, users[i % 3], f"s{i}", f"key-{i}"), done)
    assert results == [], "callbacks never run inside submit"
    writer.submit(shard, new_msg(ws, ch, users[0], "again", "key-0"), done)  # a retry
    writer.submit(shard, new_msg(ws, ch, 999_999_999, "who?"), done)  # not a member
    writer.submit(shard, new_msg(ws, ch, users[0], "again", "key-0"), done)
    await asyncio.wait_for(finished.wait(), 10)
    rejected = [r for r in results if isinstance(r, AppendRejected)]
    assert [r.code for r in rejected] == ["not_in_channel"]
    fresh = [r for r in results if not isinstance(r, BaseException)]
    assert len(fresh) == 202
    assert sorted({m.seq for m in fresh}) == list(range(1, 201))  # retries share key-0's seq
    # In commit order: the seqs of the 200 fresh messages arrive increasing.
    first_seen = [s for i, s in enumerate(committed_seen) if s not in committed_seen[:i]]
    assert first_seen == sorted(first_seen)
    rows = await db.messages.history(ws, ch, after=0, limit=1000)
    assert [r.seq for r in rows] == list(range(1, 201))
    await writer.close()
    with pytest.raises(StoreUnavailable):
        writer.submit(shard, new_msg(ws, ch, users[0]), done)


async def test_a_failing_callback_does_not_cost_the_rest_of_the_batch(db: PgDatabase) -> None:
    ws, ch, users = await _workspace(db)
    writer = GroupCommitWriter(db, window_ms=5.0)
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None

    def boom(res: object) -> None:
        raise RuntimeError("a caller's bug")

    writer.submit(shard, new_msg(ws, ch, users[0], "one"), boom)
    after = await writer.append(shard, new_msg(ws, ch, users[0], "two"))
    assert after.seq == 2
    await writer.close()


async def test_crossing_batches_over_many_channels_neither_deadlock_nor_skip(
        db: PgDatabase, pg_dsn: str) -> None:
    """Two writers (two pools, one lane each) whose batches hold the same
    channels in opposite arrival orders: counter rows are locked in channel-id
    order, so neither waits for the other in a cycle, and every channel still
    counts 1..n."""
    spaces = [await _workspace(db) for _ in range(4)]
    other = PgDatabase([pg_dsn], pool_max=4)
    await other.connect()
    shard = await db.workspaces.shard_of(spaces[0][0])
    assert shard is not None
    assert [await db.workspaces.shard_of(ws) for ws, _, _ in spaces] == [shard] * len(spaces)
    w1 = GroupCommitWriter(db, max_batch=32, lanes=1)
    w2 = GroupCommitWriter(other, max_batch=32, lanes=1)
    jobs = []
    for i in range(120):
        order = spaces if i % 2 else spaces[::-1]
        for ws, ch, users in order:
            jobs.append((w1 if i % 2 else w2).append(shard, new_msg(ws, ch, users[i % 3])))
    stored = await asyncio.gather(*jobs)
    for ws, ch, _ in spaces:
        assert sorted(s.seq for s in stored if s.channel_id == ch) == list(range(1, 121))
        seqs = [r.seq for r in await db.messages.history(ws, ch, after=0, limit=200)]
        assert seqs == list(range(1, 121))
    await w1.close()
    await w2.close()
    await other.close()


async def test_a_channel_without_counter_row_fails_its_batch_and_stores_nothing(
        db: PgDatabase, pg_dsn: str) -> None:
    """Every channel gets a counter row when it is created.  Were one missing,
    storing the batch would lose that channel's messages; it fails instead."""
    ws, ch, users = await _workspace(db)
    ws2, ch2, users2 = await _workspace(db)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("DELETE FROM channel_counters WHERE channel_id = $1", ch)
    finally:
        await conn.close()
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    writer = GroupCommitWriter(db, window_ms=5.0, lanes=1)
    results = await asyncio.gather(writer.append(shard, new_msg(ws, ch, users[0])),
                                   writer.append(shard, new_msg(ws2, ch2, users2[0])),
                                   return_exceptions=True)
    assert all(isinstance(r, Exception) and not isinstance(r, AppendRejected)
               for r in results), results
    assert await db.messages.history(ws2, ch2, after=0, limit=10) == []
    await writer.close()


# -- one message's bad data never fails the others ------------------------------------

_POISONS = {
    # PostgreSQL refuses it (22021): the call reaches the server and rolls back.
    "nul_in_text": {"text": "bad\x00text"},
    # asyncpg cannot encode it (DataError 22000) before sending anything.
    "surrogate_in_text": {"text": "bad\ud800"},
    "surrogate_in_client_msg_id": {"cmid": "k\udfff"},
}


@pytest.mark.parametrize("poison", sorted(_POISONS))
async def test_a_row_postgres_rejects_costs_only_itself_in_a_batch_of_100(
        db: PgDatabase, poison: str) -> None:
    """100 messages from 10 workspaces in ONE batch (one lane, a long window),
    one of them (submitted straight to the writer, past the actions'
    validation) holding data PostgreSQL refuses: the 99 others commit and are
    called back in submission order with gap-free seqs per channel; the bad
    one gets a non-retryable rejection, which the actions map to a typed
    ``invalid_text`` error (not ``internal_error``, not retryable)."""
    from parley.actions.messages import _append_error

    spaces = [await _workspace(db, n_users=2) for _ in range(10)]
    shard = await db.workspaces.shard_of(spaces[0][0])
    assert shard is not None
    writer = GroupCommitWriter(db, window_ms=50.0, max_batch=512, lanes=1)
    bad_at = 57
    order: list[int] = []
    results: dict[int, object] = {}
    finished = asyncio.Event()
    for i in range(100):
        ws, ch, users = spaces[i % 10]
        kw = {"text": f"m{i}", "cmid": f"c{i}"}
        if i == bad_at:
            kw.update(_POISONS[poison])
        msg = new_msg(ws, ch, users[i % 2], kw["text"], kw["cmid"])

        def done(res: object, i: int = i) -> None:
            order.append(i)
            results[i] = res
            if len(results) == 100:
                finished.set()

        writer.submit(shard, msg, done)
    await asyncio.wait_for(finished.wait(), 10)
    assert order == list(range(100)), "callbacks in submission order"
    bad = results.pop(bad_at)
    assert isinstance(bad, AppendRejected) and bad.code == "invalid_text", bad
    mapped = _append_error(bad)
    assert (mapped.code, mapped.retryable, mapped.status) == ("invalid_text", False, 400)
    assert all(not isinstance(r, BaseException) for r in results.values()), results
    for k, (ws, ch, _) in enumerate(spaces):
        mine = [i for i in range(100) if i % 10 == k and i != bad_at]
        seqs = [results[i].seq for i in mine]  # type: ignore[attr-defined]
        assert seqs == list(range(1, len(mine) + 1)), (k, seqs)  # gap-free, submission order
        rows = await db.messages.history(ws, ch, after=0, limit=100)
        assert [r.text for r in rows] == [f"m{i}" for i in mine]
    assert writer.appended == 99 and writer.splits > 0
    await writer.close()


async def test_several_bad_rows_are_each_rejected_and_the_rest_commit(db: PgDatabase) -> None:
    ws, ch, users = await _workspace(db)
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    writer = GroupCommitWriter(db, window_ms=50.0, lanes=1)
    bad = {0, 13, 14, 63}
    msgs = [new_msg(ws, ch, users[0], "x\x00" if i in bad else f"ok{i}") for i in range(64)]
    got = await asyncio.gather(*(writer.append(shard, m) for m in msgs), return_exceptions=True)
    assert [i for i, r in enumerate(got) if isinstance(r, AppendRejected)] == sorted(bad)
    good = [r for r in got if not isinstance(r, BaseException)]
    assert [m.seq for m in good] == list(range(1, 61))
    # The lane and its connection are fine afterwards.
    assert (await writer.append(shard, new_msg(ws, ch, users[0]))).seq == 61
    await writer.close()
