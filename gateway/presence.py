"""Presence and typing at the edge: heartbeats stay in the gateway.

Rules for this file:

* A heartbeat touches local memory only: one dict lookup and two attribute
  writes, no allocation, no I/O (``on_heartbeat``).  Everything that reaches
  the store or the hub is batched by ``tick``.
* ``LocalPresence`` is sans-IO: it takes ``now`` (monotonic seconds) and
  returns what to write; ``PresenceService`` feeds it, talks to the
  ``PresenceStore`` and the ``Hub``, and runs ``tick`` on a timer.
* Nothing is ever broadcast to a workspace or a channel's member list: a
  connection receives the presence of the users it subscribed to (at most
  ``max_subscriptions`` of them), and nothing else.
* Typing is never stored: one unsequenced ``typing`` event on the channel's
  hub topic (the router hands unsequenced channel events straight to local
  members), throttled per (user, channel), and never sent in channels above
  ``typing_max_members``.

Theory of operation
-------------------
State machine of one user *on this gateway* (the store aggregates nodes, see
``parley.ports.presence``)::

    (absent) --open--> ACTIVE --no activity for idle_after_s--> IDLE
                         ^  \\                                   |  |
                         |   `--------------activity-------------'  |
                         |                                          |
    last connection closed (ACTIVE or IDLE) --> LEAVING --grace--> (absent:
    entry removed)          a connection opens again in LEAVING: back, no change

ACTIVE is written as entry ``ONLINE``, IDLE as ``AWAY``.  The user's
settings (``presence.set``: manual away, do-not-disturb) live in the store
and apply to every device on every gateway.  Activity is a ``heartbeat``
whose ``active`` flag is true (clients send false when the user has not
touched the app since the previous heartbeat), a ``typing`` command, or any
command the gateway reports through ``on_heartbeat``.

Every ``change_flush_s`` the changes (new users, idle transitions, users gone
for ``offline_grace_s``) go to the store in one ``sync``; every
``lease_renew_s`` a sync happens even with no change, renewing the lease of
every local user with one command.  The aggregates the store returns are
published on hub topics ``p:<user id>``; gateways with a local subscriber of
that user are subscribed to the topic and forward ``presence.changed``
to those connections only.  A gateway that dies stops renewing its lease;
``get_many`` shows its users offline once the lease expires (TTL), and the
first gateway to ``reap`` publishes that, within ``reap_interval_s`` more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from gateway import codec as codecs
from parley import events
from parley.ports.hub import Hub
from parley.ports.presence import Presence, PresenceStore, Status

log = logging.getLogger("parley.gateway.presence")

# -- protocol names (docs/protocol.md, "Presence and typing") ------------------

OP_SUBSCRIBE = "presence.subscribe"  # d: user_ids
OP_UNSUBSCRIBE = "presence.unsubscribe"  # d: user_ids, or all: true
OP_SET = "presence.set"  # d: status ("away" | "auto") and/or dnd (bool)
OP_TYPING = "typing"  # d: channel_id
OPS = frozenset({OP_SUBSCRIBE, OP_UNSUBSCRIBE, OP_SET, OP_TYPING})

PRESENCE_CHANGED = "presence.changed"  # event to subscribers: user_id, status, dnd
TYPING = "typing"  # event to channel members: channel_id, user_id, expires_in_ms

ERR_SUBSCRIPTION_LIMIT = "presence_subscription_limit"
ERR_UNAVAILABLE = "presence_unavailable"
ERR_USER_NOT_FOUND = "user_not_found"
ERR_CHANNEL_NOT_FOUND = "channel_not_found"

PRESENCE_TOPIC_KIND = "p"  # hub topic p:<user id>


def presence_topic(user_id: int) -> str:
    return f"p:{user_id}"


# -- defaults, with units ------------------------------------------------------

PRESENCE_TTL_S = 60.0  # lease TTL: a dead gateway's users are offline this long after it died
LEASE_RENEW_S = 30.0  # lease renewal period: TTL / 2, so one missed renewal is survived
CHANGE_FLUSH_S = 1.0  # local changes reach the store and subscribers within this
REAP_INTERVAL_S = 5.0  # how often dead gateways are looked for (2 commands each time)
IDLE_AFTER_S = 600.0  # no activity for 10 min: away (Slack's default)
IDLE_CHECK_S = 15.0  # idle sweep period; idleness is detected up to this late
OFFLINE_GRACE_S = 10.0  # a reconnect within this after the last close changes nothing
MAX_SUBSCRIPTIONS = 500  # users one connection may watch (about two screens of avatars)
TYPING_THROTTLE_S = 3.0  # at most one typing event per (user, channel) per this
TYPING_EXPIRES_MS = 5_000  # clients drop a typing indicator this long after the event
TYPING_MAX_MEMBERS = 1_000  # no typing events in channels with more members than this
CHANNEL_SIZE_CACHE_S = 60.0  # how long a channel's member count is trusted


@dataclass(frozen=True, slots=True)
class PresenceOptions:
    """Tuning; the defaults above suit production, tests shorten the times."""

    ttl_s: float = PRESENCE_TTL_S
    lease_renew_s: float = LEASE_RENEW_S
    change_flush_s: float = CHANGE_FLUSH_S
    reap_interval_s: float = REAP_INTERVAL_S
    idle_after_s: float = IDLE_AFTER_S
    idle_check_s: float = IDLE_CHECK_S
    offline_grace_s: float = OFFLINE_GRACE_S
    max_subscriptions: int = MAX_SUBSCRIPTIONS
    typing_throttle_s: float = TYPING_THROTTLE_S
    typing_expires_ms: int = TYPING_EXPIRES_MS
    typing_max_members: int = TYPING_MAX_MEMBERS
    channel_size_cache_s: float = CHANNEL_SIZE_CACHE_S


class PresenceSession(Protocol):
    """What presence uses of ``gateway.session.Session``."""

    @property
    def user_id(self) -> int: ...

    @property
    def workspace_id(self) -> int: ...

    @property
    def channels(self) -> Collection[int]: ...

    def send(self, obj: dict[str, Any]) -> None: ...

    def reply(self, ref: Any, data: dict[str, Any]) -> None: ...

    def error(self, ref: Any, code: str, message: str, *, retryable: bool = False,
              **extra: Any) -> None: ...


#: ``(workspace_id, channel_id) -> member count``; wired to a domain read.
ChannelSize = Callable[[int, int], Awaitable[int]]
#: ``(workspace_id, user_ids) -> the ids the caller may see`` (same workspace).
Visible = Callable[[int, list[int]], Awaitable[Collection[int]]]


# --------------------------------------------------------------------------- sans-IO core


class _User:
    """One user with at least one connection here (or leaving)."""

    __slots__ = ("conns", "idle", "in_store", "last_active", "leave_at", "user_id", "written")

    def __init__(self, user_id: int, now: float) -> None:
        self.user_id = user_id
        self.conns = 0  # open connections on this gateway
        self.last_active = now  # latest activity on any local device (monotonic s)
        self.idle = False  # IDLE (entry AWAY) rather than ACTIVE (entry ONLINE)
        self.written: Status | None = None  # entry last sent to the store; None: unknown
        self.in_store = False  # an entry may exist in the store (so removal is needed)
        self.leave_at = 0.0  # LEAVING: when the entry is removed

    @property
    def entry(self) -> Status:
        return Status.AWAY if self.idle else Status.ONLINE


@dataclass(slots=True)
class Batch:
    """What ``LocalPresence.due`` wants written to the store."""

    upserts: dict[int, Status] = field(default_factory=dict)
    removals: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removals)


class LocalPresence:
    """The presence of this gateway's users, sans-IO (``now`` is passed in).

    Keys identify connections (any hashable: the session object).  Invariant:
    a user is in ``users`` iff it has an open connection or is LEAVING; it is
    in ``_dirty`` when its entry may differ from ``written``.
    """

    def __init__(self, idle_after_s: float = IDLE_AFTER_S,
                 idle_check_s: float = IDLE_CHECK_S,
                 offline_grace_s: float = OFFLINE_GRACE_S) -> None:
        self.idle_after_s = idle_after_s
        self.idle_check_s = idle_check_s
        self.offline_grace_s = offline_grace_s
        self.users: dict[int, _User] = {}
        self._conns: dict[object, _User] = {}
        self._dirty: set[_User] = set()
        self._leaving: set[_User] = set()
        self._pending_removals: set[int] = set()  # removals whose write failed
        self._next_idle_check = 0.0

    def __len__(self) -> int:
        return len(self._conns)

    def open(self, key: object, user_id: int, now: float) -> None:
        if key in self._conns:
            return
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = _User(user_id, now)
            self._dirty.add(user)
        elif user.conns == 0:
            self._leaving.discard(user)  # came back within the grace period
        user.conns += 1
        self._conns[key] = user
        self.activity(key, now)

    def close(self, key: object, now: float) -> None:
        user = self._conns.pop(key, None)
        if user is None:
            return
        user.conns -= 1
        if user.conns == 0:
            user.leave_at = now + self.offline_grace_s
            self._leaving.add(user)

    def activity(self, key: object, now: float) -> None:
        """The hot path: O(1), no allocation unless the user wakes from IDLE."""
        user = self._conns.get(key)
        if user is None:
            return
        user.last_active = now
        if user.idle:
            user.idle = False
            self._dirty.add(user)

    def due(self, now: float) -> Batch:
        """Changes to write now; marks them written (call ``failed`` if not)."""
        if now >= self._next_idle_check:
            self._next_idle_check = now + self.idle_check_s
            horizon = now - self.idle_after_s
            for user in self.users.values():
                if user.conns and not user.idle and user.last_active <= horizon:
                    user.idle = True
                    self._dirty.add(user)
        batch = Batch()
        if self._leaving:
            for user in [u for u in self._leaving if u.leave_at <= now]:
                self._leaving.discard(user)
                self._dirty.discard(user)
                del self.users[user.user_id]
                if user.in_store:
                    batch.removals.append(user.user_id)
        if self._pending_removals:
            batch.removals.extend(u for u in self._pending_removals if u not in self.users)
            self._pending_removals.clear()
        for user in self._dirty:
            entry = user.entry
            if user.written is not entry:
                batch.upserts[user.user_id] = entry
                user.written = entry
                user.in_store = True
        self._dirty.clear()
        return batch

    def everything(self) -> dict[int, Status]:
        """Every local user's entry (a full re-sync after a lapsed lease)."""
        for user in self.users.values():
            user.written = user.entry
            user.in_store = True
        self._dirty.clear()
        return {uid: user.entry for uid, user in self.users.items()}

    def failed(self, batch: Batch | dict[int, Status]) -> None:
        """A batch did not reach the store (or only partly): write it again."""
        upserts = batch.upserts if isinstance(batch, Batch) else batch
        for uid in upserts:
            user = self.users.get(uid)
            if user is not None:
                user.written = None
                self._dirty.add(user)
            else:
                # Gone meanwhile (not while ticks are serialised, but failed() may
                # be called at any time): the entry may have been written, and
                # our lease would keep it alive, so remove it.
                self._pending_removals.add(uid)
        if isinstance(batch, Batch):
            self._pending_removals.update(batch.removals)


