"""Redis ``PresenceStore``: node leases plus per-user hashes, written on change.

One server (``RedisPresenceStore(url)``) or a Redis Cluster
(``RedisPresenceStore.cluster(startup_nodes)``); the commands are the same.

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
* Cluster-safe: every command but two names one key, and redis-py's
  ``RedisCluster`` routes each command, and each command of a pipeline, to
  the primary owning its key's slot (following ``MOVED``/``ASK`` and
  refreshing its slot map).  The two multi-key commands are split by slot on
  a cluster: ``MGET`` of leases (``_mget``: atomicity is not needed, a lease
  can expire between any two reads anyway) and ``DEL`` of reaped node sets
  (``RedisCluster.delete`` splits it).  The one atomic step
  (``set_settings``, a Lua script) touches one key.  Hence no key needs a
  hash tag; a future script, MULTI or multi-key command over several keys
  must put them under one (``P {<tag>}...``), and ``key_prefix`` must then
  hold no braces.

Key layout (``P`` is the prefix)
--------------------------------
==================  ======  =================================================
key                 type    holds
==================  ======  =================================================
``P lease:<node>``  string  ``"1"`` with a TTL (``PX``): the node is alive
``P nodes``         set     registered node ids not yet reaped
``P reap:<node>``   string  a reaper's claim on a dead node, with a TTL
``P nu:<node>``     set     users with an entry of that node (for the reaper)
``P u:<user>``      hash    ``v`` version, ``away``/``dnd`` settings (0/1),
                            ``n:<node>`` entries (``o`` online, ``a`` away)
==================  ======  =================================================

The lease is renewed with ``SET ... XX PX``: it answers nil when the key had
expired, which is how a node learns it lapsed (and takes a fresh id, so a
reaper working on the old id can never delete entries written under the new
one).  A reaper claims a dead node with ``SET P reap:<node> NX PX``: Redis
runs commands one at a time, so exactly one reaper gets it.  The node leaves
``P nodes`` only once its entries are gone, so a reaper that fails or dies
half-way leaves a claim that expires (``REAP_CLAIM_MS``) and the next reap
does the work again (every step is idempotent) and reports the users.

Why not the hub's own cluster machinery (``hub_redis_cluster``'s slot map):
it exists because sharded pub/sub needs one dedicated connection per primary
and never retries a publish; presence needs neither (see the retry rule
above), so redis-py's cluster client, which routes and retries ordinary
commands, is the simpler and better-tested tool.

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
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.exceptions import RedisClusterException, RedisError

from parley.ports.presence import Presence, Status, SyncResult, aggregate
from storage.redis_conn import NodeAddress, startup_url_kwargs

__all__ = ["DEFAULT_KEY_PREFIX", "PresenceUnavailable", "RedisPresenceStore"]

DEFAULT_KEY_PREFIX = "parley:presence:"
#: Users per pipeline in big writes (a full re-sync after a lapse): bounds the
#: memory of one pipeline and the time Redis spends on one batch (~3 commands
#: per user, so ~6,000 commands).
MAX_USERS_PER_PIPELINE = 2_000
# How long a reaper's claim on a dead node lasts: far longer than a reap takes
# (a few round trips per 2,000 users), so two live reapers never overlap in
# practice; a crashed reaper's work is redone this much later.
REAP_CLAIM_MS = 30_000
#: Bound on dialling Redis.
CONNECT_TIMEOUT_S = 2.0
#: Bound on one pipeline round trip.
SOCKET_TIMEOUT_S = 5.0

_ONLINE = b"o"
_AWAY = b"a"
_CODES = {Status.ONLINE: _ONLINE, Status.AWAY: _AWAY}
_ENTRY = b"n:"  # field prefix of node entries in a user hash
# What a failing backend raises: RedisCluster reports some failures (no node
# reachable, a slot not covered) outside the RedisError hierarchy.
_BACKEND_ERRORS = (RedisError, RedisClusterException, OSError)
# set_settings: settings and version bump in one step, then the hash.  A
# script rather than MULTI: atomic on a server and on a cluster alike (one
# key), and redis-py's cluster MULTI runs every queued command on a thread
# with an event loop of its own.  ARGV: field, value pairs (maybe none).
_SET_SETTINGS_LUA = """
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
redis.call('HINCRBY', KEYS[1], 'v', 1)
return redis.call('HGETALL', KEYS[1])
"""


class PresenceUnavailable(ConnectionError):
    """Redis could not be reached; a ``sync`` may have been partly applied."""


class RedisPresenceStore:
    """A ``PresenceStore`` over Redis; see ``parley.ports.presence``.

    ``RedisPresenceStore(url, *, key_prefix=DEFAULT_KEY_PREFIX, client=None)``:
    one server at ``url``.  ``client`` replaces the one built from ``url``
    (it must return bytes; a ``RedisCluster`` makes this a cluster store);
    the store closes only a client it built.  ``RedisPresenceStore.cluster``
    builds a Redis Cluster store.
    """

    def __init__(self, url: str = "", *, key_prefix: str = DEFAULT_KEY_PREFIX,
                 client: aioredis.Redis | RedisCluster | None = None) -> None:
        if client is None:
            if not url:
                raise ValueError("pass a Redis url or a client")
            client = aioredis.Redis.from_url(
                url, decode_responses=False, socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S)
            self._owns_client = True
        else:
            self._owns_client = False
        self._r: aioredis.Redis | RedisCluster = client
        self._p = key_prefix
        self._nodes_key = f"{key_prefix}nodes"
        self._node = secrets.token_hex(8)
        self._registered = False
        self._closed = False
        self.reap_claim_ms = REAP_CLAIM_MS  # tests shorten it

    @classmethod
    def cluster(cls, startup_nodes: Sequence[str], *,
                key_prefix: str = DEFAULT_KEY_PREFIX) -> RedisPresenceStore:
        """A store over the Redis Cluster reached through ``startup_nodes``.

        Written like ``RedisClusterHub``'s (``host:port`` or ``redis://`` /
        ``rediss://`` URLs; any one node is enough, the rest is discovered);
        credentials and TLS come from the first URL.  Connecting is lazy: a
        cluster that is down makes the first call raise
        ``PresenceUnavailable``, not this constructor.
        """
        if not startup_nodes:
            raise ValueError("a Redis Cluster needs at least one startup node")
        kwargs = startup_url_kwargs(startup_nodes)
        # RedisCluster takes TLS as a flag, not as a connection class.
        if kwargs.pop("connection_class", None) is SSLConnection:
            kwargs["ssl"] = True
        client = RedisCluster(
            startup_nodes=[ClusterNode(a.host, a.port)
                           for a in map(NodeAddress.parse, startup_nodes)],
            decode_responses=False, socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S, **kwargs)
        store = cls(key_prefix=key_prefix, client=client)
        store._owns_client = True
        return store

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

    def _claim(self, node: str) -> str:
        return f"{self._p}reap:{node}"

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
        except _BACKEND_ERRORS as exc:
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
            leases = await self._mget([self._lease(n) for n in nodes])
            dead = [n for n, lease in zip(nodes, leases, strict=True) if lease is None]
            if not dead:
                return {}
            pipe = self._r.pipeline(transaction=False)
            for node in dead:
                pipe.set(self._claim(node), self._node.encode(), nx=True, px=self.reap_claim_ms)
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
            # Last: out of the node list (the claim expires by itself).
            await self._r.srem(self._nodes_key, *won)
            return await self._read(sorted({uid for _, uid in pairs}))
        except _BACKEND_ERRORS as exc:
            raise PresenceUnavailable(f"presence reap failed: {exc}") from exc

    async def set_settings(self, user_id: int, *, away: bool | None = None,
                           dnd: bool | None = None) -> Presence:
        self._check_open()
        pairs: list[bytes] = []
        if away is not None:
            pairs += [b"away", b"1" if away else b"0"]
        if dnd is not None:
            pairs += [b"dnd", b"1" if dnd else b"0"]
        try:
            flat = await self._r.eval(
                _SET_SETTINGS_LUA, 1, self._user(user_id), *pairs)
            row = dict(zip(flat[::2], flat[1::2], strict=True))
            return (await self._aggregate([user_id], [row]))[user_id]
        except _BACKEND_ERRORS as exc:
            raise PresenceUnavailable(f"presence settings write failed: {exc}") from exc

    async def get_many(self, user_ids: Iterable[int]) -> dict[int, Presence]:
        self._check_open()
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        try:
            return await self._read(ids)
        except _BACKEND_ERRORS as exc:
            raise PresenceUnavailable(f"presence read failed: {exc}") from exc

    async def close(self) -> None:
        """Release the connections; the lease is left to expire (see the contract)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._r.aclose()

    # -- helpers ---------------------------------------------------------------

    async def _mget(self, keys: list[str]) -> list[Any]:
        """MGET; on a cluster one per slot (keys of several slots cannot share one)."""
        if isinstance(self._r, RedisCluster):
            return await self._r.mget_nonatomic(keys)
        return await self._r.mget(keys)

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
            leases = await self._mget([self._lease(n.decode()) for n in ordered])
            live = {n for n, lease in zip(ordered, leases, strict=True) if lease is not None}
        out: dict[int, Presence] = {}
        for uid, row in zip(ids, rows, strict=True):
            entries = (Status.ONLINE if code == _ONLINE else Status.AWAY
                       for f, code in row.items()
                       if f.startswith(_ENTRY) and f[len(_ENTRY):] in live)
            out[uid] = aggregate(entries, row.get(b"away") == b"1", row.get(b"dnd") == b"1",
                                 int(row.get(b"v", b"0")))
        return out
