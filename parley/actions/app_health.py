"""Failing apps: an app whose event deliveries mostly fail for a sustained
period has its events turned off, and its admins are told (issue 15,
Slack's rule: more than 95% of deliveries failed over 60 minutes).

Rules:

* Every try the dispatcher makes counts once (``DeliveryHealth.record``,
  called from ``EventDispatcher._send``), retries included: an app that
  times out is tried four times per event, and each try is an outage seen.
  A try *succeeds* when the app answered 2xx, or 404 (Slack's "no listener
  for this event": a final answer from a running app, not an outage).
  Anything else fails: a timeout, a refused connection, any other status,
  ``X-Slack-No-Retry: 1`` included: that header only asks for no retry, it
  does not make a 500 a delivery (a 2xx with it succeeds).  url_verification
  requests are not counted.
* Counts are kept in memory per (app, minute) and added to the store every
  ``FLUSH_EVERY_S`` (one upsert per shard), so the hot path pays a dict
  update; a crash loses at most those seconds of counts.
* Every ``CHECK_EVERY_S`` one dispatcher's tick asks the store for apps
  with at least ``app_events_disable_min_tries`` tries over the last
  ``app_events_disable_window_s`` seconds (whole minutes: the window's
  first, partial minute counts fully) of which at least ``FAILED_RATIO``
  failed, and turns each one's events off (a compare-and-set: of several
  processes, one wins and tells the admins).  While off, no event is
  claimed, queued or sent; turning them on (``enable_events``, or setting
  the request URL again: parley/actions/apps.update_app) starts the app
  with clean counts, after every message posted so far.
* The admins are told with a direct message from the app's bot to the
  app's creator and each of the workspace's owners and admins (a message is
  durable, shown in every client, and needs no new client code); the app's
  record says it too (``events_disabled_at``, ``events_disabled_reason``),
  as the REST app answers show.  A recipient the bot cannot reach (no
  longer a member) is skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Callable

from parley.actions import app_events as wire
from parley.actions import apps
from parley.actions.channels import open_dm
from parley.actions.messages import post_message
from parley.auth import Identity
from parley.errors import DomainError
from parley.model import StoreUnavailable
from parley.outage import OutageLog
from parley.ports.app_health import DeliveryCount, FailingApp
from parley.ports.apps import AppRecord
from parley.ports.outbound import OutboundError, OutboundResponse
from parley.services import Services

log = logging.getLogger("parley.app_health")

FLUSH_EVERY_S = 5.0  # counts wait in memory at most this long
CHECK_EVERY_S = 30.0  # how often a dispatcher looks for failing apps
FAILED_RATIO = 0.95  # Slack: "more than 95%" (we take 95% and over)
PRUNE_MARGIN_S = 3600.0  # counts are kept this long past the window
ADMIN_ROLES = frozenset({"owner", "admin"})
MEMBERS_PAGE = 500

# (workspace, app, minute start in unix seconds) -> [ok, failed]
_Key = tuple[int, int, int]


def succeeded(result: OutboundResponse | OutboundError) -> bool:
    """Whether a try counts as a success for the app's health (see the rules)."""
    if isinstance(result, OutboundError):
        return False
    return 200 <= result.status < 300 or result.status == 404


