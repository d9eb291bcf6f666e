"""Presence and typing for one gateway process: the pieces of
``gateway/presence.py`` wired to the store, the hub and a timer.

Three parts, each with one job (see ``gateway/presence.py`` for the rules
and the theory of operation):

* ``PresenceSync``: this gateway's own users.  ``LocalPresence`` (sans-IO)
  says what changed; ``tick`` writes it to the store in one ``sync``, renews
  the lease, reaps dead gateways, and hands what changed to the watch.
* ``PresenceWatch`` (``gateway/presence_watch.py``): others' presence for
  the local connections that subscribed to it.
* ``TypingRelay``: throttled, size-gated ``typing`` events on channel topics.

``PresenceService`` is the gateway's one handle on them: connection hooks,
the heartbeat fast path, the presence commands, and the timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.presence import (
    ERR_SUBSCRIPTION_LIMIT,
    ERR_UNAVAILABLE,
    OP_SET,
    OP_SUBSCRIBE,
    OP_UNSUBSCRIBE,
    OPS,
    TYPING,
    Batch,
    ChannelSize,
    LocalPresence,
    PresenceOptions,
    PresenceSession,
    PresenceStats,
    TypingGate,
    Visible,
    presence_data,
)
from gateway.presence_watch import PresenceWatch
from gateway.protocol import ERR_CHANNEL_NOT_FOUND, OP_TYPING
from gateway.protocol import codec as codecs
from parley import events
from parley.ports.hub import Hub
from parley.ports.presence import PresenceStore

log = logging.getLogger("parley.gateway.presence")

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class PresenceSync:
    """This gateway's users in the store: changes, lease renewals, reaping."""

    def __init__(self, store: PresenceStore, watch: PresenceWatch, options: PresenceOptions,
                 stats: PresenceStats) -> None:
        self.store = store
        self.watch = watch
        self.options = options
        self.stats = stats
        self.local = LocalPresence(options.idle_after_s, options.idle_check_s,
                                   options.offline_grace_s)
        self._next_renew = 0.0
        self._next_reap = 0.0
        self._resync = False  # the lease lapsed: send every local user at the next sync

    async def tick(self, now: float) -> None:
        """Write and publish changes; renew the lease and reap dead gateways when due."""
        batch = self.local.due(now)
        if self._resync:
            batch.upserts.update(self.local.everything())
        if batch or now >= self._next_renew:
            await self._sync(batch, now)
        if now >= self._next_reap:
            self._next_reap = now + self.options.reap_interval_s
            try:
                reaped = await self.store.reap()
            except ConnectionError:
                log.warning("presence reap failed", exc_info=True)
            else:
                await self.watch.publish(reaped)

    async def _sync(self, batch: Batch, now: float) -> None:
        ttl = self.options.ttl_s
        try:
            result = await self.store.sync(batch.upserts, batch.removals, ttl)
            changed = result.changed
            self.stats.syncs += 1
            if result.lapsed:
                # Stalled past the TTL: we may have been reaped; send everyone.
                self.stats.lapses += 1
                log.warning("presence lease lapsed; re-sending %d users", len(self.local.users))
                self._resync = True
                everything = self.local.everything()
                again = await self.store.sync(everything, (), ttl)
                changed = {**changed, **again.changed}
                self.stats.syncs += 1
            self._resync = False
        except ConnectionError:
            self.stats.sync_failures += 1
            log.warning("presence sync failed; will retry", exc_info=True)
            self.local.failed(batch)
            return
        self._next_renew = now + self.options.lease_renew_s
        await self.watch.publish(changed)


