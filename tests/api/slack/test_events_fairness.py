"""A slow app never delays the events of other apps: an app whose last
try timed out gets one (app, channel) pair in flight until it answers in
time (parley/actions/app_dispatch.py, the slow-app invariant), so slow
apps cannot take every slot of a dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from parley.actions import app_dispatch
from server.runner import Running
from tests.api.slack.events_helpers import Received, Recorder, fast_events, point_events
from tests.api.slack.helpers import cid, install, manifest, team_with_bot

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def sites() -> AsyncIterator[tuple[Recorder, Recorder]]:
    slow, fast = await Recorder().start(), await Recorder().start()
    try:
        yield slow, fast
    finally:
        await slow.stop()
        await fast.stop()


async def test_a_slow_app_keeps_one_slot_and_fast_apps_are_not_held_up(
        parley: Running, sites: tuple[Recorder, Recorder],
        monkeypatch: pytest.MonkeyPatch) -> None:
    slow_site, fast_site = sites
    slow_site.script = lambda rec, got: Recorder.SLEEP  # every request outlasts the timeout
    slow_site.sleep_s = 2.0
    # Two slots in all, two per app: without the rule the slow app's two
    # channels would hold both slots for every timeout and its retries.
    monkeypatch.setattr(app_dispatch, "MAX_IN_FLIGHT", 2)
    t, slow_bot = await team_with_bot(parley)
    fast_bot, _ = await install(t.ada, t.ws, manifest("Fast"), parley)
    fast_events(parley, app_events_concurrency_per_app=2)
    dispatcher = parley.rt.dispatcher
    assert dispatcher is not None
    rooms = [t.general, await t.channel(t.ada, "second", members=(t.bob,))]
    for room in rooms:
        await slow_bot.call(slow_bot.client.conversations_join, channel=cid("public", room))
    await point_events(t.ada, t.ws, slow_bot, slow_site.url, ["message.channels"])
    for room in rooms:
        await t.post(t.bob, room, f"to the slow app in {room}")
    await slow_site.wait_for(lambda rs: len(rs) >= 1)
    app_id = int(slow_bot.app["id"])
    async with asyncio.timeout(10):  # its first try times out (0.5 s)
        while dispatcher._cap(app_id) != 1:  # noqa: ASYNC110 (the dispatcher signals nothing)
            await asyncio.sleep(0.05)
        # Its other pair gives its slot up before its next try.
        while dispatcher._per_app.get(app_id, 0) > 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    # From now on the slow app holds at most one slot: a fast app's event
    # goes out while the slow app's requests hang.
    third = await t.channel(t.ada, "third", members=(t.bob,))
    await fast_bot.call(fast_bot.client.conversations_join, channel=cid("public", third))
    await point_events(t.ada, t.ws, fast_bot, fast_site.url, ["message.channels"])
    in_flight: list[int] = []

    async def watch() -> None:
        while True:
            in_flight.append(dispatcher._per_app.get(app_id, 0))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        await t.post(t.bob, third, "to the fast app")
        got: list[Received] = await fast_site.wait_for(lambda rs: len(rs) >= 1, timeout=1.5)
    finally:
        watcher.cancel()
    assert got[0].payload["event"]["text"] == "to the fast app"
    assert max(in_flight) <= 1
    # Answering in time again gives the app its share back.
    slow_site.script = None
    async with asyncio.timeout(15):
        while dispatcher._cap(app_id) != 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await t.close()
