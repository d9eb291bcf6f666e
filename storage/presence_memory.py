"""In-process ``PresenceStore``: the embedded default, and the reference implementation.

Rules for this file:

* Several stores sharing one ``MemoryPresenceState`` play several gateway
  nodes of one deployment (tests pass one in); by default a store has its own.
* Time comes from ``clock`` (seconds, monotonic by default), so leases expire
  exactly as in Redis, and tests may pass a fake clock.
* Every method completes without awaiting anything, so each call is atomic
  (stronger than the contract asks).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from parley.ports.presence import (
    Presence,
    Status,
    SyncResult,
    aggregate,
)

__all__ = ["MemoryPresenceState", "MemoryPresenceStore"]


@dataclass(slots=True)
class _UserRow:
    entries: dict[str, Status] = field(default_factory=dict)  # node id -> entry
    away: bool = False  # setting: set away by the user
    dnd: bool = False  # setting: do not disturb
    version: int = 0


@dataclass(slots=True)
class MemoryPresenceState:
    """What a Redis server holds, for stores in one process."""

    leases: dict[str, float] = field(default_factory=dict)  # node id -> expires at (clock s)
    nodes: set[str] = field(default_factory=set)  # registered, not yet reaped
    node_users: dict[str, set[int]] = field(default_factory=dict)
    users: dict[int, _UserRow] = field(default_factory=dict)


class MemoryPresenceStore:
    """A ``PresenceStore`` over dicts; see ``parley.ports.presence``."""

    def __init__(self, state: MemoryPresenceState | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state if state is not None else MemoryPresenceState()
        self._clock = clock
        self._node = secrets.token_hex(8)
        self._registered = False
        self._closed = False

    @property
    def node_id(self) -> str:
        return self._node

    def _live(self, node: str, now: float) -> bool:
        expires = self._state.leases.get(node)
        return expires is not None and expires > now

    def _presence(self, row: _UserRow | None, now: float) -> Presence:
        if row is None:
            return Presence(Status.OFFLINE, False, 0)
        live = (s for n, s in row.entries.items() if self._live(n, now))
        return aggregate(live, row.away, row.dnd, row.version)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("presence store closed")

    async def sync(self, upserts: Mapping[int, Status], removals: Collection[int],
                   ttl_s: float) -> SyncResult:
        self._check_open()
        st = self._state
        now = self._clock()
        lapsed = False
        if self._registered and not self._live(self._node, now):
            lapsed = True
            self._node = secrets.token_hex(8)
        st.leases[self._node] = now + ttl_s
        st.nodes.add(self._node)
        self._registered = True
        mine = st.node_users.setdefault(self._node, set())
        touched: list[int] = []
        for uid, status in upserts.items():
            if status is Status.OFFLINE:
                raise ValueError("an entry is ONLINE or AWAY; remove a user to take it away")
            row = st.users.get(uid)
            if row is None:
                row = st.users[uid] = _UserRow()
            row.entries[self._node] = status
            row.version += 1
            mine.add(uid)
            touched.append(uid)
        for uid in removals:
            if uid in upserts:
                continue
            row = st.users.get(uid)
            if row is not None:
                row.entries.pop(self._node, None)
                row.version += 1
            mine.discard(uid)
            touched.append(uid)
        return SyncResult(lapsed, {uid: self._presence(st.users.get(uid), now) for uid in touched})

    async def reap(self) -> dict[int, Presence]:
        self._check_open()
        st = self._state
        now = self._clock()
        touched: set[int] = set()
        for node in [n for n in st.nodes if not self._live(n, now)]:
            st.nodes.discard(node)  # the claim: one reaper wins
            st.leases.pop(node, None)
            for uid in st.node_users.pop(node, ()):
                row = st.users.get(uid)
                if row is not None and row.entries.pop(node, None) is not None:
                    row.version += 1
                    touched.add(uid)
        return {uid: self._presence(st.users.get(uid), now) for uid in touched}

    async def set_settings(self, user_id: int, *, away: bool | None = None,
                           dnd: bool | None = None) -> Presence:
        self._check_open()
        row = self._state.users.get(user_id)
        if row is None:
            row = self._state.users[user_id] = _UserRow()
        if away is not None:
            row.away = away
        if dnd is not None:
            row.dnd = dnd
        row.version += 1
        return self._presence(row, self._clock())

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, Presence]:
        self._check_open()
        now = self._clock()
        users = self._state.users
        return {uid: self._presence(users.get(uid), now) for uid in user_ids}

    async def close(self) -> None:
        """Stop serving; the lease is left to expire (see the contract)."""
        self._closed = True