class TypingRelay:
    """``typing`` commands to unsequenced events on the channel's topic."""

    def __init__(self, watch: PresenceWatch, channel_size: ChannelSize,
                 options: PresenceOptions, stats: PresenceStats, spawn: Spawn) -> None:
        self.watch = watch
        self.options = options
        self.stats = stats
        self.gate = TypingGate(options.typing_throttle_s)
        self._channel_size = channel_size
        self._spawn = spawn
        self._sizes: dict[int, tuple[int, float]] = {}  # channel -> (members, fetched at)
        self._size_fetches: dict[int, asyncio.Future[int]] = {}
        self._next_prune = 0.0

    def typing(self, session: PresenceSession, ref: Any, cid: int, now: float,
               alive: Callable[[PresenceSession], bool]) -> None:
        if not self.gate.allow(session.user_id, cid, now):
            self.stats.typing_throttled += 1
            self._reply(session, ref, "throttled")
            return
        cached = self._sizes.get(cid)
        if cached is not None and now - cached[1] < self.options.channel_size_cache_s:
            self._send(session, ref, cid, cached[0])
        else:
            self._spawn(self._after_size(session, ref, cid, now, alive))

    async def _after_size(self, session: PresenceSession, ref: Any, cid: int, now: float,
                          alive: Callable[[PresenceSession], bool]) -> None:
        # One lookup per channel at a time, however many members start typing.
        fetch = self._size_fetches.get(cid)
        if fetch is None:
            fetch = asyncio.ensure_future(self._channel_size(session.workspace_id, cid))
            self._size_fetches[cid] = fetch
            fetch.add_done_callback(lambda _: self._size_fetches.pop(cid, None))
        try:
            members = await asyncio.shield(fetch)
        except Exception:
            log.warning("channel size of %s unavailable; typing dropped", cid, exc_info=True)
            self._reply(session, ref, "unavailable")
            return
        self._sizes[cid] = (members, now)
        if alive(session):
            self._send(session, ref, cid, members)

    def _send(self, session: PresenceSession, ref: Any, cid: int, members: int) -> None:
        if members > self.options.typing_max_members:
            self.stats.typing_suppressed += 1
            self._reply(session, ref, "channel_too_large")
            return
        payload = events.publication(events.encode(
            TYPING, {"channel_id": cid, "user_id": session.user_id,
                     "expires_in_ms": self.options.typing_expires_ms}))
        self.stats.typing_sent += 1
        self._spawn(self.watch.hub_publish([(events.channel_topic(cid), payload)]))
        self._reply(session, ref, None)

    @staticmethod
    def _reply(session: PresenceSession, ref: Any, dropped: str | None) -> None:
        # Typing is fire-and-forget: only a command with a ref gets an ack.
        if ref is not None:
            session.reply(ref, {"sent": dropped is None} if dropped is None
                          else {"sent": False, "reason": dropped})

    def prune(self, now: float) -> None:
        """Forget throttle entries and channel sizes older than their horizon."""
        if now >= self._next_prune:
            self._next_prune = now + self.options.channel_size_cache_s
            self.gate.prune(now)
            horizon = now - self.options.channel_size_cache_s
            for cid in [c for c, (_, at) in self._sizes.items() if at <= horizon]:
                del self._sizes[cid]
        elif len(self.gate) > 10_000:
            self.gate.prune(now)


