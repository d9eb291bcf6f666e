"""Failing apps (parley/actions/app_health.py) against scripted loopback
apps: an app failing (nearly) every delivery is disabled, stops getting
events, its admins get a DM from its bot and its record says so; an admin
turns events on again (REST route, or setting the request URL); what
counts as a failure (404 does not, X-Slack-No-Retry with a 500 does); an
app failing 90% stays on."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from parley.actions.app_health import DeliveryHealth
from server.runner import Running
from tests.api.helpers import Team, User, expect
from tests.api.slack.events_helpers import Received, Recorder, fast_events, point_events
from tests.api.slack.helpers import Bot, cid, team_with_bot


def _health(parley: Running) -> DeliveryHealth:
    assert parley.rt.dispatcher is not None
    return parley.rt.dispatcher.health


async def _ready(parley: Running, rec: Recorder, min_tries: int) -> tuple[Team, Bot]:
    """A team, a bot in #general whose events go to ``rec``, a small
    threshold, and counts flushed and checked at every dispatcher tick."""
    t, bot = await team_with_bot(parley)
    fast_events(parley, app_events_disable_min_tries=min_tries,
                app_events_disable_window_s=60.0)
    health = _health(parley)
    health.flush_every_s = health.check_every_s = 0.0
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    shown = await point_events(t.ada, t.ws, bot, rec.url, ["message.channels"])
    assert shown["event_request_url_verified"] is True
    return t, bot


async def _app(t: Team, bot: Bot) -> dict[str, Any]:
    app: dict[str, Any] = await expect(t.ada.api, "GET", t.w(f"/apps/{bot.app['id']}"), 200)
    return app


async def _until_disabled(t: Team, bot: Bot, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            app = await _app(t, bot)
            if app["events_disabled_ts"] is not None:
                return app
            await asyncio.sleep(0.1)


async def _dm_texts(t: Team, user: User, bot: Bot, want: int = 0) -> list[str]:
    """What the bot wrote to ``user`` in their DM (waiting for ``want``
    messages: the DMs are written just after the app is disabled)."""
    async with asyncio.timeout(10):
        while True:
            texts = await _dm_texts_now(t, user, bot)
            if len(texts) >= want:
                return texts
            await asyncio.sleep(0.1)


async def _dm_texts_now(t: Team, user: User, bot: Bot) -> list[str]:
    listed = await expect(user.api, "GET", t.w("/channels"), 200)
    out: list[str] = []
    for ch in listed["channels"]:
        if ch["kind"] == "dm":
            page = await expect(user.api, "GET", t.c(ch["id"], "/messages"), 200)
            out += [m["text"] for m in page["messages"]
                    if m["user_id"] == bot.app["bot_user_id"]]
    return out


async def _settled_check(parley: Running, tries: int) -> list[Any]:
    """Once the dispatcher counted ``tries`` tries in all (the last answers
    reach it after the app saw the request), flush and check now."""
    health = _health(parley)
    async with asyncio.timeout(10):
        while True:  # polled: the dispatcher signals nothing
            if health.tries >= tries:
                break
            await asyncio.sleep(0.05)
    assert health.tries == tries
    await health.flush()
    return await health.check()


def _texts(rs: list[Received]) -> list[str]:
    return [r.payload["event"]["text"] for r in rs]


async def test_an_always_failing_app_is_disabled_told_and_enabled_again(
        parley: Running, app_site: Recorder) -> None:
    failing = True
    app_site.script = lambda rec, got: web.Response(status=500) if failing else None
    t, bot = await _ready(parley, app_site, min_tries=8)
    await t.post(t.bob, t.general, "one")
    await t.post(t.bob, t.general, "two")  # 2 events x (a try and 3 retries) = 8 failed tries
    app = await _until_disabled(t, bot)
    assert "8 of 8 event deliveries" in app["events_disabled_reason"]
    # The creator (ada, the owner) and the admin (ann) are told, once; members are not.
    for admin in (t.ada, t.ann):
        texts = await _dm_texts(t, admin, bot, want=1)
        assert len(texts) == 1 and "are turned off" in texts[0]
        assert f"/apps/{bot.app['id']}/events/enable" in texts[0]
    assert await _dm_texts(t, t.bob, bot) == []
    listed = await expect(t.ada.api, "GET", t.w("/apps"), 200)
    assert listed["apps"][0]["events_disabled_ts"] == app["events_disabled_ts"]

    seen = len(app_site.received)
    await t.post(t.bob, t.general, "while off")
    await asyncio.sleep(0.6)  # three dispatcher polls
    assert len(app_site.received) == seen  # nothing is sent while disabled

    await expect(t.bob.api, "POST", t.w(f"/apps/{bot.app['id']}/events/enable"), 403,
                 "permission_denied")
    await expect(t.ann.api, "POST", t.w("/apps/1/events/enable"), 404, "app_not_found")
    failing = False
    on = await expect(t.ann.api, "POST", t.w(f"/apps/{bot.app['id']}/events/enable"), 200)
    assert on["events_disabled_ts"] is None and on["events_disabled_reason"] is None
    again = await expect(t.ann.api, "POST", t.w(f"/apps/{bot.app['id']}/events/enable"), 200)
    assert again["events_disabled_ts"] is None  # idempotent
    await t.post(t.bob, t.general, "back")
    got = await app_site.wait_for(lambda rs: "back" in _texts(rs))
    # What was posted while events were off is not sent (as in Slack).
    assert "while off" not in _texts(got)
    assert await _settled_check(parley, 9) == []  # a clean record after enabling


async def test_no_retry_500s_count_as_failed_and_404s_as_answered(
        parley: Running, app_site: Recorder) -> None:
    status = 500
    app_site.script = lambda rec, got: web.Response(
        status=status, headers={"X-Slack-No-Retry": "1"} if status == 500 else {})
    t, bot = await _ready(parley, app_site, min_tries=4)
    for i in range(4):  # final answers (no retries), but failures: 4 of 4
        await t.post(t.bob, t.general, f"broken {i}")
    app = await _until_disabled(t, bot)
    assert app["events_disabled_reason"] == (
        "4 of 4 event deliveries to the request URL failed in the last 1 minute")

    status = 404  # Slack's "no listener for this event": the app is up
    await expect(t.ada.api, "POST", t.w(f"/apps/{bot.app['id']}/events/enable"), 200)
    for i in range(6):
        await t.post(t.bob, t.general, f"nobody listens {i}")
    await app_site.wait_for(lambda rs: len(rs) == 10)
    assert await _settled_check(parley, 10) == []
    assert (await _app(t, bot))["events_disabled_ts"] is None


async def test_an_app_failing_90_percent_stays_on_and_a_new_request_url_enables(
        parley: Running, app_site: Recorder) -> None:
    def script(rec: Recorder, got: Received) -> web.Response | None:
        if got.payload["event"]["text"].startswith("bad"):
            return web.Response(status=503, headers={"X-Slack-No-Retry": "1"})
        return None

    app_site.script = script
    t, bot = await _ready(parley, app_site, min_tries=10)
    for i in range(9):
        await t.post(t.bob, t.general, f"bad {i}")
    await t.post(t.bob, t.general, "good")
    await app_site.wait_for(lambda rs: len(rs) == 10)
    assert await _settled_check(parley, 10) == []  # 9 of 10 failed: under 95%
    assert (await _app(t, bot))["events_disabled_ts"] is None

    for i in range(9, 18):  # 18 of 19: still under
        await t.post(t.bob, t.general, f"bad {i}")
    await app_site.wait_for(lambda rs: len(rs) == 19)
    assert await _settled_check(parley, 19) == []
    await t.post(t.bob, t.general, "bad 18")  # 19 of 20: 95%
    await _until_disabled(t, bot)

    app_site.script = None
    shown = await point_events(t.ada, t.ws, bot, app_site.url, ["message.channels"])
    assert shown["events_disabled_ts"] is None  # setting the request URL turns them on
    await t.post(t.bob, t.general, "fixed")
    await app_site.wait_for(lambda rs: "fixed" in _texts(rs))


async def test_a_stopping_dispatcher_writes_its_last_counts(parley: Running,
                                                           app_site: Recorder) -> None:
    """Counts wait in memory up to FLUSH_EVERY_S; closing the dispatcher
    (a stop, a child's SIGTERM) writes them, so the check sees every try."""
    import datetime as dt

    app_site.script = lambda rec, got: web.Response(status=500)
    t, bot = await _ready(parley, app_site, min_tries=4)
    health = _health(parley)
    health.flush_every_s = health.check_every_s = 3600.0  # nothing flushed by the ticks
    await t.post(t.bob, t.general, "fails four times")
    async with asyncio.timeout(10):
        while health.tries < 4:  # noqa: ASYNC110 (the dispatcher signals nothing)
            await asyncio.sleep(0.05)
    store = parley.rt.services.store.app_health
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    assert await store.failing_apps(since, 4, 0.95) == []  # still in memory
    assert parley.rt.dispatcher is not None
    await parley.rt.dispatcher.close()
    [failing] = await store.failing_apps(since, 4, 0.95)
    assert failing.app_id == int(bot.app["id"]) and failing.failed == 4
    await t.close()
