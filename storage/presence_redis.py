"""Redis ``PresenceStore``: node leases plus per-user hashes, written on change.

Rules for this file:

* No command per heartbeat and none per user per refresh: a ``sync`` with
  nothing to write is ONE command (the lease renewal), whatever the number of
  local users.  Writes cost three commands per changed user (entry, version,
  read-back), pipelined with everything else of the call.
* Every key starts with ``key_prefix`` (tests use a random one).
* Every command here is idempotent or only bumps a version, so redis-py's
  own retry on a dropped connection cannot break the contract (a version
  that grows by two instead of one is still a version).
* Backend failures surface as ``PresenceUnavailable`` (a ``ConnectionError``).

Key layout (``P`` is the prefix)
--------------------------------
==================  ======  =================================================
key                 type    holds
==================  ======  =================================================
``P lease:<node>``  string  ``"1"`` with a TTL (``PX``): the node is alive
``P nodes``         set     registered node ids not yet reaped
``P nu:<node>``     set     users with an entry of that node (for the reaper)
``P u:<user>``      hash    ``v`` version, ``away``/``dnd`` settings (0/1),
                            ``n:<node>`` entries (``o`` online, ``a`` away)
==================  ======  =================================================

The lease is renewed with ``SET ... XX PX``: it answers nil when the key had
expired, which is how a node learns it lapsed (and takes a fresh id, so a
reaper working on the old id can never delete entries written under the new
one).  A reaper claims a dead node with ``SREM P nodes <node>``: Redis runs
commands one at a time, so exactly one reaper gets 1.

Why the hub and not a channel of our own for change notifications: the store
only keeps state; gateways publish changes on the existing ``Hub`` (topic
``p:<user id>``), which already reference-counts subscriptions, reconnects,
resets and batches publishes.  A second pub/sub connection per gateway would
duplicate all of that (the centrifuge split: broker and presence apart).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from storage.interfaces_presence import Presence, Status, SyncResult, aggregate

__all__ = ["DEFAULT_KEY_PREFIX", "PresenceUnavailable", "RedisPresenceStore"]

DEFAULT_KEY_PREFIX = "parley:presence:"
#: Users per pipeline in big writes (a full re-sync after a lapse): bounds the
#: memory of one pipeline and the time Redis spends on one batch (~3 commands
#: per user, so ~6,000 commands).
MAX_USERS_PER_PIPELINE = 2_000
#: Bound on dialling Redis.
CONNECT_TIMEOUT_S = 2.0
#: Bound on one pipeline round trip.
SOCKET_TIMEOUT_S = 5.0

_ONLINE = b"o"
_AWAY = b"a"
_CODES = {Status.ONLINE: _ONLINE, Status.AWAY: _AWAY}
_ENTRY = b"n:"  # field prefix of node entries in a user hash


class PresenceUnavailable(ConnectionError):
    """Redis could not be reached; a ``sync`` may have been partly applied."""


class RedisPresenceStore:
    """A ``PresenceStore`` over one Redis server; see ``storage.interfaces_presence``.

    ``RedisPresenceStore(url, *, key_prefix=DEFAULT_KEY_PREFIX, client=None)``:
    ``client`` replaces the one built from ``url`` (it must return bytes); the
    store closes only a client it built.
    """

    def __init__(self, url: str = "", *, key_prefix: str = DEFAULT_KEY_PREFIX,
                 client: aioredis.Redis | None = None) -> None:
        if client is None:
            if not url:
                raise ValueError("pass a Redis url or a client")
            client = aioredis.Redis.from_url(
                url, decode_responses=False, socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S)
            self._owns_client = True
        else:
            self._owns_client = False
        self._r = client
        self._p = key_prefix
        self._nodes_key = f"{key_prefix}nodes"
        self._node = secrets.token_hex(8)
        self._registered = False
        self._closed = False

    @property
    def node_id(self) -> str:
        return self._node

    # -- keys ------------------------------------------------------------------

    def _lease(self, node: str) -> str:
        return f"{self._p}lease:{node}"

    def _user(self, uid: int) -> str:
        return f"{self._p}u:{uid}"

    def _node_users(self, node: str) -> str:
        return f"{self._p}nu:{node}"

    # -- PresenceStore ---------------------------------------------------------

    async def sync(self, upserts: Mapping[int, Status], removals: Collection[int],
                   ttl_s: float) -> SyncResult:
        self._check_open()
        ttl_ms = max(1, int(ttl_s * 1000))
        for status in upserts.values():
            if status not in _CODES:
                raise ValueError("an entry is ONLINE or AWAY; remove a user to take it away")
        try:
            lapsed = await self._renew(ttl_ms)
            node = self._node
            field = _ENTRY + node.encode()
            removed = list(dict.fromkeys(uid for uid in removals if uid not in upserts))
            ups = list(upserts.items())
            touched: list[int] = []
            rows: list[dict[bytes, bytes]] = []
            step = MAX_USERS_PER_PIPELINE
            for i in range(0, max(len(ups), len(removed)), step):
                chunk_up = ups[i:i + step]
                chunk_rm = removed[i:i + step]
                pipe = self._r.pipeline(transaction=False)
                for uid, status in chunk_up:
                    key = self._user(uid)
                    pipe.hset(key, field, _CODES[status])
                    pipe.hincrby(key, "v", 1)
                for uid in chunk_rm:
                    key = self._user(uid)
                    pipe.hdel(key, field)
                    pipe.hincrby(key, "v", 1)
                if chunk_up:
                    pipe.sadd(self._node_users(node), *(uid for uid, _ in chunk_up))
                if chunk_rm:
                    pipe.srem(self._node_users(node), *chunk_rm)
                chunk_ids = [uid for uid, _ in chunk_up] + chunk_rm
                for uid in chunk_ids:
                    pipe.hgetall(self._user(uid))
                results = await pipe.execute()
                rows.extend(results[len(results) - len(chunk_ids):])
                touched.extend(chunk_ids)
            changed = await self._aggregate(touched, rows)
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence sync failed: {exc}") from exc
        return SyncResult(lapsed, changed)

    async def _renew(self, ttl_ms: int) -> bool:
        """Renew (or take) this node's lease; True if it had lapsed."""
        lapsed = False
        if self._registered:
            renewed = await self._r.set(self._lease(self._node), b"1", xx=True, px=ttl_ms)
            if renewed:
                return False
            lapsed = True
            self._node = secrets.token_hex(8)
            self._registered = False
        pipe = self._r.pipeline(transaction=False)
        pipe.set(self._lease(self._node), b"1", px=ttl_ms)
        pipe.sadd(self._nodes_key, self._node)
        await pipe.execute()
        self._registered = True
        return lapsed

    async def reap(self) -> dict[int, Presence]:
        self._check_open()
        try:
            nodes = [n.decode() if isinstance(n, bytes) else n
                     for n in await self._r.smembers(self._nodes_key)]
            if not nodes:
                return {}
            leases = await self._r.mget([self._lease(n) for n in nodes])
            dead = [n for n, lease in zip(nodes, leases, strict=True) if lease is None]
            if not dead:
                return {}
            pipe = self._r.pipeline(transaction=False)
            for node in dead:
                pipe.srem(self._nodes_key, node)
            won = [n for n, claimed in zip(dead, await pipe.execute(), strict=True) if claimed]
            if not won:
                return {}
            pipe = self._r.pipeline(transaction=False)
            for node in won:
                pipe.smembers(self._node_users(node))
            members = await pipe.execute()
            pairs = [(node, int(uid)) for node, uids in zip(won, members, strict=True)
                     for uid in uids]
            for i in range(0, len(pairs), MAX_USERS_PER_PIPELINE):
                pipe = self._r.pipeline(transaction=False)
                for node, uid in pairs[i:i + MAX_USERS_PER_PIPELINE]:
                    key = self._user(uid)
                    pipe.hdel(key, _ENTRY + node.encode())
                    pipe.hincrby(key, "v", 1)
                await pipe.execute()
            await self._r.delete(*(self._node_users(n) for n in won))
            return await self._read(sorted({uid for _, uid in pairs}))
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence reap failed: {exc}") from exc

    async def set_settings(self, user_id: int, *, away: bool | None = None,
                           dnd: bool | None = None) -> Presence:
        self._check_open()
        mapping: dict[str, bytes] = {}
        if away is not None:
            mapping["away"] = b"1" if away else b"0"
        if dnd is not None:
            mapping["dnd"] = b"1" if dnd else b"0"
        key = self._user(user_id)
        try:
            pipe = self._r.pipeline(transaction=True)  # MULTI: settings and version together
            if mapping:
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.hincrby(key, "v", 1)
            pipe.hgetall(key)
            results = await pipe.execute()
            return (await self._aggregate([user_id], [results[-1]]))[user_id]
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence settings write failed: {exc}") from exc

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, Presence]:
        self._check_open()
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        try:
            return await self._read(ids)
        except (RedisError, OSError) as exc:
            raise PresenceUnavailable(f"presence read failed: {exc}") from exc

    async def close(self) -> None:
        """Release the connections; the lease is left to expire (see the contract)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._r.aclose()

    # -- helpers ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("presence store closed")

    async def _read(self, ids: Sequence[int]) -> dict[int, Presence]:
        rows: list[dict[bytes, bytes]] = []
        for i in range(0, len(ids), MAX_USERS_PER_PIPELINE):
            pipe = self._r.pipeline(transaction=False)
            for uid in ids[i:i + MAX_USERS_PER_PIPELINE]:
                pipe.hgetall(self._user(uid))
            rows.extend(await pipe.execute())
        return await self._aggregate(ids, rows)

    async def _aggregate(self, ids: Sequence[int],
                         rows: Sequence[dict[bytes, bytes]]) -> dict[int, Presence]:
        """Presence of ``ids`` from their hashes; one MGET tells which nodes live."""
        nodes: set[bytes] = set()
        for row in rows:
            nodes.update(f[len(_ENTRY):] for f in row if f.startswith(_ENTRY))
        live: set[bytes] = set()
        if nodes:
            ordered = list(nodes)
            leases: list[Any] = await self._r.mget(
                [self._lease(n.decode()) for n in ordered])
            live = {n for n, lease in zip(ordered, leases, strict=True) if lease is not None}
        out: dict[int, Presence] = {}
        for uid, row in zip(ids, rows, strict=True):
            entries = (Status.ONLINE if code == _ONLINE else Status.AWAY
                       for f, code in row.items()
                       if f.startswith(_ENTRY) and f[len(_ENTRY):] in live)
            out[uid] = aggregate(entries, row.get(b"away") == b"1", row.get(b"dnd") == b"1",
                                 int(row.get(b"v", b"0")))
        return out
