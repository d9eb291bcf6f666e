"""``AppHealthStore``'s contract (parley/ports/app_health.py) on real
PostgreSQL (``PgAppHealth``): counts add up, the threshold and the window,
disabling is a compare-and-set that the event claims obey, enabling
starts the app clean and after what was posted meanwhile, pruning."""

from __future__ import annotations

import datetime as dt

from parley.ports.app_health import DeliveryCount, FailingApp
from server.composition import Runtime
from tests.storage.test_app_events_store import _installed, _post
from tests.storage.test_apps_store import _workspace


def _minute(ago_min: int = 0) -> dt.datetime:
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    return now - dt.timedelta(minutes=ago_min)


async def test_counts_add_up_and_the_threshold_and_window_hold(runtime: Runtime) -> None:
    store = runtime.db.app_health
    ws, _, _ = await _workspace(runtime)
    app = await _installed(runtime, ws)
    gone = await _installed(runtime, ws)
    await runtime.db.installs.uninstall(ws.id, gone.id)
    hour_ago = _minute(60)
    for _ in range(2):  # two dispatchers' counts of the same minute
        await store.add_counts([DeliveryCount(ws.id, app.id, _minute(), 1, 10),
                                DeliveryCount(ws.id, gone.id, _minute(), 0, 50)])
    assert await store.failing_apps(hour_ago, 10, 0.95) == []  # 20 of 22: 91%
    await store.add_counts([DeliveryCount(ws.id, app.id, _minute(1), 0, 30)])
    assert await store.failing_apps(hour_ago, 10, 0.95) == [
        FailingApp(ws.id, app.id, ok=2, failed=50)]  # 96%; the uninstalled app is not listed
    assert await store.failing_apps(hour_ago, 53, 0.95) == []  # too few tries
    assert await store.failing_apps(_minute(1), 10, 0.95) == []  # only minutes after `since`
    await store.prune(_minute())
    assert await store.failing_apps(hour_ago, 1, 0.0) == [FailingApp(ws.id, app.id, 2, 20)]


async def test_disabled_apps_are_skipped_and_enabling_starts_after_the_gap(
        runtime: Runtime) -> None:
    db, store = runtime.db, runtime.db.app_health
    ws, owner, general = await _workspace(runtime)
    app = await _installed(runtime, ws, events=["message.channels", "reaction_added"])
    await db.roster.add_channel_members(ws.id, general, [app.bot_user_id])
    await _post(runtime, ws, general, owner.id, "before")
    (claim,) = await db.app_events.claim("a", 10, 10)
    mid = (await db.app_events.pending(claim, 1))[0].message.id
    await db.app_events.release(claim)
    await db.reactions.add_reaction(ws.id, general, mid, owner.id, "tada", 50)  # an outbox row
    await store.add_counts([DeliveryCount(ws.id, app.id, _minute(), 0, 9)])

    off = await store.disable_events(ws.id, app.id, "9 of 9 failed")
    assert off is not None and off.events_disabled_at is not None
    assert off.events_disabled_reason == "9 of 9 failed"
    assert await store.disable_events(ws.id, app.id, "again") is None  # one process wins
    shown = await db.apps.app(ws.id, app.id)
    assert shown is not None and shown.events_disabled_reason == "9 of 9 failed"
    assert await store.failing_apps(_minute(60), 1, 0.5) == []  # already off
    await _post(runtime, ws, general, owner.id, "while off")
    assert await db.app_events.claim("a", 10, 10) == []
    assert await db.app_events.claim_outbox("a", 10, 10) == []  # waits while off
    await db.reactions.add_reaction(ws.id, general, mid, owner.id, "eyes", 50)  # no row

    on = await store.enable_events(ws.id, app.id)
    assert on is not None and on.events_disabled_at is None and on.events_disabled_reason is None
    assert await store.enable_events(ws.id, app.id) is None  # on already: nothing changed
    assert await store.failing_apps(_minute(60), 1, 0.0) == []  # its counts were cleared
    assert await db.app_events.claim("a", 10, 10) == []  # "while off" is never sent
    assert await db.app_events.claim_outbox("a", 10, 10) == []  # the queued row was dropped
    seq = await _post(runtime, ws, general, owner.id, "after")
    (claim,) = await db.app_events.claim("a", 10, 10)
    assert claim.delivered == 2 * seq - 1
    assert [p.message.text for p in await db.app_events.pending(claim, 10)] == ["after"]
