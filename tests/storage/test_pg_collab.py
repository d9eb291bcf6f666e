"""The collaboration queries of PgDatabase (storage/pg_accounts.py,
pg_channels.py, pg_messages.py) on real PostgreSQL: the atomicity and
concurrency invariants their docstrings promise."""

from __future__ import annotations

import asyncio
import hashlib
import itertools

import asyncpg

from parley.actions.search import catch_up
from parley.model import NewMessage, User, Workspace
from server.composition import Runtime
from storage.postgres import PgDatabase

_ids = itertools.count(7_000_000)


async def _users(db: PgDatabase, n: int) -> list[User]:
    out = []
    for _ in range(n):
        i = next(_ids)
        u = await db.users.create_user(i, f"u{i}@x.io", f"U{i}", "h")
        assert u is not None
        out.append(u)
    return out


async def _workspace(rt: Runtime, members: int) -> tuple[Workspace, list[User], int]:
    db = rt.db
    users = await _users(db, members)
    ws = await db.workspaces.create_workspace(next(_ids), "W", users[0], next(_ids))
    for u in users[1:]:
        await db.members.add_member(ws.id, u, "member")
    general = await db.channels.default_channel(ws.id)
    assert general is not None
    return ws, users, general.id


async def _post(rt: Runtime, ws: Workspace, channel: int, user: User, text: str,
                root: int | None = None) -> int:
    mid = next(_ids)
    stored = await rt.writer.append(ws.shard, NewMessage(
        id=mid, channel_id=channel, workspace_id=ws.id, user_id=user.id, text=text,
        client_msg_id=None, thread_root_id=root, created_at=rt.services.ids.timestamp(mid)))
    return stored.id


async def test_an_invite_with_one_use_admits_exactly_one_of_many(runtime: Runtime) -> None:
    db = runtime.db
    ws, _, _ = await _workspace(runtime, 1)
    token_hash = hashlib.sha256(b"secret").hexdigest()
    await db.invites.create_invite(next(_ids), ws.id, token_hash, "member", ws.created_by, 60, 1)
    hopefuls = await _users(db, 6)
    outcomes = await asyncio.gather(*(db.invites.accept_invite(ws.id, token_hash, u)
                                      for u in hopefuls))
    assert sorted(o.status for o in outcomes) == ["invalid"] * 5 + ["joined"]
    assert (await db.invites.accept_invite(ws.id, "nope", hopefuls[0])).status == "invalid"


async def test_pin_and_reaction_caps_hold_under_concurrency(runtime: Runtime) -> None:
    db = runtime.db
    ws, users, general = await _workspace(runtime, 2)
    msgs = [await _post(runtime, ws, general, users[0], f"m{i}") for i in range(6)]
    pinned = await asyncio.gather(*(db.pins.pin(ws.id, general, m, users[0].id, 3) for m in msgs))
    assert sorted(pinned) == ["pinned"] * 3 + ["too_many"] * 3
    added = await asyncio.gather(*(db.reactions.add_reaction(ws.id, general, msgs[0], users[1].id,
                                                             f"e{i}", 4) for i in range(8)))
    assert sorted(added) == ["added"] * 4 + ["too_many"] * 4
    again = await db.reactions.add_reaction(ws.id, general, msgs[0], users[1].id, "e0", 4)
    assert again in {"exists", "too_many"}


async def test_delete_is_a_tombstone_that_takes_reactions_pins_and_mentions(
        runtime: Runtime) -> None:
    db = runtime.db
    ws, users, general = await _workspace(runtime, 3)
    mid = await _post(runtime, ws, general, users[0], "hello <@x>")
    msg = await db.messages.message(ws.id, mid)
    assert msg is not None
    change = await db.messages.set_mentions(msg, [users[1].id, users[2].id, 424242], everyone=False)
    assert change.added == tuple(sorted([users[1].id, users[2].id])), "members only"
    assert await db.reactions.add_reaction(ws.id, general, mid, users[1].id, "tada", 50) == "added"
    assert await db.pins.pin(ws.id, general, mid, users[1].id, 100) == "pinned"
    result = await db.messages.delete_message(ws.id, mid)
    assert result is not None
    tomb, unmentioned = result
    assert (tomb.deleted, tomb.text, tomb.seq) == (True, "", msg.seq)
    assert unmentioned == change.added
    assert await db.reactions.reactions_of(ws.id, [mid]) == []
    assert await db.pins.pins(ws.id, general) == []
    assert await db.messages.delete_message(ws.id, mid) is None
    assert await db.reactions.add_reaction(ws.id, general, mid, users[1].id, "tada", 50) == "gone"
    await catch_up(db.indexer)
    assert await db.search.search(ws.id, users[0].id, "hello", include_public=True, channel_id=None,
                                  author_id=None, since=None, until=None, before_id=None,
                                  limit=10) == []


async def test_ending_a_membership_removes_every_channel_membership(runtime: Runtime) -> None:
    db = runtime.db
    ws, users, general = await _workspace(runtime, 2)
    private = next(_ids)
    await db.channels.create_channel(private, ws.id, "private", "secret", users[0].id)
    assert await db.roster.add_channel_members(ws.id, private, [users[1].id]) == [users[1].id]
    root = await _post(runtime, ws, general, users[0], "root")
    assert await db.threads.follow_thread(ws.id, general, root, [users[1].id], override=True) == [
        users[1].id]
    removed = await db.members.end_membership(ws.id, users[1].id, "deactivated")
    assert removed == sorted([general, private])
    assert await db.members.end_membership(ws.id, users[1].id, "deactivated") is None
    assert not await db.roster.is_channel_member(ws.id, private, users[1].id)
    assert not await db.threads.is_following(ws.id, root, users[1].id)
    # Inactive members cannot be added to channels.
    assert await db.roster.add_channel_members(ws.id, private, [users[1].id]) == []


async def test_explicit_unfollow_survives_automatic_follows(runtime: Runtime) -> None:
    db = runtime.db
    ws, users, general = await _workspace(runtime, 2)
    root = await _post(runtime, ws, general, users[0], "root")
    assert await db.threads.unfollow_thread(ws.id, general, root, users[0].id) is False
    assert await db.threads.follow_thread(ws.id, general, root, [users[0].id], override=False) == []
    assert await db.threads.follow_thread(ws.id, general, root, [users[0].id], override=True) == [
        users[0].id]
    outsider = (await _users(db, 1))[0]
    assert await db.threads.follow_thread(ws.id, general, root, [outsider.id],
                                          override=True) == [], \
        "only channel members follow"


async def test_unread_counts_scan_the_primary_key_range(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in await conn.fetch(
        """EXPLAIN SELECT count(*) FROM (SELECT 1 FROM messages x
           WHERE x.channel_id = 1 AND x.seq > 5 AND x.user_id <> 3 AND x.deleted_at IS NULL
             AND (x.thread_root_id IS NULL OR x.also_in_channel) LIMIT 10000) u"""))
    assert "messages_pkey" in plan, plan
    plan = "\n".join(r[0] for r in await conn.fetch(
        """EXPLAIN SELECT count(*) FROM mentions n
           WHERE n.user_id = 1 AND n.channel_id = 2 AND n.seq > 3"""))
    assert "mentions_pkey" in plan, plan
    await conn.close()
