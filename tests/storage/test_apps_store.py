"""The app ports' contracts (parley/ports/apps.py) on real PostgreSQL
(``PgApps``, ``PgInstalls``, ``PgWebhooks``), and the message ports the Web
API adds (``MessageExtrasStore``; ``TimelineIndex``: ``message_at``,
``seq_at``, ``channel_page``)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import json

import pytest

from parley.model import MessageExtras, NewMessage, User, Workspace
from parley.ports.apps import AppNameTaken, AppRecord, NewToken, WebhookRecord
from server.composition import Runtime

_ids = itertools.count(9_000_000)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def _workspace(rt: Runtime) -> tuple[Workspace, User, int]:
    db = rt.db
    i = next(_ids)
    owner = await db.users.create_user(i, f"o{i}@x.io", "Owner", "h")
    assert owner is not None
    ws = await db.workspaces.create_workspace(next(_ids), "W", owner, next(_ids))
    general = await db.channels.default_channel(ws.id)
    assert general is not None
    return ws, owner, general.id


def _app(ws: Workspace, name: str = "App") -> AppRecord:
    return AppRecord(id=next(_ids), workspace_id=ws.id, name=name, bot_name=name.lower(),
                     manifest=json.dumps({"display_information": {"name": name}}),
                     bot_scopes=("chat:write",), socket_mode=False, bot_id=next(_ids),
                     bot_user_id=next(_ids), created_by=ws.created_by, created_at=NOW,
                     updated_at=NOW, signing_salt="s1", prev_signing_salt=None,
                     prev_signing_until=None, installed=False, deleted=False)


def _token(user_id: int, kind: str = "bot") -> NewToken:
    return NewToken(id=next(_ids), kind=kind, user_id=user_id, secret_hash="h" * 64,
                    scopes=("chat:write",))


async def test_apps_are_workspace_scoped_and_names_unique(runtime: Runtime) -> None:
    store = runtime.db
    ws, _, _ = await _workspace(runtime)
    other, _, _ = await _workspace(runtime)
    app = await store.apps.create_app(_app(ws))
    assert app.installed is False and app.manifest.startswith("{")
    with pytest.raises(AppNameTaken):
        await store.apps.create_app(_app(ws, "APP"))
    await store.apps.create_app(_app(other, "App"))  # another workspace may use the name
    assert await store.apps.app(other.id, app.id) is None
    assert await store.apps.app_by_bot(other.id, app.bot_id) is None
    assert [a.id for a in await store.apps.apps(ws.id)] == [app.id]
    second = await store.apps.create_app(_app(ws, "Second"))
    with pytest.raises(AppNameTaken):
        await store.apps.update_app(ws.id, second.id, name="app", bot_name="x", manifest="{}",
                                    bot_scopes=(), socket_mode=False)
    assert await store.apps.update_app(other.id, app.id, name="x", bot_name="x", manifest="{}",
                                       bot_scopes=(), socket_mode=False) is None


async def test_install_is_one_transaction_and_revokes_earlier_tokens(runtime: Runtime) -> None:
    store = db = runtime.db
    ws, _, _ = await _workspace(runtime)
    app = await store.apps.create_app(_app(ws))
    first = _token(app.bot_user_id)
    installed = await store.installs.install(ws.id, app.id,
                                             bot_email=f"{app.bot_user_id}@b.invalid",
                                             tokens=[first])
    assert installed is not None and installed.installed
    bot = await db.users.user(app.bot_user_id)
    assert bot is not None and bot.is_bot
    member = await db.members.member(ws.id, app.bot_user_id)
    assert member is not None and member.is_bot and member.active and member.role == "member"
    assert await db.roster.user_channels(ws.id, app.bot_user_id) == []  # joins no channel
    grant = await store.installs.token_grant(ws.id, first.id)
    assert grant is not None and grant.app_live and grant.user_active
    assert not grant.token.revoked and grant.bot_id == app.bot_id
    second = _token(app.bot_user_id)
    await store.installs.install(ws.id, app.id, bot_email=f"{app.bot_user_id}@b.invalid",
                                 tokens=[second])
    assert [(t.id, t.revoked) for t in await store.installs.tokens(ws.id, app.id)] == [
        (first.id, True), (second.id, False)]
    other, _, _ = await _workspace(runtime)
    assert await store.installs.token_grant(other.id, second.id) is None
    assert await store.installs.install(other.id, app.id, bot_email="x@b.invalid",
                                        tokens=[]) is None


async def test_uninstall_revokes_everything_and_takes_the_bot_out(runtime: Runtime) -> None:
    store = db = runtime.db
    ws, _, general = await _workspace(runtime)
    app = await store.apps.create_app(_app(ws))
    tokens = [_token(app.bot_user_id), _token(app.bot_user_id, "app")]
    await store.installs.install(ws.id, app.id, bot_email=f"{app.bot_user_id}@b.invalid",
                                 tokens=tokens)
    await db.roster.add_channel_members(ws.id, general, [app.bot_user_id])
    hook = await store.webhooks.create_webhook(
        WebhookRecord(id=next(_ids), workspace_id=ws.id, app_id=app.id, channel_id=general,
                      created_by=ws.created_by, created_at=NOW, revoked=False), "w" * 64)
    done = await store.installs.uninstall(ws.id, app.id)
    assert done is not None
    assert done.revoked_tokens == tuple(sorted(t.id for t in tokens))
    assert done.revoked_webhooks == (hook.id,) and done.channel_ids == (general,)
    assert not await db.roster.is_channel_member(ws.id, general, app.bot_user_id)
    member = await db.members.member(ws.id, app.bot_user_id)
    assert member is not None and not member.active
    grant = await store.installs.token_grant(ws.id, tokens[0].id)
    assert grant is not None and grant.token.revoked and not grant.app_live
    hook_grant = await store.webhooks.webhook_grant(ws.id, hook.id)
    assert hook_grant is not None and hook_grant.webhook.revoked
    again = await store.installs.uninstall(ws.id, app.id)  # idempotent
    assert again is not None and again.revoked_tokens == () and again.channel_ids == ()
    # Reinstalling brings the bot back as an active member.
    await store.installs.install(ws.id, app.id, bot_email=f"{app.bot_user_id}@b.invalid", tokens=[])
    member = await db.members.member(ws.id, app.bot_user_id)
    assert member is not None and member.active
    gone = await store.installs.delete_app(ws.id, app.id)
    assert gone is not None and gone.app.deleted
    assert await store.apps.app(ws.id, app.id) is None
    kept = await store.apps.app_by_bot(ws.id, app.bot_id)
    assert kept is not None and kept.deleted
    assert await store.installs.delete_app(ws.id, app.id) is None


async def test_revocation_is_immediate_and_idempotent(runtime: Runtime) -> None:
    store = runtime.db
    ws, _, _ = await _workspace(runtime)
    app = await store.apps.create_app(_app(ws))
    tok = _token(app.bot_user_id)
    await store.installs.install(ws.id, app.id, bot_email=f"{app.bot_user_id}@b.invalid",
                                 tokens=[tok])
    revoked = await asyncio.gather(*(store.installs.revoke_token(ws.id, tok.id) for _ in range(5)))
    assert all(r is not None and r.revoked for r in revoked)
    grant = await store.installs.token_grant(ws.id, tok.id)
    assert grant is not None and grant.token.revoked
    assert await store.installs.revoke_token(ws.id, 1) is None


async def test_signing_salt_rotation_keeps_one_previous(runtime: Runtime) -> None:
    store = runtime.db
    ws, _, _ = await _workspace(runtime)
    app = await store.apps.create_app(_app(ws))
    until = NOW + dt.timedelta(hours=1)
    r1 = await store.apps.rotate_signing_salt(ws.id, app.id, "s2", until)
    assert r1 is not None and (r1.signing_salt, r1.prev_signing_salt) == ("s2", "s1")
    r2 = await store.apps.rotate_signing_salt(ws.id, app.id, "s3", until)
    assert r2 is not None and (r2.signing_salt, r2.prev_signing_salt) == ("s3", "s2")


async def _append(rt: Runtime, ws: Workspace, channel: int, user: int, text: str,
                  at: dt.datetime | None = None, root: int | None = None) -> int:
    mid = next(_ids)
    stored = await rt.writer.append(ws.shard, NewMessage(
        id=mid, channel_id=channel, workspace_id=ws.id, user_id=user, text=text,
        client_msg_id=None, thread_root_id=root, created_at=at or rt.services.ids.timestamp(mid)))
    return stored.seq


async def test_message_addressing_by_second_and_seq_residue(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    base = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    seqs = [await _append(runtime, ws, general, owner.id, f"m{i}",
                          at=base + dt.timedelta(seconds=i // 2)) for i in range(6)]
    assert seqs == [1, 2, 3, 4, 5, 6]
    second = int(base.timestamp())
    found = await db.timeline.message_at(ws.id, general, second + 1, 3, 1_000_000)
    assert found is not None and found.text == "m2"
    # the wrong second:
    assert await db.timeline.message_at(ws.id, general, second, 3, 1_000_000) is None
    # A small modulus makes several candidates: the second picks the one.
    found = await db.timeline.message_at(ws.id, general, second + 2, 1, 4)  # seqs 1 and 5
    assert found is not None and found.seq == 5
    assert await db.timeline.seq_at(ws.id, general, base) == 1
    assert await db.timeline.seq_at(ws.id, general, base + dt.timedelta(seconds=1)) == 3
    assert await db.timeline.seq_at(ws.id, general, base + dt.timedelta(hours=1)) == 7
    other, _, _ = await _workspace(runtime)
    assert await db.timeline.message_at(other.id, general, second, 1, 1_000_000) is None
    assert await db.timeline.seq_at(other.id, general, base) == 1


async def test_channel_page_shows_the_main_view(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    root_seq = await _append(runtime, ws, general, owner.id, "root")
    page = await db.timeline.channel_page(ws.id, general, after_seq=0, before_seq=99, limit=10,
                                          newest_first=True, top_level=True)
    root = page[0]
    await _append(runtime, ws, general, owner.id, "reply", root=root.id)
    await _append(runtime, ws, general, owner.id, "later")
    shown = await db.timeline.channel_page(ws.id, general, after_seq=0, before_seq=99, limit=10,
                                           newest_first=True, top_level=True)
    assert [m.text for m in shown] == ["later", "root"] and root_seq == 1
    everything = await db.timeline.channel_page(ws.id, general, after_seq=1, before_seq=3, limit=10,
                                                newest_first=False, top_level=False)
    assert [m.text for m in everything] == ["reply"]


async def test_extras_are_stored_edited_dropped_and_scoped(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    seq = await _append(runtime, ws, general, owner.id, "with blocks")
    msg = (await db.messages.history(ws.id, general))[0]
    assert msg.seq == seq
    extras = MessageExtras(blocks='[{"type":"divider"}]', bot_id=5, app_id=6)
    await db.extras.put_message_extras(ws.id, general, msg.id, extras)
    await db.extras.put_message_extras(ws.id, general, msg.id, extras)  # idempotent
    assert await db.extras.message_extras(ws.id, [msg.id]) == {msg.id: extras}
    other, _, _ = await _workspace(runtime)
    assert await db.extras.message_extras(other.id, [msg.id]) == {}
    edited = dataclasses.replace(extras, blocks=None, attachments='[{"text":"a"}]')
    assert await db.messages.edit_message(ws.id, msg.id, "edited", NOW, edited) is not None
    assert await db.extras.message_extras(ws.id, [msg.id]) == {msg.id: edited}
    await db.extras.drop_message_extras(ws.id, msg.id)  # the message exists: kept
    assert msg.id in await db.extras.message_extras(ws.id, [msg.id])
    orphan = next(_ids)
    await db.extras.put_message_extras(ws.id, general, orphan, extras)
    await db.extras.drop_message_extras(ws.id, orphan)
    assert await db.extras.message_extras(ws.id, [orphan]) == {}
    await db.messages.delete_message(ws.id, msg.id)  # the tombstone keeps the bot, not the content
    assert await db.extras.message_extras(ws.id, [msg.id]) == {
        msg.id: MessageExtras(bot_id=5, app_id=6)}
