"""Presence and typing at the edge: heartbeats stay in the gateway.

Rules for this file:

* A heartbeat touches local memory only: one dict lookup and two attribute
  writes, no allocation, no I/O (``on_heartbeat``).  Everything that reaches
  the store or the hub is batched by ``tick``.
* This module is the sans-IO core: ``LocalPresence`` takes ``now``
  (monotonic seconds) and returns what to write, ``TypingGate`` throttles,
  and the payload codec.  ``gateway/presence_service.py`` feeds them, talks
  to the ``PresenceStore`` and the ``Hub`` and runs ``tick`` on a timer;
  ``gateway/presence_watch.py`` serves subscriptions to others' presence.
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

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from gateway.protocol import (
    ERR_PRESENCE_SUBSCRIPTION_LIMIT,
    ERR_PRESENCE_UNAVAILABLE,
    EV_PRESENCE_CHANGED,
    EV_TYPING,
    OP_PRESENCE_SET,
    OP_PRESENCE_SUBSCRIBE,
    OP_PRESENCE_UNSUBSCRIBE,
    OP_TYPING,
)
from parley.ports.presence import Presence, Status

# -- protocol names (gateway.protocol; docs/protocol.md, "Presence and typing") --

OP_SUBSCRIBE = OP_PRESENCE_SUBSCRIBE
OP_UNSUBSCRIBE = OP_PRESENCE_UNSUBSCRIBE
OP_SET = OP_PRESENCE_SET
OPS = frozenset({OP_SUBSCRIBE, OP_UNSUBSCRIBE, OP_SET, OP_TYPING})
PRESENCE_CHANGED = EV_PRESENCE_CHANGED
TYPING = EV_TYPING
ERR_SUBSCRIPTION_LIMIT = ERR_PRESENCE_SUBSCRIPTION_LIMIT
ERR_UNAVAILABLE = ERR_PRESENCE_UNAVAILABLE

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
