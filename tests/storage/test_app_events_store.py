"""``AppEventStore``'s contract (parley/ports/app_events.py) on real
PostgreSQL (``PgAppEvents``): cursors start at the bot's join, claims are
exclusive leases, writes with a lost lease change nothing, and only
verified, installed apps in the channel's workspace are claimed."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json

from parley.model import NewMessage, Workspace
from parley.ports.apps import AppRecord
from server.composition import Runtime
from tests.storage.test_apps_store import _app, _ids, _token, _workspace

URL = "http://127.0.0.1:9/slack/events"


def _events_app(ws: Workspace, events: list[str] | None = None) -> AppRecord:
    app = _app(ws, f"Ev{next(_ids)}")
    manifest = {"display_information": {"name": app.name},
                "settings": {"event_subscriptions": {
                    "request_url": URL, "bot_events": events or ["message.channels"]}}}
    return AppRecord(**{**{f: getattr(app, f) for f in AppRecord.__slots__},
                        "manifest": json.dumps(manifest)})


async def _installed(rt: Runtime, ws: Workspace, verified: bool = True,
                     events: list[str] | None = None) -> AppRecord:
    db = rt.db
    app = await db.apps.create_app(_events_app(ws, events))
    await db.installs.install(ws.id, app.id, bot_email=f"{app.bot_user_id}@b.invalid",
                              tokens=[_token(app.bot_user_id)])
    if verified:
        await db.app_events.set_verified(ws.id, app.id, URL, True)
    return app


async def _post(rt: Runtime, ws: Workspace, channel: int, user: int, text: str) -> int:
    mid = next(_ids)
    stored = await rt.writer.append(ws.shard, NewMessage(
        id=mid, channel_id=channel, workspace_id=ws.id, user_id=user, text=text,
        client_msg_id=None, thread_root_id=None, created_at=dt.datetime.now(dt.UTC)))
    return stored.seq


async def test_a_cursor_starts_at_the_bots_join_and_claims_are_exclusive(
        runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    app = await _installed(runtime, ws)
    await _post(runtime, ws, general, owner.id, "before the bot")
    assert await db.app_events.claim("a", 10, 10) == []  # not in the channel: nothing
    await asyncio.sleep(0.01)
    await db.roster.add_channel_members(ws.id, general, [app.bot_user_id])
    assert await db.app_events.claim("a", 10, 10) == []  # in it, nothing new yet
    seq = await _post(runtime, ws, general, owner.id, "after")
    (claim,) = await db.app_events.claim("a", 10, 10)
    assert (claim.app_id, claim.channel_id, claim.channel_kind) == (app.id, general, "public")
    assert claim.delivered == 2 * seq - 1 and claim.owner == "a"
    assert await db.app_events.claim("b", 10, 10) == []  # leased to "a"
    pending = await db.app_events.pending(claim, 10)
    assert [p.message.text for p in pending] == ["after"]
    assert await db.app_events.advance(claim, 2 * seq, 10)
    await db.app_events.release(claim)
    (again,) = await db.app_events.claim("b", 10, 10)  # position 2s+1 is still open
    assert again.delivered == 2 * seq
    assert not await db.app_events.advance(claim, 2 * seq + 1, 10)  # "a" lost the lease
    # The last write of a pair moves the cursor and ends the lease at once.
    assert await db.app_events.advance(again, 2 * seq + 1, 10, release=True)
    assert not await db.app_events.advance(again, 2 * seq + 1, 10)  # released: not b's now
    assert await db.app_events.claim("a", 10, 10) == []  # all delivered
    seq2 = await _post(runtime, ws, general, owner.id, "next")
    (third,) = await db.app_events.claim("a", 10, 10)  # claimable at once after the release
    assert third.delivered == 2 * seq + 1 and seq2 == seq + 1


async def test_an_expired_lease_is_taken_over_and_defer_waits(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    app = await _installed(runtime, ws)
    await db.roster.add_channel_members(ws.id, general, [app.bot_user_id])
    await _post(runtime, ws, general, owner.id, "m")
    (dead,) = await db.app_events.claim("dead", 0.2, 10)
    assert await db.app_events.claim("live", 10, 10) == []
    await asyncio.sleep(0.3)
    (live,) = await db.app_events.claim("live", 10, 10)
    assert live.owner == "live" and live.delivered == dead.delivered
    assert not await db.app_events.defer(dead, 1, "http_error", dt.datetime.now(dt.UTC))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)
    assert await db.app_events.defer(live, 1, "http_timeout", later)
    assert await db.app_events.claim("live", 10, 10) == []  # not before `later`
    await asyncio.sleep(0.4)
    (retry,) = await db.app_events.claim("live", 10, 10)
    assert (retry.attempts, retry.retry_reason) == (1, "http_timeout")


async def test_rejoining_restarts_the_cursor_at_the_new_join(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    app = await _installed(runtime, ws)
    await db.roster.add_channel_members(ws.id, general, [app.bot_user_id])
    await _post(runtime, ws, general, owner.id, "one")
    (c,) = await db.app_events.claim("a", 10, 10)
    await db.roster.remove_channel_member(ws.id, general, app.bot_user_id)
    await _post(runtime, ws, general, owner.id, "while away")
    assert await db.app_events.claim("a", 10, 10) == []
    await asyncio.sleep(0.01)
    await db.roster.add_channel_members(ws.id, general, [app.bot_user_id])
    assert await db.app_events.claim("b", 10, 10) == []  # restarted at the join: nothing new
    assert not await db.app_events.advance(c, c.delivered + 2, 10)  # the restart ended "a"'s
    seq = await _post(runtime, ws, general, owner.id, "back")
    (c2,) = await db.app_events.claim("a", 10, 10)
    assert [p.message.text for p in await db.app_events.pending(c2, 10)] == ["back"]
    assert c2.delivered == 2 * seq - 1


async def test_only_verified_installed_apps_of_the_workspace_are_claimed(
        runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    other, other_owner, other_general = await _workspace(runtime)
    unverified = await _installed(runtime, ws, verified=False)
    app = await _installed(runtime, ws)
    for a in (unverified, app):
        await db.roster.add_channel_members(ws.id, general, [a.bot_user_id])
    await _post(runtime, ws, general, owner.id, "m")
    await _post(runtime, other, other_general, other_owner.id, "elsewhere")
    claims = await db.app_events.claim("a", 10, 10)
    assert [(c.app_id, c.workspace_id) for c in claims] == [(app.id, ws.id)]
    await db.app_events.set_verified(ws.id, unverified.id, URL, False)
    assert [u.app_id for u in await db.app_events.urls_to_verify(30, 100)
            if u.workspace_id == ws.id] == []  # failed: not again within 30 s
    await db.installs.uninstall(ws.id, app.id)
    await db.app_events.release(claims[0])
    assert await db.app_events.claim("a", 10, 10) == []


async def test_a_reaction_writes_outbox_rows_for_apps_that_get_it(runtime: Runtime) -> None:
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    subscribed = await _installed(runtime, ws, events=["reaction_added"])
    unsubscribed = await _installed(runtime, ws)
    outside = await _installed(runtime, ws, events=["reaction_added"])
    for a in (subscribed, unsubscribed):
        await db.roster.add_channel_members(ws.id, general, [a.bot_user_id])
    seq = await _post(runtime, ws, general, owner.id, "m")
    mid = (await db.app_events.pending(
        (await db.app_events.claim("x", 10, 10))[0], 1))[0].message.id
    assert await db.reactions.add_reaction(ws.id, general, mid, owner.id, "tada", 50) == "added"
    assert await db.reactions.add_reaction(ws.id, general, mid, owner.id, "tada", 50) == "exists"
    (ev,) = await db.app_events.claim_outbox("a", 10, 10)
    assert (ev.app_id, ev.kind, ev.channel_kind) == (subscribed.id, "reaction_added", "public")
    assert ev.payload["emoji"] == "tada" and ev.payload["item_seq"] == seq
    assert ev.payload["user_id"] == owner.id and ev.payload["message_id"] == mid
    assert await db.app_events.claim_outbox("b", 10, 10) == []  # leased to "a"
    assert not await db.app_events.outbox_done(dataclasses.replace(ev, owner="b"))
    assert await db.app_events.outbox_done(ev)
    assert await db.app_events.claim_outbox("a", 10, 10) == []  # none for `outside` (not in it)
    del unsubscribed, outside


async def test_memberships_and_an_uninstall_write_rows_at_commit(runtime: Runtime) -> None:
    """The rows are there when the change returns (no dispatcher runs here),
    one per app that gets the event; the uninstall's have no channel."""
    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    watcher = await _installed(runtime, ws, events=["member_joined_channel", "member_left_channel"])
    app = await _installed(runtime, ws, events=["app_uninstalled", "tokens_revoked",
                                                 "member_joined_channel"])
    await db.roster.add_channel_members(ws.id, general, [watcher.bot_user_id])
    (own,) = await db.app_events.claim_outbox("a", 10, 10)  # the watcher's own join
    assert (own.app_id, own.kind, own.payload) == (
        watcher.id, "member_joined_channel", {"user_id": watcher.bot_user_id})
    assert await db.app_events.outbox_done(own)
    await db.roster.add_channel_members(ws.id, general, [app.bot_user_id], owner.id)
    joined = await db.app_events.claim_outbox("a", 10, 10)
    assert sorted((e.app_id, e.kind, e.payload["inviter_id"]) for e in joined) == sorted(
        [(watcher.id, "member_joined_channel", owner.id),
         (app.id, "member_joined_channel", owner.id)])
    for e in joined:
        assert await db.app_events.outbox_done(e)
    await db.installs.uninstall(ws.id, app.id)
    rows = await db.app_events.claim_outbox("a", 10, 10)
    assert sorted((e.app_id, e.kind, e.channel_id, e.channel_kind) for e in rows) == sorted(
        [(app.id, "app_uninstalled", None, None), (app.id, "tokens_revoked", None, None),
         (watcher.id, "member_left_channel", general, "public")])
    revoked = next(e for e in rows if e.kind == "tokens_revoked")
    assert revoked.payload == {"oauth": [], "bot": [app.bot_user_id]}
    for e in rows:
        assert await db.app_events.outbox_done(e)
    await db.installs.uninstall(ws.id, app.id)  # a repeat: nothing more
    assert await db.app_events.claim_outbox("a", 10, 10) == []