class TypingGate:
    """Per (user, channel) typing throttle, sans-IO."""

    def __init__(self, throttle_s: float = TYPING_THROTTLE_S) -> None:
        self.throttle_s = throttle_s
        self._last: dict[tuple[int, int], float] = {}

    def allow(self, user_id: int, channel_id: int, now: float) -> bool:
        key = (user_id, channel_id)
        last = self._last.get(key)
        if last is not None and now - last < self.throttle_s:
            return False
        self._last[key] = now
        return True

    def prune(self, now: float) -> None:
        horizon = now - self.throttle_s
        for key in [k for k, t in self._last.items() if t <= horizon]:
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)


# --------------------------------------------------------------------------- wire formats


def encode_presence(user_id: int, p: Presence) -> bytes:
    """Hub payload of ``p:<user id>`` (internal: carries the version)."""
    return msgpack.packb({"user_id": user_id, "status": p.status.value, "dnd": p.dnd,
                          "v": p.version}, use_bin_type=True)


def decode_presence(payload: bytes) -> tuple[int, Presence]:
    obj = msgpack.unpackb(payload, raw=False)
    if not isinstance(obj, dict):
        raise ValueError("a presence payload is a map")
    return int(obj["user_id"]), Presence(Status(obj["status"]), bool(obj["dnd"]), int(obj["v"]))


