"""parley_append_batch (shard migrations 0005, 0006) against real
PostgreSQL: which code each message of one batch gets.

Visibility comes before channel state: ``channel_archived`` only for a
member of the channel; anyone else (a workspace member outside the channel,
a user of another workspace, a channel id that does not exist) gets
``not_in_channel``, so a refusal never tells whether the channel exists.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest

from parley.model import AppendRejected, NewMessage, User
from storage.postgres import PgDatabase
from storage.writer import GroupCommitWriter

_ids = itertools.count(5_000_000)


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[PgDatabase]:
    database = PgDatabase([pg_dsn], pool_max=4)
    await database.connect()
    yield database
    await database.close()


def _msg(ws: int, ch: int, user: int) -> NewMessage:
    return NewMessage(id=next(_ids), channel_id=ch, workspace_id=ws, user_id=user, text="hi",
                      client_msg_id=None, thread_root_id=None, created_at=dt.datetime.now(dt.UTC))


async def _user(db: PgDatabase) -> User:
    n = next(_ids)
    u = await db.users.create_user(n, f"u{n}@x.io", f"U{n}", "h")
    assert u is not None
    return u


async def test_only_members_learn_that_a_channel_is_archived(db: PgDatabase) -> None:
    owner, member, stranger = await _user(db), await _user(db), await _user(db)
    ws = (await db.workspaces.create_workspace(next(_ids), "Acme", owner, next(_ids))).id
    await db.members.add_member(ws, member, "member")
    other_ws = (await db.workspaces.create_workspace(next(_ids), "Rival", stranger, next(_ids))).id
    attic = await db.channels.create_channel(next(_ids), ws, "private", "attic", owner.id)
    assert attic is not None
    await db.channels.update_channel(ws, attic.id, archived=True)
    writer = GroupCommitWriter(db, window_ms=5.0, lanes=1)  # one batch for all
    shard = await db.workspaces.shard_of(ws)
    assert shard is not None
    results = await asyncio.gather(
        writer.append(shard, _msg(ws, attic.id, owner.id)),  # a member of it
        writer.append(shard, _msg(ws, attic.id, member.id)),  # in the workspace, not in it
        writer.append(shard, _msg(other_ws, attic.id, stranger.id)),  # another workspace
        writer.append(shard, _msg(ws, attic.id, stranger.id)),  # ... claiming Acme's id
        writer.append(shard, _msg(ws, 2**62, member.id)),  # no such channel
        return_exceptions=True)
    codes = [r.code if isinstance(r, AppendRejected) else r for r in results]
    assert codes == ["channel_archived"] + ["not_in_channel"] * 4
    assert writer.batches == 1
    await writer.close()