async def test_a_response_url_counts_its_uses_atomically_and_expires(
        runtime: Runtime) -> None:
    from parley.ports.app_events import ResponseUrl

    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    app = await _installed(runtime, ws, verified=False)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    url = ResponseUrl(id=next(_ids), workspace_id=ws.id, app_id=app.id, channel_id=general,
                      user_id=owner.id, secret_hash="h" * 64, expires_at=soon, max_uses=5)
    await db.app_events.create_response_url(url)
    assert await db.app_events.use_response_url(ws.id, url.id, "x" * 64) is None  # wrong hash
    other, _, _ = await _workspace(runtime)
    assert await db.app_events.use_response_url(other.id, url.id, "h" * 64) is None
    got = await asyncio.gather(*(db.app_events.use_response_url(ws.id, url.id, "h" * 64)
                                 for _ in range(8)))
    assert sum(g is not None for g in got) == 5  # concurrent posts never share the last use
    assert next(g for g in got if g is not None) == url
    assert await db.app_events.use_response_url(ws.id, url.id, "h" * 64) is None
    past = dataclasses.replace(url, id=next(_ids),
                               expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    await db.app_events.create_response_url(past)
    assert await db.app_events.use_response_url(ws.id, past.id, "h" * 64) is None


async def test_a_response_url_keeps_its_first_original(runtime: Runtime) -> None:
    from parley.ports.app_events import ResponseUrl

    db = runtime.db
    ws, owner, general = await _workspace(runtime)
    app = await _installed(runtime, ws, verified=False)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    url = ResponseUrl(id=next(_ids), workspace_id=ws.id, app_id=app.id, channel_id=general,
                      user_id=owner.id, secret_hash="h" * 64, expires_at=soon, max_uses=5)
    await db.app_events.create_response_url(url)
    got = await db.app_events.use_response_url(ws.id, url.id, "h" * 64)
    assert got is not None and got.message_id is None  # a command's: none yet
    other, _, _ = await _workspace(runtime)
    await db.app_events.set_response_url_message(other.id, url.id, 7)  # another tenant's: no-op
    await db.app_events.set_response_url_message(ws.id, url.id, 11)
    await db.app_events.set_response_url_message(ws.id, url.id, 12)  # the first one stays
    got = await db.app_events.use_response_url(ws.id, url.id, "h" * 64)
    assert got is not None and got.message_id == 11
    pressed = dataclasses.replace(url, id=next(_ids), message_id=21)  # an interaction's
    await db.app_events.create_response_url(pressed)
    await db.app_events.set_response_url_message(ws.id, pressed.id, 22)
    got = await db.app_events.use_response_url(ws.id, pressed.id, "h" * 64)
    assert got is not None and got.message_id == 21
