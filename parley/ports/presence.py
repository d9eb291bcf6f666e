"""The ``PresenceStore`` contract: where gateways keep who is online.

Rules for this file (the same as for every port, see ``parley/ports/__init__.py``):

* It imports nothing of ours; gateways and the composition root import it.
* The ``PresenceStore`` docstring is the contract; one conformance suite
  (``tests/storage/test_presence_conformance.py``) checks it against every
  implementation (``presence_memory.py``, ``presence_redis.py``) with real
  servers.

Theory of operation
-------------------
Presence is the deployment's largest load (20M users heartbeating every 30 s
is ~666k heartbeats/s), so the store is shaped to be written on *changes*,
never per heartbeat and not even per user per refresh:

* Every gateway process is a **node** with a random id and a **lease**: one
  key with a TTL that the node renews every ``ttl / 2``.  One command renews
  the presence of every user connected to that node.
* Each user has one **entry per node** holding them (``ONLINE`` or ``AWAY``,
  i.e. idle there), written when it changes and removed when the user's last
  local connection has gone.  An entry counts only while its node's lease is
  live, so a node that dies takes all its users offline when its lease
  expires, with no write at all.
* Each user has **settings** (set by the user, not per device): a manual
  ``away`` and do-not-disturb (``dnd``).  They have no TTL.
* The aggregate a reader sees (``Presence``): ``OFFLINE`` if no live node
  holds the user; else ``AWAY`` if the user set away or every live entry is
  ``AWAY``; else ``ONLINE``.  Several devices: online if any is.

Why not ``SET presence:<user> ... EX 60`` per user every 30 s: that is one
Redis command per user per refresh, i.e. one per heartbeat (a client
heartbeats once per refresh period), 1,000 commands per 1,000 heartbeats
against a budget of 10.  The lease makes the steady-state cost independent of
the number of users.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


class Status(enum.Enum):
    """A user's presence as others see it."""

    ONLINE = "online"  # connected, and active on at least one device
    AWAY = "away"  # connected, but idle on every device, or set away by the user
    OFFLINE = "offline"  # no connection on any node whose lease is live


@dataclass(frozen=True, slots=True)
class Presence:
    """One user's aggregated presence.

    ``version`` increases with every write that concerns the user (an entry
    set or removed, a setting changed, a dead node's entries reaped).  Two
    snapshots of one user order by version; for equal versions the later read
    wins (a lease can expire without a write).  Unknown users: ``OFFLINE``,
    ``dnd`` False, version 0.
    """

    status: Status
    dnd: bool
    version: int


OFFLINE_UNKNOWN = Presence(Status.OFFLINE, False, 0)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What ``PresenceStore.sync`` did.

    ``lapsed``: the node's lease had expired before this call (the node was
    stalled or cut off for longer than the TTL and may have been reaped).  The
    store registered a fresh node id and wrote this call's upserts under it;
    the caller must now send *every* local user in one more ``sync``.

    ``changed``: the aggregate presence of every user named in the call,
    read after the write, for publishing to subscribers.
    """

    lapsed: bool
    changed: dict[int, Presence]


class PresenceStore(Protocol):
    """Presence of every user, shared by the gateway nodes of a deployment.

    One instance is one node (one gateway process); it has its own node id.

    Contract, for every implementation:

    * ``sync`` renews this node's lease for ``ttl_s`` seconds and applies
      ``upserts`` (user -> ``ONLINE``/``AWAY`` on this node) and ``removals``
      (users no longer on this node; a user in both is upserted).  Each
      user's entry write is atomic (a reader sees the old or the new entry);
      the call as a whole is not.
      The lease renewal happens *before* the writes, so a node never writes
      under a lease it does not hold.  Its cost is one round trip for the
      lease plus commands proportional to ``len(upserts) + len(removals)``:
      a call with nothing to write renews every local user with one command.
    * **TTL semantics**: once a node has not called ``sync`` for ``ttl_s``
      seconds, its entries stop counting: ``get_many`` reports its users
      offline (unless another live node holds them) with no further write.
      The next ``sync`` of that node then reports ``lapsed``.
    * ``reap`` removes the entries of nodes whose lease has expired and
      returns the new presence of each user it touched.  Exactly one of
      several concurrent reapers (on any node) claims a given dead node, so
      every affected user is reported once.  A reap that fails part-way
      (backend error, crash) is redone by a later one, which reports the
      users then.  Until reaped, dead entries cost memory but are never
      visible.
    * ``set_settings`` writes a user's settings (``None`` leaves one as is),
      atomically, and returns the user's presence after the write.
      Settings outlive every node and lease.
    * ``get_many`` returns a presence for every id asked (unknown users are
      ``OFFLINE_UNKNOWN``), in one or two round trips whatever the count.
    * **What may be lost**: nothing acknowledged is lost while the backend
      keeps its data; a backend restart without persistence forgets entries
      and settings (nodes re-send everything when they see ``lapsed``; the
      settings are gone).  Backend errors raise ``ConnectionError`` (or a
      subclass); a failed ``sync`` may have applied part of its writes, and
      re-sending the same upserts and removals is safe (idempotent).
    * ``close`` releases connections and leaves the lease to expire, so the
      node's users stay online through a rolling restart until they reconnect
      elsewhere, and are offline at most ``ttl_s`` later if they do not.
      Idempotent.
    """

    @property
    def node_id(self) -> str:
        """This node's current id (it changes after a ``lapsed`` sync)."""

    async def sync(self, upserts: Mapping[int, Status], removals: Collection[int],
                   ttl_s: float) -> SyncResult: ...

    async def reap(self) -> dict[int, Presence]: ...

    async def set_settings(self, user_id: int, *, away: bool | None = None,
                           dnd: bool | None = None) -> Presence: ...

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, Presence]: ...

    async def close(self) -> None: ...


def aggregate(entries: Iterable[Status], away_set: bool, dnd: bool, version: int) -> Presence:
    """The aggregate of a user's *live* entries and settings (shared by the stores)."""
    status = Status.OFFLINE
    for entry in entries:
        if entry is Status.ONLINE:
            status = Status.ONLINE
            break
        status = Status.AWAY
    if status is Status.ONLINE and away_set:
        status = Status.AWAY
    return Presence(status, dnd, version)
