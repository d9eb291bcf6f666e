"""Others' presence, for the local connections that subscribed to it.

Rules for this file:

* A connection sees the presence of the users it subscribed to (at most
  ``max_subscriptions``) and nothing else; this gateway holds the hub topic
  ``p:<user id>`` of a user while at least one local connection watches them
  (or a subscribe that will add one is in flight).
* Subscribe first, then read: a change published after the store read
  arrives on the topic, so no change between the two is missed.
* Snapshots carry a version; an older one never replaces a newer one,
  except after a hub reset (a restarted Redis starts versions again).
* Hub delivery is at most once: what it loses is re-read on ``on_reset``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgpack

from gateway.presence import (
    ERR_SUBSCRIPTION_LIMIT,
    ERR_UNAVAILABLE,
    PRESENCE_CHANGED,
    PresenceSession,
    PresenceStats,
    Visible,
    decode_presence,
    encode_presence,
    presence_data,
    presence_topic,
)
from gateway.protocol import ERR_USER_NOT_FOUND
from parley.ports.hub import Hub
from parley.ports.presence import Presence, PresenceStore, Status

log = logging.getLogger("parley.gateway.presence")

_OFFLINE = Presence(Status.OFFLINE, False, 0)


@dataclass(slots=True, eq=False)
class _Watch:
    """Local subscribers of one user's presence (this gateway holds ``p:<uid>``)."""

    sessions: set[PresenceSession] = field(default_factory=set)
    presence: Presence | None = None  # latest known; None until fetched
    pending: int = 0  # subscribe commands in flight that will add a session


