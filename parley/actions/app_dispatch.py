"""The Events API dispatcher: delivers events derived from the committed
message stream to apps' request URLs (HTTP mode, one per API process) or
to their sockets (Socket Mode, one per gateway process, for the apps with
a socket there: ``links``).  The two differ only in ``_send``.

Theory of operation: every ``app_events_poll_ms`` the dispatcher asks the
store (``AppEventStore.claim``) for (app, channel) pairs with messages
after their cursor, leased to this dispatcher.  Each claimed pair gets a
task that reads the messages after the cursor, sends their events one at a
time in seq order, and moves the cursor after each final answer (a 2xx, a
404, or ``X-Slack-No-Retry: 1``).  A failed try is retried at once, then
after each delay of ``app_events_retry_delays_s``; the pair waits
meanwhile (the next event of a channel never overtakes a retried one), and
after the last retry the event is dropped, as Slack drops it.  Events
that are not messages (``reaction_added``) are outbox rows
(``claim_outbox``), sent and retried the same way, one task each.  Apps'
request URLs are checked with ``url_verification`` before any event goes
to them.

Invariants:

* The commit path never waits for an app: the dispatcher is a background
  task reading committed rows (by default in a process of its own, at a
  lower CPU priority: server/app_events_proc.py), with at most
  ``app_events_concurrency_per_app`` pairs in flight per app and
  ``MAX_IN_FLIGHT`` in all, so a slow app delays only its own events.
* A *slow* app (its last try timed out) gets one pair in flight until it
  answers in time again (pairs it has beyond that give their slot up
  before their next try): a slow app holds a slot for the whole timeout,
  so without this 64 slow apps (at 4 slots each) would hold all 256 slots
  and every other app would wait.  Now fast apps wait for a slot only when
  more than ``MAX_IN_FLIGHT`` apps are slow at once.
* At least once: the cursor moves only after a final answer, so a crash
  (or a lost lease) resends the event, with the same ``event_id``.
* One dispatcher per pair in the normal case (the store's lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from parley.actions import app_events as wire
from parley.actions.app_health import CHECK_EVERY_S, DeliveryHealth
from parley.actions.apps import manifest_of, signing_secrets, verify_request_url
from parley.config import Settings
from parley.model import StoreUnavailable
from parley.outage import OutageLog
from parley.ports.app_events import EventClaim, OutboxEvent, UrlToVerify
from parley.ports.app_links import AppLinks
from parley.ports.outbound import OutboundError, OutboundHttp, OutboundResponse, OutboundTimeout
from parley.services import Services

log = logging.getLogger("parley.app_events")

# Pairs being delivered by one process at once: each holds at most one
# connection (an fd), for up to the timeout.  The dispatcher's process holds
# no people's sockets, so its fd budget (20,000 here) has room.
MAX_IN_FLIGHT = 1024
BATCH = 100  # messages read per pair and claim
TARGET_CACHE_MAX = 10_000  # apps whose target is kept (entries)
CLOSE_FLUSH_TIMEOUT_S = 2.0  # a stopping dispatcher's last write of its try counts
VERIFY_RETRY_S = 30.0  # a request URL that failed url_verification is tried again after this
VERIFY_BATCH = 20


class EventDispatcher:
    """One per API process (``Runtime.start_maintenance``)."""

    def __init__(self, svc: Services, http: OutboundHttp | None, *,
                 links: AppLinks | None = None,
                 clock: Callable[[], float] = time.time,
                 verify_retry_s: float = VERIFY_RETRY_S,
                 check_health: bool = True) -> None:
        """``http``: the HTTP dispatcher (an API process's), for apps with a
        request URL.  ``links``: a Socket Mode dispatcher (a gateway's), for
        the apps with a socket in ``links`` (then ``http`` is None).
        ``check_health=False``: tries are counted and flushed, but the check
        that turns failing apps off runs elsewhere (the API process's
        ``app_health.check_loop``)."""
        if (http is None) == (links is None):
            raise ValueError("a dispatcher sends over HTTP or over app sockets, not both")
        self.svc = svc
        self.http = http
        self.links = links
        self.owner = secrets.token_hex(8)  # this dispatcher's lease token
        self._clock = clock
        self._verify_retry_s = verify_retry_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_app: dict[int, int] = {}
        self._slow: set[int] = set()  # apps whose last try timed out: one slot each
        self._targets: dict[tuple[int, int], tuple[str, wire.AppTarget | None]] = {}
        self._verifying: dict[int, asyncio.Task[None]] = {}
        self._outage = OutageLog(log, "event dispatch",
                                 consequence="events to apps wait; nothing is lost")
        self.sent = 0  # requests made (events and retries), for tests and metrics
        # Counts tries and (check_health) disables failing apps.
        self.health = DeliveryHealth(svc, clock=clock,
                                     check_every_s=CHECK_EVERY_S if check_health else math.inf)

    @property
    def _settings(self) -> Settings:
        return self.svc.settings  # read each time: tests change settings on a running server

    @property
    def lease_s(self) -> float:
        # Covers the worst case between two cursor writes (a try and its
        # immediate retry, each up to the timeout), with room to spare; a
        # crashed dispatcher's pairs are taken over after this.
        return 3 * self._settings.app_events_timeout_s + 1.0

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except StoreUnavailable as exc:
                    self._outage.failure(exc)
                except Exception:  # a bug or a database error (a deadlock): next poll retries
                    log.exception("event dispatch scan failed")
                else:
                    self._outage.success()
                await asyncio.sleep(self._settings.app_events_poll_ms / 1000)
        finally:
            await self.close()

    async def close(self) -> None:
        tasks = [*self._tasks, *self._verifying.values()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        # The tries counted since the last flush (up to FLUSH_EVERY_S of
        # them), so a stop loses none; a failure here loses only them.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.health.flush(), CLOSE_FLUSH_TIMEOUT_S)

    async def tick(self) -> None:
        """One scan: verify request URLs, then claim and start due pairs."""
        await self.health.tick()  # never raises
        store = self.svc.store.app_events
        socket_apps: list[int] | None = None
        if self.links is not None:
            socket_apps = list(self.links.app_ids())
            if not socket_apps:
                return  # no app socket here: nothing this dispatcher could send
        else:
            await self._verify_urls()
        room = MAX_IN_FLIGHT - len(self._tasks)
        if room <= 0:
            return
        for claim in await store.claim(self.owner, self.lease_s, room, socket_apps):
            if self._per_app.get(claim.app_id, 0) >= self._cap(claim.app_id):
                await store.release(claim)  # the app is at its share; others go first
                continue
            self._start(claim.app_id, self._deliver(claim), claim)
        room = MAX_IN_FLIGHT - len(self._tasks)
        if room <= 0:
            return
        for ev in await store.claim_outbox(self.owner, self.lease_s, room, socket_apps):
            if self._per_app.get(ev.app_id, 0) >= self._cap(ev.app_id):
                await store.outbox_defer(ev, ev.attempts, ev.retry_reason or "",
                                         dt.datetime.now(dt.UTC))
                continue
            self._start(ev.app_id, self._deliver_outbox(ev), None)

    def _cap(self, app_id: int) -> int:
        """Pairs the app may have in flight here (see the slow-app invariant)."""
        return 1 if app_id in self._slow else self._settings.app_events_concurrency_per_app

    def _over_share(self, app_id: int) -> bool:
        return self._per_app.get(app_id, 0) > self._cap(app_id)

    async def _verify_urls(self) -> None:
        store = self.svc.store.app_events
        for item in await store.urls_to_verify(self._verify_retry_s, VERIFY_BATCH):
            if item.app_id not in self._verifying:  # one at a time per app, off the scan
                task = asyncio.create_task(self._verify(item))
                self._verifying[item.app_id] = task
                task.add_done_callback(self._verified(item.app_id))

    def _start(self, app_id: int, work: Coroutine[Any, Any, None],
               claim: EventClaim | None) -> None:
        self._per_app[app_id] = self._per_app.get(app_id, 0) + 1
        task = asyncio.create_task(self._guarded(app_id, work, claim), name=f"app-events-{app_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for the pairs in flight (tests)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    # -- one pair -------------------------------------------------------------

    async def _guarded(self, app_id: int, work: Coroutine[Any, Any, None],
                       claim: EventClaim | None) -> None:
        try:
            await work
        except StoreUnavailable as exc:
            self._outage.failure(exc, f"app {app_id}")
        except Exception:
            log.exception("delivering events to app %s", app_id)
            if claim is not None:
                with contextlib.suppress(Exception):
                    await self.svc.store.app_events.release(claim)
        finally:
            left = self._per_app.get(app_id, 1) - 1
            if left > 0:
                self._per_app[app_id] = left
            else:
                self._per_app.pop(app_id, None)

    async def _target(self, workspace_id: int, app_id: int,
                      version: str = "") -> wire.AppTarget | None:
        """Where and how to send the app's events.  Kept per app while the
        claim's ``app_version`` (the app row's version) is unchanged: a pair
        is claimed every few polls and an app has many pairs, and any change
        to the app (URL, secret, subscriptions, install) changes the
        version, so nothing stale is ever used."""
        key = (workspace_id, app_id)
        cached = self._targets.get(key)
        if version and cached is not None and cached[0] == version:
            return cached[1]
        target = await self._read_target(workspace_id, app_id)
        if version:
            if len(self._targets) >= TARGET_CACHE_MAX:
                self._targets.clear()  # crude, but bounded, and refilled in one poll
            self._targets[key] = (version, target)
        return target

    async def _read_target(self, workspace_id: int, app_id: int) -> wire.AppTarget | None:
        app = await self.svc.store.apps.app(workspace_id, app_id)
        if app is None:
            return None
        m = manifest_of(app)
        # Each dispatcher sends over its own transport only (as its claims filter).
        if app.socket_mode != (self.links is not None):
            return None
        if not app.socket_mode and m.event_request_url is None:
            return None
        return wire.AppTarget(app_id=app.id, workspace_id=app.workspace_id, bot_id=app.bot_id,
                              bot_user_id=app.bot_user_id, events=frozenset(m.bot_events),
                              url=m.event_request_url or "",
                              signing_secret=signing_secrets(self.svc, app)[0],
                              installed=app.installed)

    async def _deliver(self, claim: EventClaim) -> None:
        """The pair's events after its cursor, in order, the cursor written
        after each final answer; the pair's last write also passes the
        messages that yielded no event and ends the lease (one write where
        there were three: advance, pass, release)."""
        store = self.svc.store.app_events
        target = await self._target(claim.workspace_id, claim.app_id, claim.app_version)
        if target is None:
            await store.release(claim)
            return
        attempts, reason = _resumed(claim.attempts, claim.retry_reason, claim.taken_over)
        pending = await store.pending(claim, BATCH)
        # Past every event of the batch: messages that yielded none are passed.
        end = 2 * pending[-1].message.seq + 1 if pending else claim.delivered
        todo = [(position, event, pm) for pm in pending
                for position, event in wire.events_for(target, claim.channel_kind, pm)
                if position > claim.delivered]
        for i, (position, event, pm) in enumerate(todo):
            if self._over_share(target.app_id):
                await store.release(claim)  # the app turned slow: one pair goes on
                return
            env = wire.envelope(target, claim.channel_id, position, event,
                                int(pm.message.created_at.timestamp()))
            later = await self._try(target, env, attempts, reason)
            if later is not None:
                await store.defer(claim, *later)
                return
            if i < len(todo) - 1 and not await store.advance(claim, position, self.lease_s):
                return  # the lease was lost: its new holder resends from the cursor
            attempts, reason = 0, None
        # Every event answered (or none to send): one write passes the batch
        # and ends the lease.
        if end > claim.delivered:
            await store.advance(claim, end, self.lease_s, release=True)
        else:
            await store.release(claim)

    async def _deliver_outbox(self, ev: OutboxEvent) -> None:
        """One outbox event: sent, retried like a message event, then deleted."""
        store = self.svc.store.app_events
        target = await self._target(ev.workspace_id, ev.app_id)
        event = wire.outbox_event(ev)
        if (target is None or event is None or ev.kind not in target.events
                # After an uninstall an app gets nothing, except the events
                # that tell it so (written in the uninstall's transaction).
                or (not target.installed and ev.kind not in wire.AFTER_UNINSTALL)):
            await store.outbox_done(ev)  # the app is gone or unsubscribed: nothing to send
            return
        env = wire.envelope(target, ev.channel_id, 0, event, int(ev.created_at.timestamp()),
                            wire.outbox_event_id(ev.id))
        later = await self._try(target, env,
                                *_resumed(ev.attempts, ev.retry_reason, ev.taken_over))
        if later is not None:
            await store.outbox_defer(ev, *later)
            return
        await store.outbox_done(ev)

    async def _try(self, target: wire.AppTarget, env: dict[str, Any], attempts: int,
                   reason: str | None) -> tuple[int, str, dt.datetime] | None:
        """Send one event, retrying at once while the schedule
        (``app_events_retry_delays``) says so.  None: settled (a final
        answer, or dropped after the last retry, as Slack drops it); else
        (tries failed, the last reason, when to try again) for the caller
        to record, so the retry survives this process."""
        delays = self._settings.app_events_retry_delays
        while True:
            answer = wire.judge(await self._send(target, env, attempts, reason))
            if answer.final:
                return None
            attempts += 1
            reason = answer.reason or "http_error"
            if attempts > len(delays):
                log.warning("app %s: event %s dropped after %d retries (%s)", target.app_id,
                            env["event_id"], len(delays), reason)
                return None
            delay = delays[attempts - 1]
            if delay > 0 or self._over_share(target.app_id):
                # A retry due now, but the app turned slow and has more
                # pairs in flight than its share: this one gives its slot up.
                return attempts, reason, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)

    async def _send(self, target: wire.AppTarget, env: dict[str, Any], retry_num: int,
                    retry_reason: str | None) -> OutboundResponse | OutboundError:
        self.sent += 1
        result: OutboundResponse | OutboundError
        if self.links is not None:
            result = await self._send_socket(target, env, retry_num, retry_reason)
        else:
            result = await self._send_http(target, env, retry_num, retry_reason)
        self.health.record(target, result)
        if isinstance(result, OutboundTimeout):
            self._slow.add(target.app_id)
        elif isinstance(result, OutboundResponse):
            self._slow.discard(target.app_id)
        return result

    async def _send_http(self, target: wire.AppTarget, env: dict[str, Any], retry_num: int,
                         retry_reason: str | None) -> OutboundResponse | OutboundError:
        assert self.http is not None
        body = wire.encode(env)
        ts = int(self._clock())
        headers = wire.request_headers(target.signing_secret, ts, body, retry_num, retry_reason)
        try:
            return await self.http.post(target.url, body, headers,
                                        timeout_s=self._settings.app_events_timeout_s)
        except OutboundError as exc:
            log.info("app %s: %s", target.app_id, exc)
            return exc

    async def _send_socket(self, target: wire.AppTarget, env: dict[str, Any], retry_num: int,
                           retry_reason: str | None) -> OutboundResponse | OutboundError:
        """An ``events_api`` envelope to one of the app's sockets; its ack is
        a 2xx (Socket Mode has no other answer: no ack is a timeout)."""
        assert self.links is not None
        try:
            await self.links.request(target.app_id, "events_api", env,
                                     timeout_s=self._settings.app_events_timeout_s,
                                     retry_attempt=retry_num,
                                     retry_reason=wire.socket_retry_reason(retry_reason))
        except OutboundError as exc:
            log.info("app %s (socket): %s", target.app_id, exc)
            return exc
        return OutboundResponse(200, (), b"")

    # -- request URLs ---------------------------------------------------------

    def _verified(self, app_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._verifying.pop(app_id, None)

        return done

    async def _verify(self, item: UrlToVerify) -> None:
        """Send ``url_verification``; the URL is used only once it echoes."""
        try:
            await self._verify_one(item)
        except StoreUnavailable as exc:
            self._outage.failure(exc, f"app {item.app_id}")
        except Exception:
            log.exception("verifying the request URL of app %s", item.app_id)

    async def _verify_one(self, item: UrlToVerify) -> None:
        app = await self.svc.store.apps.app(item.workspace_id, item.app_id)
        if app is not None and manifest_of(app).event_request_url == item.url:
            await verify_request_url(self.svc, app)


def _resumed(attempts: int, reason: str | None, taken_over: bool) -> tuple[int, str | None]:
    """Where the tries of a claimed event stand.  Taken over from a
    dispatcher whose lease ran out, the event may have been sent already:
    that try counts (the resend carries ``X-Slack-Retry-Num: 1``,
    ``http_timeout``, and the next failure waits for the first delayed
    retry).  When the dead one had in fact not sent it, the app sees a
    retry header on a first delivery, which at-least-once allows."""
    if taken_over and attempts == 0:
        return 1, reason or "http_timeout"
    return attempts, reason
