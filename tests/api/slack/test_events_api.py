"""The Events API's delivery rules against scripted loopback apps: Slack's
envelope and signature, retries and their headers, final answers, stable
event ids across a dispatcher restart, per-channel order, url_verification,
secret rotation, and who receives what (workspaces, channels)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

from aiohttp import web

from parley.actions.app_dispatch import EventDispatcher
from server.runner import Running
from tests.api.helpers import Team, expect
from tests.api.slack.events_helpers import (
    Received,
    Recorder,
    fast_events,
    point_events,
    signed_by,
)
from tests.api.slack.helpers import Bot, cid, install, manifest, native, team_with_bot


async def _ready(parley: Running, rec: Recorder, events: list[str] | None = None,
                 channel: str | None = None) -> tuple[Team, Bot]:
    """A team, a bot in #general (or ``channel``) whose events go to ``rec``."""
    t, bot = await team_with_bot(parley)
    fast_events(parley)
    await bot.call(bot.client.conversations_join, channel=cid("public", channel or t.general))
    shown = await point_events(t.ada, t.ws, bot, rec.url, events or ["message.channels"])
    assert shown["event_request_url_verified"] is rec.echo
    assert rec.verifications  # sent before the PATCH answered
    return t, bot


def _texts(rs: list[Received]) -> list[str]:
    return [r.payload["event"]["text"] for r in rs]


async def test_a_message_event_in_slacks_envelope_signed(parley: Running,
                                                         app_site: Recorder) -> None:
    t, bot = await _ready(parley, app_site, ["message.channels", "app_mention"])
    root = await t.post(t.bob, t.general, f"<@{native(bot.user_id)}> deploy please")
    await t.post(t.carol, t.general, "on it", thread_root_id=root["id"])
    got = await app_site.wait_for(lambda rs: len(rs) >= 3)
    shown = await expect(t.ada.api, "GET", t.w(f"/apps/{bot.app['id']}"), 200)
    assert shown["event_request_url_verified"] is True
    assert all(signed_by(bot.signing_secret, r.headers, r.body) for r in got)
    assert all(r.headers["content-type"].startswith("application/json") for r in got)
    first = got[0].payload
    assert first["type"] == "event_callback" and first["api_app_id"] == bot.app["slack"]["app_id"]
    assert first["team_id"] == bot.app["slack"]["team_id"]
    assert first["authorizations"][0]["user_id"] == bot.user_id
    assert isinstance(first["event_time"], int) and first["event_id"].startswith("Ev")
    ev = first["event"]
    assert ev["type"] == "message" and ev["channel"] == cid("public", t.general)
    assert ev["text"] == f"<@{bot.user_id}> deploy please" and ev["channel_type"] == "channel"
    assert ev["user"] == "U" + cid("public", t.bob.id)[1:] and ev["event_ts"] == ev["ts"]
    mention = got[1].payload
    assert mention["event"]["type"] == "app_mention" and mention["event"]["ts"] == ev["ts"]
    assert mention["event_id"] != first["event_id"]
    reply = got[2].payload["event"]
    assert reply["type"] == "message" and reply["thread_ts"] == ev["ts"]
    assert len({r.payload["event_id"] for r in got}) == 3


async def test_retries_carry_slacks_headers_and_the_same_event_id(parley: Running,
                                                                  app_site: Recorder) -> None:
    answers = iter([Recorder.SLEEP, web.Response(status=500)])
    app_site.sleep_s = 1.0  # past the 0.5 s timeout of fast_events
    app_site.script = lambda rec, got: next(answers, None)
    t, bot = await _ready(parley, app_site)
    await t.post(t.bob, t.general, "first")
    await t.post(t.bob, t.general, "second")
    got = await app_site.wait_for(lambda rs: len(rs) >= 4)
    assert _texts(got) == ["first", "first", "first", "second"]
    assert len({r.payload["event_id"] for r in got[:3]}) == 1
    assert [r.headers.get("x-slack-retry-num") for r in got] == [None, "1", "2", None]
    assert [r.headers.get("x-slack-retry-reason") for r in got] == [
        None, "http_timeout", "http_error", None]
    assert all(signed_by(bot.signing_secret, r.headers, r.body) for r in got)