def presence_data(user_id: int, p: Presence) -> dict[str, Any]:
    """``d`` of ``presence.changed`` and of a subscribe reply's entries."""
    return {"user_id": user_id, "status": p.status.value, "dnd": p.dnd}


# --------------------------------------------------------------------------- the service


@dataclass(slots=True, eq=False)
class _Watch:
    """Local subscribers of one user's presence (this gateway holds ``p:<uid>``)."""

    sessions: set[PresenceSession] = field(default_factory=set)
    presence: Presence | None = None  # latest known; None until fetched
    pending: int = 0  # subscribe commands in flight that will add a session


@dataclass(slots=True, eq=False)
class _Conn:
    subs: set[int] = field(default_factory=set)


@dataclass(slots=True)
class PresenceStats:
    """Counters for metrics and the benchmark."""

    syncs: int = 0
    sync_failures: int = 0
    lapses: int = 0
    published: int = 0  # presence payloads handed to the hub
    delivered: int = 0  # presence.changed events sent to local connections
    typing_sent: int = 0
    typing_throttled: int = 0
    typing_suppressed: int = 0  # channel above typing_max_members


class PresenceService:
    """Presence and typing for one gateway process.

    ``PresenceService(store, hub, channel_size, *, visible=None, options=None,
    clock=time.monotonic)``

    * ``store``: this process's ``PresenceStore`` (one node); the service
      does not close it (the composition root does).
    * ``hub``: the gateway's started hub; the service subscribes ``p:<uid>``
      topics and publishes on them and on ``c:<channel id>`` (typing).  The
      hub handler (the router) must pass ``p:`` topics to ``on_hub_message``
      and resets to ``on_hub_reset``.
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
        self._channel_size = channel_size
        self._visible = visible
        self._clock = clock
        self.local = LocalPresence(opts.idle_after_s, opts.idle_check_s, opts.offline_grace_s)
        self._users_by_conn = self.local._conns  # the same dict (never rebound): on_heartbeat
        self.typing = TypingGate(opts.typing_throttle_s)
        self.stats = PresenceStats()
        self._conns: dict[PresenceSession, _Conn] = {}
        self._watched: dict[int, _Watch] = {}
        self._sizes: dict[int, tuple[int, float]] = {}  # channel -> (members, fetched at)
        self._size_fetches: dict[int, asyncio.Future[int]] = {}
        self._next_renew = 0.0
        self._next_reap = 0.0
        self._next_prune = 0.0
        self._resync = False
        self._tick_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease now and run ``tick`` every ``change_flush_s``."""
        await self.tick()
        self._loop_task = asyncio.create_task(self._run(), name="presence-tick")

    async def close(self) -> None:
        """Stop the timer and tasks.  The lease is left to expire (no flap on restart)."""
        self._closed = True
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

    # -- connection hooks ------------------------------------------------------

    def on_open(self, session: PresenceSession, now: float | None = None) -> None:
        """A connection authenticated (call before ``hello``)."""
        if session in self._conns:
            return
        self._conns[session] = _Conn()
        self.local.open(session, session.user_id, self._clock() if now is None else now)

    def on_close(self, session: PresenceSession, now: float | None = None) -> None:
        conn = self._conns.pop(session, None)
        if conn is None:
            return
        self.local.close(session, self._clock() if now is None else now)
        for uid in conn.subs:
            watch = self._watched.get(uid)
            if watch is not None:
                watch.sessions.discard(session)
                self._drop_if_unused(uid, watch)

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
        if session not in self._conns:
            return True  # closing
        now = self._clock() if now is None else now
        try:
            if op == OP_TYPING:
                self._typing(session, ref, data, now)
            elif op == OP_SUBSCRIBE:
                raw = data.get("user_ids")
                cap = self.options.max_subscriptions
                if isinstance(raw, list) and len(raw) > cap:
                    session.error(ref, ERR_SUBSCRIPTION_LIMIT,
                                  f"at most {cap} users per connection", limit=cap,
                                  subscribed=len(self._conns[session].subs))
                    return True
                self._spawn(self._subscribe(session, ref, self._ids(data)))
            elif op == OP_UNSUBSCRIBE:
                self._unsubscribe(session, ref, data)
            else:
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

    async def _subscribe(self, session: PresenceSession, ref: Any, ids: list[int]) -> None:
        conn = self._conns.get(session)
        if conn is None:
            return
        cap = self.options.max_subscriptions
        new = [uid for uid in ids if uid not in conn.subs]
        if len(conn.subs) + len(new) > cap:
            session.error(ref, ERR_SUBSCRIPTION_LIMIT,
                          f"at most {cap} users per connection; unsubscribe some first",
                          limit=cap, subscribed=len(conn.subs))
            return
        # Reserve first, so concurrent subscribes cannot pass the cap together.
        conn.subs.update(new)
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
            missing = [uid for uid in ids if self._known(uid) is None]
            if missing:
                for uid, p in (await self.store.get_many(missing)).items():
                    self._apply(uid, p)
            ok = True
        except Exception as exc:
            if not isinstance(exc, ConnectionError):
                log.exception("presence subscribe failed")
            session.error(ref, ERR_UNAVAILABLE, "presence is unavailable; retry", retryable=True)
        finally:
            alive = self._conns.get(session) is conn
            for uid in new:
                watch = self._watched[uid]
                watch.pending -= 1
                if not ok:
                    conn.subs.discard(uid)
                elif alive and uid in conn.subs:
                    watch.sessions.add(session)
                self._drop_if_unused(uid, watch)
        if ok and alive:
            session.reply(ref, {"presences": [
                presence_data(uid, self._known(uid) or _OFFLINE) for uid in ids]})

    def _unsubscribe(self, session: PresenceSession, ref: Any, data: dict[str, Any]) -> None:
        conn = self._conns[session]
        ids = list(conn.subs) if data.get("all") is True else self._ids(data)
        for uid in ids:
            if uid in conn.subs:
                conn.subs.discard(uid)
                watch = self._watched.get(uid)
                if watch is not None:
                    watch.sessions.discard(session)
                    self._drop_if_unused(uid, watch)
        session.reply(ref, {"subscribed": len(conn.subs)})

    def _drop_if_unused(self, uid: int, watch: _Watch) -> None:
        if not watch.sessions and not watch.pending and self._watched.get(uid) is watch:
            del self._watched[uid]
            if not self._closed:
                self._spawn(self._hub_unsubscribe(presence_topic(uid)))

    async def _hub_unsubscribe(self, topic: str) -> None:
        try:
            await self.hub.unsubscribe(topic)
        except Exception:
            log.warning("hub unsubscribe of %s failed", topic, exc_info=True)

    async def _set(self, session: PresenceSession, ref: Any, away: bool | None,
                   dnd: bool | None) -> None:
        try:
            p = await self.store.set_settings(session.user_id, away=away, dnd=dnd)
        except ConnectionError:
            session.error(ref, ERR_UNAVAILABLE, "presence is unavailable; retry", retryable=True)
            return
        await self._publish({session.user_id: p})
        session.reply(ref, presence_data(session.user_id, p))

    # -- typing ----------------------------------------------------------------

    def _typing(self, session: PresenceSession, ref: Any, data: dict[str, Any],
                now: float) -> None:
        cid = codecs.as_id(data.get("channel_id"), "channel_id")
        if cid not in session.channels:
            session.error(ref, ERR_CHANNEL_NOT_FOUND, "no such channel")
            return
        self.local.activity(session, now)
        if not self.typing.allow(session.user_id, cid, now):
            self.stats.typing_throttled += 1
            self._typing_reply(session, ref, "throttled")
            return
        cached = self._sizes.get(cid)
        if cached is not None and now - cached[1] < self.options.channel_size_cache_s:
            self._typing_send(session, ref, cid, cached[0])
        else:
            self._spawn(self._typing_after_size(session, ref, cid, now))

    async def _typing_after_size(self, session: PresenceSession, ref: Any, cid: int,
                                 now: float) -> None:
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
            self._typing_reply(session, ref, "unavailable")
            return
        self._sizes[cid] = (members, now)
        if session in self._conns:
            self._typing_send(session, ref, cid, members)

    def _typing_send(self, session: PresenceSession, ref: Any, cid: int, members: int) -> None:
        if members > self.options.typing_max_members:
            self.stats.typing_suppressed += 1
            self._typing_reply(session, ref, "channel_too_large")
            return
        payload = events.encode(TYPING, {"channel_id": cid, "user_id": session.user_id,
                                         "expires_in_ms": self.options.typing_expires_ms})
        self.stats.typing_sent += 1
        self._spawn(self._hub_publish([(events.channel_topic(cid), payload)]))
        self._typing_reply(session, ref, None)

    @staticmethod
    def _typing_reply(session: PresenceSession, ref: Any, dropped: str | None) -> None:
        # Typing is fire-and-forget: only a command with a ref gets an ack.
        if ref is not None:
            session.reply(ref, {"sent": dropped is None} if dropped is None
                          else {"sent": False, "reason": dropped})

    # -- hub -------------------------------------------------------------------

    def on_hub_message(self, topic: str, payload: bytes) -> None:
        """A payload on a ``p:<user id>`` topic (from the router)."""
        try:
            uid, p = decode_presence(payload)
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            log.warning("undecodable presence payload on %s", topic)
            return
        self._apply(uid, p)

    def on_hub_reset(self) -> None:
        """The hub may have lost changes: re-read every watched user."""
        if self._watched and not self._closed:
            self._spawn(self._refetch(list(self._watched)))

    # ``parley.ports.hub.HubHandler``, so a router can hand ``p:`` topics on as is.

    def on_message(self, topic: str, payload: bytes) -> None:
        self.on_hub_message(topic, payload)

    def on_reset(self) -> None:
        self.on_hub_reset()

    async def _refetch(self, ids: list[int]) -> None:
        try:
            fetched = await self.store.get_many(ids)
        except ConnectionError:
            log.warning("presence refetch after a hub reset failed", exc_info=True)
            return
        for uid, p in fetched.items():
            # Forced: after a Redis restart versions start again from 1.
            self._apply(uid, p, force=True)

    def _known(self, uid: int) -> Presence | None:
        watch = self._watched.get(uid)
        return None if watch is None else watch.presence

    def _apply(self, uid: int, p: Presence, *, force: bool = False) -> None:
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

    async def _publish(self, changed: dict[int, Presence]) -> None:
        if not changed:
            return
        for uid, p in changed.items():
            self._apply(uid, p)  # local watchers need not wait for the hub echo
        self.stats.published += len(changed)
        await self._hub_publish([(presence_topic(uid), encode_presence(uid, p))
                                 for uid, p in changed.items()])

    async def _hub_publish(self, items: list[tuple[str, bytes]]) -> None:
        try:
            await self.hub.publish_many(items)
        except Exception:
            # At most once, like every hub delivery; watchers re-read on reset.
            log.warning("hub publish of %d presence/typing events failed", len(items),
                        exc_info=True)

    # -- the timer -------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """One round of background work at ``now``: write and publish changes,
        renew the lease when due, reap dead gateways when due.  The timer calls
        it every ``change_flush_s``; tests call it directly."""
        async with self._tick_lock:
            now = self._clock() if now is None else now
            opts = self.options
            batch = self.local.due(now)
            if self._resync:
                batch.upserts.update(self.local.everything())
            if batch or now >= self._next_renew:
                await self._sync(batch, now)
            if now >= self._next_reap:
                self._next_reap = now + opts.reap_interval_s
                try:
                    reaped = await self.store.reap()
                except ConnectionError:
                    log.warning("presence reap failed", exc_info=True)
                else:
                    await self._publish(reaped)
            if now >= self._next_prune:
                self._next_prune = now + opts.channel_size_cache_s
                self.typing.prune(now)
                horizon = now - opts.channel_size_cache_s
                for cid in [c for c, (_, at) in self._sizes.items() if at <= horizon]:
                    del self._sizes[cid]
            elif len(self.typing) > 10_000:
                self.typing.prune(now)

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
        await self._publish(changed)

    # -- introspection (metrics, tests) ----------------------------------------

    def subscriptions(self, session: PresenceSession) -> frozenset[int]:
        conn = self._conns.get(session)
        return frozenset() if conn is None else frozenset(conn.subs)

    @property
    def watched_users(self) -> int:
        return len(self._watched)


_OFFLINE = Presence(Status.OFFLINE, False, 0)