class PresenceService:
    """Presence and typing for one gateway process.

    ``PresenceService(store, hub, channel_size, *, visible=None, options=None,
    clock=time.monotonic)``

    * ``store``: this process's ``PresenceStore`` (one node); the service
      does not close it (the composition root does).
    * ``hub``: the gateway's started hub; the service subscribes ``p:<uid>``
      topics and publishes on them and on ``c:<channel id>`` (typing).  The
      hub handler (the router) must pass ``p:`` topics to ``watch`` (a
      ``HubHandler``).
    * ``channel_size(workspace_id, channel_id)``: member count, cached for
      ``channel_size_cache_s``.
    * ``visible(workspace_id, user_ids)``: the ids a member of the workspace
      may watch; None allows every id.

    Gateway hooks, all called on the event loop: ``on_open``/``on_close``
    per connection, ``on_heartbeat`` per heartbeat (and per user-initiated
    command), ``handle`` for commands (True when the op was a presence op).
    """

    def __init__(self, store: PresenceStore, hub: Hub, channel_size: ChannelSize, *,
                 visible: Visible | None = None, options: PresenceOptions | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = opts = options or PresenceOptions()
        self.store = store
        self.hub = hub
        self.stats = PresenceStats()
        self._clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()
        self.watch = PresenceWatch(store, hub, self.stats, cap=opts.max_subscriptions,
                                   visible=visible, spawn=self._spawn)
        self.sync = PresenceSync(store, self.watch, opts, self.stats)
        self.relay = TypingRelay(self.watch, channel_size, opts, self.stats, self._spawn)
        self.local = self.sync.local
        self.typing = self.relay.gate
        self._users_by_conn = self.local._conns  # the same dict (never rebound): on_heartbeat
        self._open: set[PresenceSession] = set()
        self._tick_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease now and run ``tick`` every ``change_flush_s``."""
        await self.tick()
        self._loop_task = asyncio.create_task(self._run(), name="presence-tick")

    async def close(self) -> None:
        """Stop the timer and tasks.  The lease is left to expire (no flap on restart)."""
        self.watch.closed = True
        for task in [self._loop_task, *self._tasks]:
            if task is not None:
                task.cancel()
        self._loop_task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.options.change_flush_s)
            try:
                await self.tick()
            except Exception:
                log.exception("presence tick failed")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def tick(self, now: float | None = None) -> None:
        """One round of background work at ``now`` (see ``PresenceSync.tick``).
        The timer calls it every ``change_flush_s``; tests call it directly."""
        async with self._tick_lock:
            now = self._clock() if now is None else now
            await self.sync.tick(now)
            self.relay.prune(now)

    # -- connection hooks ------------------------------------------------------

    def on_open(self, session: PresenceSession, now: float | None = None) -> None:
        """A connection authenticated (call before ``hello``)."""
        if session in self._open:
            return
        self._open.add(session)
        self.watch.open(session)
        self.local.open(session, session.user_id, self._clock() if now is None else now)

    def on_close(self, session: PresenceSession, now: float | None = None) -> None:
        if session not in self._open:
            return
        self._open.discard(session)
        self.local.close(session, self._clock() if now is None else now)
        self.watch.close(session)

    def on_heartbeat(self, session: PresenceSession, now: float, active: bool = True) -> None:
        """A heartbeat (``active``: the user did something since the last one).

        Local memory only: O(1), allocation-free unless the user was idle.
        """
        if active:  # local.activity, inlined but for the rare IDLE -> ACTIVE change
            user = self._users_by_conn.get(session)
            if user is not None:
                if user.idle:
                    self.local.activity(session, now)
                else:
                    user.last_active = now

    # -- commands --------------------------------------------------------------

    def handle(self, session: PresenceSession, op: str, ref: Any, data: dict[str, Any],
               now: float | None = None) -> bool:
        """Run a presence command; False if ``op`` is not one (the caller goes on)."""
        if op not in OPS:
            return False
        if session not in self._open:
            return True  # closing
        now = self._clock() if now is None else now
        try:
            if op == OP_TYPING:
                cid = codecs.as_id(data.get("channel_id"), "channel_id")
                if cid not in session.channels:
                    session.error(ref, ERR_CHANNEL_NOT_FOUND, "no such channel")
                    return True
                self.local.activity(session, now)
                self.relay.typing(session, ref, cid, now, self._open.__contains__)
            elif op == OP_SUBSCRIBE:
                raw = data.get("user_ids")
                cap = self.options.max_subscriptions
                if isinstance(raw, list) and len(raw) > cap:
                    session.error(ref, ERR_SUBSCRIPTION_LIMIT,
                                  f"at most {cap} users per connection", limit=cap,
                                  subscribed=self.watch.subscribed(session))
                    return True
                self._spawn(self.watch.subscribe(session, ref, self._ids(data)))
            elif op == OP_UNSUBSCRIBE:
                self.watch.unsubscribe(session, ref,
                                       None if data.get("all") is True else self._ids(data))
            else:
                assert op == OP_SET
                away, dnd = self._settings(data)
                self.local.activity(session, now)
                self._spawn(self._set(session, ref, away, dnd))
        except codecs.BadEnvelope as exc:
            session.error(ref, exc.code, exc.message)
        return True

    def _ids(self, data: dict[str, Any]) -> list[int]:
        raw = data.get("user_ids")
        if not isinstance(raw, list) or not raw or len(raw) > self.options.max_subscriptions:
            raise codecs.BadEnvelope(
                "invalid_field",
                f"'user_ids' is a list of 1..{self.options.max_subscriptions} ids")
        return list(dict.fromkeys(codecs.as_id(v, "user_ids") for v in raw))

    @staticmethod
    def _settings(data: dict[str, Any]) -> tuple[bool | None, bool | None]:
        status = data.get("status")
        dnd = data.get("dnd")
        if status not in (None, "away", "auto"):
            raise codecs.BadEnvelope("invalid_field", "'status' is \"away\" or \"auto\"")
        if dnd is not None and not isinstance(dnd, bool):
            raise codecs.BadEnvelope("invalid_field", "'dnd' is a boolean")
        if status is None and dnd is None:
            raise codecs.BadEnvelope("invalid_field", "set 'status', 'dnd' or both")
        return (None if status is None else status == "away"), dnd

    async def _set(self, session: PresenceSession, ref: Any, away: bool | None,
                   dnd: bool | None) -> None:
        try:
            p = await self.store.set_settings(session.user_id, away=away, dnd=dnd)
        except ConnectionError:
            session.error(ref, ERR_UNAVAILABLE, "presence is unavailable; retry", retryable=True)
            return
        await self.watch.publish({session.user_id: p})
        session.reply(ref, presence_data(session.user_id, p))

    # -- introspection (metrics, tests) ----------------------------------------

    def subscriptions(self, session: PresenceSession) -> frozenset[int]:
        return self.watch.subscriptions(session)

    @property
    def watched_users(self) -> int:
        return self.watch.watched_users

    def on_hub_message(self, topic: str, payload: bytes) -> None:
        """A payload on a ``p:<user id>`` topic (as the router hands it to ``watch``)."""
        self.watch.on_message(topic, payload)

    def on_hub_reset(self) -> None:
        """The hub may have lost changes (as the router tells ``watch``)."""
        self.watch.on_reset()