async def test_no_retry_and_404_are_final_and_retries_end(parley: Running,
                                                          app_site: Recorder) -> None:
    def script(rec: Recorder, got: Received) -> web.Response | None:
        text = got.payload["event"]["text"]
        if text == "no-retry":
            return web.Response(status=500, headers={"X-Slack-No-Retry": "1"})
        if text == "no-listener":
            return web.Response(status=404)
        if text == "always-failing":
            return web.Response(status=503)
        return None

    app_site.script = script
    t, _ = await _ready(parley, app_site)
    for text in ("no-retry", "no-listener", "always-failing", "after"):
        await t.post(t.bob, t.general, text)
    got = await app_site.wait_for(lambda rs: "after" in _texts(rs))
    # Slack's schedule: the try and three retries (fast_events: 0, 0.3, 0.3 s), then dropped.
    assert _texts(got) == ["no-retry", "no-listener", *["always-failing"] * 4, "after"]


async def test_event_ids_survive_a_dispatcher_restart_and_order_holds(
        parley: Running, app_site: Recorder) -> None:
    """The dispatcher dies while an app holds a request (its lease and the
    cursor stay as a crash leaves them); a new one takes over when the
    lease ends and resends that event with the same event_id, in order."""
    hung = asyncio.Event()

    def script(rec: Recorder, got: Received) -> web.Response | None:
        if got.payload["event"]["text"] == "m3" and not hung.is_set():
            hung.set()
            return Recorder.SLEEP
        return None

    app_site.script = script
    t, _ = await _ready(parley, app_site)
    parley.rt.services.settings = dataclasses.replace(parley.rt.services.settings,
                                                      app_events_timeout_s=1.5)
    for i in range(1, 6):
        await t.post(t.bob, t.general, f"m{i}")
    await asyncio.wait_for(hung.wait(), 10)
    old = parley.rt.dispatcher
    assert old is not None
    for task in [x for x in parley.rt.tasks if x.get_name() == "parley-app-events"]:
        task.cancel()
        parley.rt.tasks.remove(task)
    parley.rt.dispatcher = None
    fast_events(parley)  # the new dispatcher's lease math uses the short timeout
    new = parley.rt.start_dispatcher()
    assert new.owner != old.owner
    got = await app_site.wait_for(lambda rs: _texts(rs)[-1:] == ["m5"], timeout=20)
    texts = _texts(got)
    assert texts == ["m1", "m2", "m3", "m3", "m4", "m5"]
    ids = [r.payload["event_id"] for r in got]
    assert ids[2] == ids[3] and len(set(ids)) == 5


async def test_a_url_that_does_not_echo_the_challenge_gets_no_events(
        parley: Running, app_site: Recorder) -> None:
    app_site.echo = False
    t, bot = await _ready(parley, app_site)
    challenge = app_site.verifications[0].payload
    assert challenge["type"] == "url_verification" and challenge["challenge"]
    await t.post(t.bob, t.general, "hello?")
    await asyncio.sleep(1.0)
    assert app_site.received == []
    shown = await expect(t.ada.api, "GET", t.w(f"/apps/{bot.app['id']}"), 200)
    assert shown["event_request_url_verified"] is False


async def test_a_rotated_secret_signs_from_then_on(parley: Running, app_site: Recorder) -> None:
    t, bot = await _ready(parley, app_site)
    await t.post(t.bob, t.general, "before")
    await app_site.wait_for(lambda rs: len(rs) == 1)
    rotated = await expect(t.ada.api, "POST",
                           t.w(f"/apps/{bot.app['id']}/signing-secret"), 200, json={})
    new_secret = rotated["signing_secret"]
    await t.post(t.bob, t.general, "after")
    got = await app_site.wait_for(lambda rs: len(rs) == 2)
    assert signed_by(bot.signing_secret, got[0].headers, got[0].body)
    assert signed_by(new_secret, got[1].headers, got[1].body)
    assert not signed_by(bot.signing_secret, got[1].headers, got[1].body)


async def test_apps_get_only_their_workspace_and_their_channels(parley: Running) -> None:
    rec_a, rec_b = await Recorder().start(), await Recorder().start()
    try:
        t, bot_a = await _ready(parley, rec_a, ["message.channels", "message.groups"])
        quiet = await t.channel(t.ada, "quiet", members=(t.bob,))
        secret = await t.channel(t.ada, "secret", kind="private", members=(t.bob,))
        bot_b, _ = await install(t.eve, t.other, manifest("Rival bot"), parley)
        await bot_b.call(bot_b.client.conversations_join, channel=cid("public", t.other_general))
        await point_events(t.eve, t.other, bot_b, rec_b.url, ["message.channels"],
                           bot_name="rival")
        await rec_b.wait_for(lambda _: bool(rec_b.verifications))
        await t.post(t.bob, quiet, "not for the bot")
        await t.post(t.bob, secret, "private, bot not in it")
        await expect(t.eve.api, "POST", t.c(t.other_general, "/messages", ws=t.other), 201,
                     json={"text": "workspace B"})
        await t.post(t.bob, t.general, "workspace A")
        await rec_a.wait_for(lambda rs: len(rs) >= 1)
        await rec_b.wait_for(lambda rs: len(rs) >= 1)
        await asyncio.sleep(0.5)
        assert _texts(rec_a.received) == ["workspace A"]
        assert _texts(rec_b.received) == ["workspace B"]
        assert rec_b.received[0].payload["team_id"] == bot_b.app["slack"]["team_id"]
        assert rec_a.received[0].payload["team_id"] == bot_a.app["slack"]["team_id"]
        assert signed_by(bot_b.signing_secret, rec_b.received[0].headers,
                         rec_b.received[0].body)
    finally:
        await rec_a.stop()
        await rec_b.stop()