class PresenceWatch:
    """Subscriptions of local connections to users' presence (implements
    ``parley.ports.hub.HubHandler`` for ``p:`` topics, so a router can hand
    them on as is)."""

    def __init__(self, store: PresenceStore, hub: Hub, stats: PresenceStats, *, cap: int,
                 visible: Visible | None,
                 spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.store = store
        self.hub = hub
        self.stats = stats
        self.cap = cap
        self._visible = visible
        self._spawn = spawn
        self._subs: dict[PresenceSession, set[int]] = {}  # connection -> watched users
        self._watched: dict[int, _Watch] = {}
        self.closed = False

    # -- connections -------------------------------------------------------------

    def open(self, session: PresenceSession) -> None:
        self._subs.setdefault(session, set())

    def close(self, session: PresenceSession) -> None:
        for uid in self._subs.pop(session, ()):
            watch = self._watched.get(uid)
            if watch is not None:
                watch.sessions.discard(session)
                self._drop_if_unused(uid, watch)

    def subscriptions(self, session: PresenceSession) -> frozenset[int]:
        return frozenset(self._subs.get(session, ()))

    def subscribed(self, session: PresenceSession) -> int:
        return len(self._subs.get(session, ()))

    @property
    def watched_users(self) -> int:
        return len(self._watched)

    # -- commands ----------------------------------------------------------------

    async def subscribe(self, session: PresenceSession, ref: Any, ids: list[int]) -> None:
        subs = self._subs.get(session)
        if subs is None:
            return
        new = [uid for uid in ids if uid not in subs]
        if len(subs) + len(new) > self.cap:
            session.error(ref, ERR_SUBSCRIPTION_LIMIT,
                          f"at most {self.cap} users per connection; unsubscribe some first",
                          limit=self.cap, subscribed=len(subs))
            return
        # Reserve first, so concurrent subscribes cannot pass the cap together.
        subs.update(new)
        created: list[int] = []
        for uid in new:
            watch = self._watched.get(uid)
            if watch is None:
                watch = self._watched[uid] = _Watch()
                created.append(uid)
            watch.pending += 1
        ok = False
        try:
            if self._visible is not None:
                allowed = await self._visible(session.workspace_id, ids)
                hidden = [uid for uid in ids if uid not in allowed]
                if hidden:
                    session.error(ref, ERR_USER_NOT_FOUND, "no such user in this workspace",
                                  user_ids=hidden)
                    return
            if created:
                # Subscribe before reading: a change after the read arrives on the topic.
                await asyncio.gather(*(self.hub.subscribe(presence_topic(u)) for u in created))
            missing = [uid for uid in ids if self.known(uid) is None]
            if missing:
                for uid, p in (await self.store.get_many(missing)).items():
                    self.apply(uid, p)
            ok = True
        except Exception as exc:
            if not isinstance(exc, ConnectionError):
                log.exception("presence subscribe failed")
            session.error(ref, ERR_UNAVAILABLE, "presence is unavailable; retry", retryable=True)
        finally:
            alive = self._subs.get(session) is subs
            for uid in new:
                watch = self._watched[uid]
                watch.pending -= 1
                if not ok:
                    subs.discard(uid)
                elif alive and uid in subs:
                    watch.sessions.add(session)
                self._drop_if_unused(uid, watch)
        if ok and alive:
            session.reply(ref, {"presences": [
                presence_data(uid, self.known(uid) or _OFFLINE) for uid in ids]})

    def unsubscribe(self, session: PresenceSession, ref: Any, ids: list[int] | None) -> None:
        """Stop watching ``ids`` (None: everyone); the reply says how many remain."""
        subs = self._subs[session]
        for uid in list(subs) if ids is None else ids:
            if uid in subs:
                subs.discard(uid)
                watch = self._watched.get(uid)
                if watch is not None:
                    watch.sessions.discard(session)
                    self._drop_if_unused(uid, watch)
        session.reply(ref, {"subscribed": len(subs)})

    def _drop_if_unused(self, uid: int, watch: _Watch) -> None:
        if not watch.sessions and not watch.pending and self._watched.get(uid) is watch:
            del self._watched[uid]
            if not self.closed:
                self._spawn(self._hub_unsubscribe(presence_topic(uid)))

    async def _hub_unsubscribe(self, topic: str) -> None:
        try:
            await self.hub.unsubscribe(topic)
        except Exception:
            log.warning("hub unsubscribe of %s failed", topic, exc_info=True)

    # -- snapshots ---------------------------------------------------------------

    def known(self, uid: int) -> Presence | None:
        watch = self._watched.get(uid)
        return None if watch is None else watch.presence

    def apply(self, uid: int, p: Presence, *, force: bool = False) -> None:
        """Take a newer snapshot of a watched user; tell watchers if it shows."""
        watch = self._watched.get(uid)
        if watch is None:
            return
        old = watch.presence
        if old is not None and p.version < old.version and not force:
            return  # stale: a later write was already seen
        watch.presence = p
        if old is not None and old.status is p.status and old.dnd == p.dnd:
            return
        if watch.sessions:
            event = {"t": PRESENCE_CHANGED, "d": presence_data(uid, p)}
            for session in watch.sessions:
                session.send(event)
            self.stats.delivered += len(watch.sessions)

    async def publish(self, changed: dict[int, Presence]) -> None:
        """Tell local watchers at once and every other gateway through the hub."""
        if not changed:
            return
        for uid, p in changed.items():
            self.apply(uid, p)  # local watchers need not wait for the hub echo
        self.stats.published += len(changed)
        await self.hub_publish([(presence_topic(uid), encode_presence(uid, p))
                                for uid, p in changed.items()])

    async def hub_publish(self, items: list[tuple[str, bytes]]) -> None:
        try:
            await self.hub.publish_many(items)
        except Exception:
            # At most once, like every hub delivery; watchers re-read on reset.
            log.warning("hub publish of %d presence/typing events failed", len(items),
                        exc_info=True)

    # -- parley.ports.hub.HubHandler ---------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        """A payload on a ``p:<user id>`` topic (from the router)."""
        try:
            uid, p = decode_presence(payload)
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            log.warning("undecodable presence payload on %s", topic)
            return
        self.apply(uid, p)

    def on_reset(self) -> None:
        """The hub may have lost changes: re-read every watched user."""
        if self._watched and not self.closed:
            self._spawn(self._refetch(list(self._watched)))

    async def _refetch(self, ids: list[int]) -> None:
        try:
            fetched = await self.store.get_many(ids)
        except ConnectionError:
            log.warning("presence refetch after a hub reset failed", exc_info=True)
            return
        for uid, p in fetched.items():
            # Forced: after a Redis restart versions start again from 1.
            self.apply(uid, p, force=True)