class DeliveryHealth:
    """One per dispatcher: counts its tries and, from its tick, flushes them
    and runs the check.  ``flush_every_s`` / ``check_every_s`` may be
    changed on a running instance (tests)."""

    def __init__(self, svc: Services, *, clock: Callable[[], float] = time.time,
                 flush_every_s: float = FLUSH_EVERY_S,
                 check_every_s: float = CHECK_EVERY_S) -> None:
        self.svc = svc
        self._clock = clock
        self.flush_every_s = flush_every_s
        self.check_every_s = check_every_s
        self._counts: dict[_Key, list[int]] = {}
        self.tries = 0  # tries counted by this instance, for tests and metrics
        now = clock()
        self._flushed = now
        self._checked = now
        self._outage = OutageLog(log, "app delivery health",
                                 consequence="failing apps are disabled later")

    def record(self, target: wire.AppTarget, result: OutboundResponse | OutboundError) -> None:
        """Count one try (no I/O)."""
        minute = int(self._clock() // 60) * 60
        cell = self._counts.setdefault((target.workspace_id, target.app_id, minute), [0, 0])
        cell[0 if succeeded(result) else 1] += 1
        self.tries += 1

    async def tick(self) -> None:
        """Flush and check when due.  Never raises: a failure is logged and
        the next tick tries again, so delivery never waits on this."""
        now = self._clock()
        try:
            if now - self._flushed >= self.flush_every_s:
                self._flushed = now
                await self.flush()
            if now - self._checked >= self.check_every_s:
                self._checked = now
                await self.check()
        except StoreUnavailable as exc:
            self._outage.failure(exc)
        except Exception:
            log.exception("app delivery health check failed")
        else:
            self._outage.success()

    async def flush(self) -> None:
        """Add the counts so far to the store (kept for the next flush when
        that fails)."""
        counts, self._counts = self._counts, {}
        if not counts:
            return
        rows = [DeliveryCount(workspace_id=ws, app_id=app, minute=dt.datetime.fromtimestamp(
            minute, dt.UTC), ok=c[0], failed=c[1]) for (ws, app, minute), c in counts.items()]
        try:
            await self.svc.store.app_health.add_counts(rows)
        except BaseException:
            for key, c in counts.items():  # merge back: nothing counted is lost
                cell = self._counts.setdefault(key, [0, 0])
                cell[0] += c[0]
                cell[1] += c[1]
            raise

    async def check(self) -> list[AppRecord]:
        """Disable the failing apps; the apps this call disabled."""
        s = self.svc.settings
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        window = dt.timedelta(seconds=s.app_events_disable_window_s)
        store = self.svc.store.app_health
        out: list[AppRecord] = []
        for f in await store.failing_apps(now - window, s.app_events_disable_min_tries,
                                          FAILED_RATIO):
            app = await store.disable_events(f.workspace_id, f.app_id, _reason(f, window))
            if app is not None:  # this process won: it tells the admins
                log.warning("app %s: events disabled: %s", app.id, app.events_disabled_reason)
                await tell_admins(self.svc, app)
                out.append(app)
        await store.prune(now - window - dt.timedelta(seconds=PRUNE_MARGIN_S))
        return out


async def check_loop(svc: Services, every_s: float | None = None) -> None:
    """The failing-app check alone, every ``every_s`` (default
    ``CHECK_EVERY_S``): for an API process whose dispatcher runs elsewhere
    (the tries are counted there and reach this check through the store)."""
    every_s = CHECK_EVERY_S if every_s is None else every_s
    health = DeliveryHealth(svc, check_every_s=every_s)
    while True:
        await asyncio.sleep(every_s)
        await health.tick()  # never raises


def _reason(f: FailingApp, window: dt.timedelta) -> str:
    tries = f.ok + f.failed
    minutes = max(1, round(window.total_seconds() / 60))
    return (f"{f.failed} of {tries} event deliveries to the request URL failed "
            f"in the last {minutes} minute{'' if minutes == 1 else 's'}")


async def _admins(svc: Services, app: AppRecord) -> list[int]:
    """The app's creator, then the workspace's owners and admins (people)."""
    out = [app.created_by]
    after = 0
    while True:
        page = await svc.store.members.members_page(app.workspace_id, after, MEMBERS_PAGE)
        out += [m.user_id for m in page
                if m.role in ADMIN_ROLES and not m.is_bot and m.user_id not in out]
        if len(page) < MEMBERS_PAGE:
            return out
        after = page[-1].user_id


def notice(app: AppRecord) -> str:
    """The direct message the admins get."""
    return (f"Events to the app *{app.name}* are turned off: "
            f"{app.events_disabled_reason}.  Nothing is sent to it until an admin turns them "
            "on again: fix the app's endpoint, then set its request URL again or call "
            f"POST /v1/workspaces/{app.workspace_id}/apps/{app.id}/events/enable.")


async def tell_admins(svc: Services, app: AppRecord) -> int:
    """A DM from the app's bot to each admin; how many were sent."""
    bot = Identity(user_id=app.bot_user_id, session_id=0, expires_at=math.inf, app_id=app.id,
                   bot_id=app.bot_id)
    text = notice(app)
    sent = 0
    for user_id in await _admins(svc, app):
        try:
            dm, _ = await open_dm(svc, bot, app.workspace_id, [user_id])
            await post_message(svc, bot, app.workspace_id, dm.id, text)
        except DomainError as exc:  # not a member any more, or the bot is gone
            log.info("app %s: could not tell user %s: %s", app.id, user_id, exc)
            continue
        sent += 1
    return sent


async def enable_events(svc: Services, ident: Identity, workspace_id: int,
                        app_id: int) -> AppRecord:
    """Turn the app's events on again (admins; idempotent: an app whose
    events are on is answered as it is).  Events of the time they were off
    are not sent."""
    app = await apps.get_app(svc, ident, workspace_id, app_id)  # manage apps, 404
    if app.events_disabled_at is None:
        return app
    enabled = await svc.store.app_health.enable_events(workspace_id, app_id)
    if enabled is None:  # turned on meanwhile, or deleted
        return await apps.get_app(svc, ident, workspace_id, app_id)
    log.info("app %s: events enabled again by user %s", app_id, ident.user_id)
    return enabled