async def test_two_dispatchers_send_each_event_once_in_channel_order(
        parley: Running, app_site: Recorder) -> None:
    t, bot = await _ready(parley, app_site)
    extra = [await t.channel(t.ada, f"room{i}", members=(t.bob,)) for i in range(2)]
    for ch in extra:
        await bot.call(bot.client.conversations_join, channel=cid("public", ch))
    second = EventDispatcher(parley.rt.services, parley.rt.services.outbound)
    task = asyncio.create_task(second.run())
    try:
        channels = [t.general, *extra]
        for i in range(8):
            for n, ch in enumerate(channels):
                await t.post(t.bob, ch, f"c{n}-{i}")
        got = await app_site.wait_for(lambda rs: len(rs) >= 24, timeout=20)
        await asyncio.sleep(0.5)
        ids = [r.payload["event_id"] for r in got]
        assert len(ids) == len(set(ids)) == 24  # no event twice
        for n in range(3):
            mine = [x for x in _texts(got) if x.startswith(f"c{n}-")]
            assert mine == [f"c{n}-{i}" for i in range(8)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_slow_app_does_not_delay_people(parley: Running, app_site: Recorder) -> None:
    app_site.sleep_s = 2.0
    app_site.script = lambda rec, got: Recorder.SLEEP
    t, _ = await _ready(parley, app_site)
    parley.rt.services.settings = dataclasses.replace(parley.rt.services.settings,
                                                      app_events_timeout_s=3.0)
    carol = await t.connect(t.carol, json_mode=True)
    try:
        await t.post(t.bob, t.general, "wake the app")
        await app_site.wait_for(lambda rs: len(rs) == 1)  # the app is now busy for 2 s
        lags = []
        for i in range(10):
            start = time.monotonic()
            await t.post(t.bob, t.general, f"to people {i}")
            while True:
                ev = await carol.recv(timeout=5)
                if ev.get("t") == "message.created" and ev["d"]["text"] == f"to people {i}":
                    break
            lags.append(time.monotonic() - start)
        assert max(lags) < 0.5, lags
        assert len(app_site.received) < 4  # the app has seen few of them yet
    finally:
        await carol.close()


async def test_reaction_added_comes_from_the_outbox_with_retries(parley: Running,
                                                                 app_site: Recorder) -> None:
    answers = iter([web.Response(status=500)])
    app_site.script = lambda rec, got: next(answers, None)
    t, bot = await _ready(parley, app_site, ["reaction_added"])
    msg = await t.post(t.bob, t.general, "ship it")
    quiet = await t.channel(t.ada, "quiet", members=(t.bob,))
    other = await t.post(t.bob, quiet, "not seen by the bot")
    await expect(t.carol.api, "PUT", t.m(t.general, msg["id"], "/reactions/rocket"), 204)
    await expect(t.bob.api, "PUT", t.m(quiet, other["id"], "/reactions/eyes"), 204)
    got = await app_site.wait_for(lambda rs: len(rs) >= 2)
    await asyncio.sleep(0.5)
    assert len(app_site.received) == 2  # the try and its retry; nothing from #quiet
    first, retry = got
    assert first.payload["event_id"] == retry.payload["event_id"]
    assert retry.headers["x-slack-retry-num"] == "1"
    assert retry.headers["x-slack-retry-reason"] == "http_error"
    ev = retry.payload["event"]
    assert ev["type"] == "reaction_added" and ev["reaction"] == "rocket"
    assert ev["user"] == "U" + cid("public", t.carol.id)[1:]
    assert ev["item_user"] == "U" + cid("public", t.bob.id)[1:]
    assert ev["item"]["channel"] == cid("public", t.general)
    assert signed_by(bot.signing_secret, retry.headers, retry.body)
    hist = await bot.call(bot.client.conversations_history, channel=cid("public", t.general))
    assert ev["item"]["ts"] in [m["ts"] for m in hist["messages"]]
