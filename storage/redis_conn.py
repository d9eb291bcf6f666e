"""Redis connection machinery shared by the Redis backends: a self-healing pub/sub
link for the hubs, and how cluster startup nodes are written (``NodeAddress``,
``startup_url_kwargs``, also used by the presence store).

Rules for this file:

* It knows connections, commands and replies, not hubs: no reference counts,
  no publishing policy, no ``on_reset``.  What it reports goes to a
  ``LinkListener``; what it is tuned with is a ``ConnectionTuning`` (which
  ``storage.hub_redis.HubOptions`` satisfies).
* Nothing is retried once it may have reached Redis: connections are built
  with zero retries (``enforced_connection_kwargs``).
* A ``PubSubLink``'s tasks never raise.  A listener exception is logged and
  the next frame read; every other failure (I/O, timeout, a reply that
  matches no command) ends in "drop the connection, back off, reconnect,
  resubscribe".
* Nothing here blocks the loop; every wait is bounded by a timeout or by a
  connection that is being torn down.

Theory of operation
-------------------
A ``PubSubLink`` owns one dedicated connection: a task dials, re-sends
SUBSCRIBE for every wanted topic, and then runs a reader and a writer until
the connection dies, after which it backs off (jittered exponential,
``Backoff``) and starts over.

A ``PubSubSession`` (sans-IO) pairs each reply with the command that caused
it: Redis answers commands on a connection in order, interleaved with pushed
messages, so one FIFO of in-flight commands is enough to know which topic an
``ssubscribe`` ack or a ``MOVED`` error is about.  Pushed messages never
reach the session: the reader recognises them first (the hot path) and
hands them to the listener while their topic is wanted.

The reader pings after ``ping_interval_s`` of silence and declares the
connection dead after a second silent interval, so a half-open TCP
connection is noticed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, ResponseError

from parley.outage import OutageLog

__all__ = [
    "PLAIN",
    "SHARDED",
    "Backoff",
    "ConnectionFactory",
    "ConnectionTuning",
    "Dial",
    "Dialect",
    "LinkListener",
    "LinkState",
    "NodeAddress",
    "Op",
    "OpKind",
    "ProtocolDesync",
    "PubSubLink",
    "PubSubSession",
    "Reply",
    "SubscribeOutcome",
    "dial_connection",
    "enforced_connection_kwargs",
    "redact_url",
    "startup_url_kwargs",
]

log = logging.getLogger(__name__)


class ConnectionTuning(Protocol):
    """The settings this module reads (``HubOptions`` provides them; see its fields)."""

    @property
    def client_name(self) -> str: ...

    @property
    def connect_timeout_s(self) -> float: ...

    @property
    def socket_timeout_s(self) -> float: ...

    @property
    def ping_interval_s(self) -> float: ...

    @property
    def backoff_base_s(self) -> float: ...

    @property
    def backoff_cap_s(self) -> float: ...


# --------------------------------------------------------------------------- cluster nodes


class NodeAddress(NamedTuple):
    """Where one server of a Redis Cluster listens."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> NodeAddress:
        """``host:port``, ``[v6]:port`` or a ``redis://``/``rediss://`` URL."""
        if "://" in text:
            url = urlsplit(text)
            if url.hostname is None:
                raise ValueError(f"no host in cluster node URL: {text!r}")
            return cls(url.hostname, url.port or 6379)
        host, _, port = text.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"not a host:port cluster node address: {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def startup_url_kwargs(startup_nodes: Sequence[str]) -> dict[str, Any]:
    """redis-py connection kwargs of a cluster's first startup node, if it is a URL.

    Credentials, TLS (``connection_class``) and URL query options apply to
    every node; host, port, path and db are dropped (per node, or
    meaningless in a cluster).  ``{}`` when the first node is ``host:port``.
    """
    if not startup_nodes or "://" not in startup_nodes[0]:
        return {}
    kwargs = dict(parse_url(startup_nodes[0]))
    for key in ("host", "port", "path", "db"):
        kwargs.pop(key, None)
    return kwargs


# --------------------------------------------------------------------------- connections


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def enforced_connection_kwargs(options: ConnectionTuning) -> dict[str, Any]:
    """Connection settings the hub's invariants depend on; they override user kwargs."""
    return {
        # RESP2: pub/sub frames are plain replies the session can pair up;
        # under RESP3 redis-py diverts them to a push handler.
        "protocol": 2,
        # Payloads are opaque bytes and must come back untouched.
        "decode_responses": False,
        # No retries: a retried PUBLISH could be a duplicate (see file rules).
        "retry": Retry(NoBackoff(), 0),
        "retry_on_error": [],
        "socket_connect_timeout": options.connect_timeout_s,
        # Only the publish client uses this; the link reads with its own timeouts.
        "socket_timeout": options.socket_timeout_s,
        "health_check_interval": 0,
        "client_name": options.client_name,
    }


async def dial_connection(conn: AbstractConnection, timeout_s: float) -> AbstractConnection:
    """Connect and handshake ``conn`` within ``timeout_s``, or close it and raise."""
    try:
        async with asyncio.timeout(timeout_s):
            # redis-py leaves connect() unannotated.
            await conn.connect()  # type: ignore[no-untyped-call]
    except BaseException:
        try:
            await conn.disconnect(nowait=True)
        except Exception as exc:
            log.debug("closing a failed connection: %s", exc)
        raise
    return conn


#: Opens one connection, handshake done; raises when it cannot within its timeout.
Dial = Callable[[], Awaitable[AbstractConnection]]


@dataclass(frozen=True, slots=True)
class ConnectionFactory:
    """One set of redis-py connection settings, for the pub/sub link and the publish client.

    ``kwargs`` holds everything but the server address when one factory
    serves several servers (a cluster): ``dialer``/``client`` take ``where``
    (``host=``, ``port=``) per server.
    """

    connection_class: type[AbstractConnection]
    kwargs: Mapping[str, Any]
    connect_timeout_s: float

    @classmethod
    def merge(
        cls, *layers: Mapping[str, Any] | None, options: ConnectionTuning
    ) -> ConnectionFactory:
        """Keyword ``layers``, later ones winning, under ``enforced_connection_kwargs``."""
        kwargs: dict[str, Any] = {}
        for layer in layers:
            kwargs.update(layer or {})
        kwargs.update(enforced_connection_kwargs(options))
        connection_class: type[AbstractConnection] = kwargs.pop("connection_class", Connection)
        return cls(connection_class, kwargs, options.connect_timeout_s)

    def dialer(self, **where: Any) -> Dial:
        """A ``Dial`` for a dedicated connection (the pub/sub link's)."""

        async def dial() -> AbstractConnection:
            conn = self.connection_class(**self.kwargs, **where)
            return await dial_connection(conn, self.connect_timeout_s)

        return dial

    def client(self, **where: Any) -> aioredis.Redis:
        """A pooled client (for publishing); the caller closes it."""
        pool = ConnectionPool(connection_class=self.connection_class, **self.kwargs, **where)
        return aioredis.Redis(connection_pool=pool)


# --------------------------------------------------------------------------- backoff


class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [0, min(cap, base * 2**n)]."""

    def __init__(self, base_s: float, cap_s: float) -> None:
        self._base_s = base_s
        self._cap_s = cap_s
        self._failures = 0

    def next_delay_s(self) -> float:
        ceiling = min(self._cap_s, self._base_s * (2 ** min(self._failures, 30)))
        self._failures += 1
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not security

    def reset(self) -> None:
        self._failures = 0


# --------------------------------------------------------------------------- session (sans-IO)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The command and frame names of one flavour of Redis pub/sub."""

    subscribe: str
    unsubscribe: str
    message: bytes
    subscribe_ack: bytes
    unsubscribe_ack: bytes


PLAIN = Dialect("SUBSCRIBE", "UNSUBSCRIBE", b"message", b"subscribe", b"unsubscribe")
SHARDED = Dialect("SSUBSCRIBE", "SUNSUBSCRIBE", b"smessage", b"ssubscribe", b"sunsubscribe")


class SubscribeOutcome(enum.Enum):
    """How one SUBSCRIBE ended, as seen by the caller waiting for it."""

    ACKED = "acked"  # the server confirmed: every later publish is delivered
    DROPPED = "dropped"  # no live connection (or it died first); a reset will follow
    MOVED = "moved"  # refused with MOVED/ASK: another cluster node owns the slot
    REFUSED = "refused"  # refused with another error (ACL...): it will not work


class OpKind(enum.Enum):
    """What an ``Op`` asks of the server; each gets exactly one reply."""

    SUBSCRIBE = "subscribe"  # (S)SUBSCRIBE of one topic
    UNSUBSCRIBE = "unsubscribe"  # (S)UNSUBSCRIBE of one topic
    PING = "ping"  # keep-alive after a silent interval


@dataclass(slots=True, eq=False)
class Op:
    """One command sent on a pub/sub connection that the server will answer once."""

    kind: OpKind
    topic: str
    waiter: asyncio.Future[SubscribeOutcome] | None = None
    resync: bool = False  # part of the re-subscribe that makes the link READY


class ProtocolDesync(Exception):
    """A reply did not match the command it should answer; the connection is dropped."""


class Reply(enum.Enum):
    """What ``PubSubSession`` learned from one non-message frame."""

    SUBSCRIBED = "subscribed"  # a SUBSCRIBE we sent was acknowledged
    UNSUBSCRIBED = "unsubscribed"  # an UNSUBSCRIBE we sent was answered
    LOST = "lost"  # the server unsubscribed us on its own (slot migrated away)
    MOVED = "moved"  # a SUBSCRIBE was refused with MOVED/ASK
    REFUSED = "refused"  # a SUBSCRIBE was refused with another error
    PONG = "pong"  # our keep-alive PING was answered


def _resolve(waiter: asyncio.Future[SubscribeOutcome] | None, outcome: SubscribeOutcome) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(outcome)


class PubSubSession:
    """Pairs replies on one pub/sub connection with the commands that caused them.

    No I/O: the link tells it what was sent (``sent``) and what came back
    (``on_frame``/``on_error``).  Invariant: ``_inflight`` holds, oldest first,
    exactly the commands sent on this connection and not yet answered; each of
    SUBSCRIBE/UNSUBSCRIBE (one topic each) and PING gets exactly one reply.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._inflight: deque[Op] = deque()
        self._resync_left = 0

    @property
    def synced(self) -> bool:
        """True once every re-subscribe command has been answered."""
        return self._resync_left == 0

    def pack(self, op: Op) -> tuple[str, ...]:
        if op.kind is OpKind.SUBSCRIBE:
            return (self._dialect.subscribe, op.topic)
        if op.kind is OpKind.UNSUBSCRIBE:
            return (self._dialect.unsubscribe, op.topic)
        return ("PING",)

    def sent(self, ops: Iterable[Op]) -> None:
        for op in ops:
            self._inflight.append(op)
            if op.resync:
                self._resync_left += 1

    def _pop(self, kind: OpKind, topic: str | None) -> Op:
        if not self._inflight:
            raise ProtocolDesync(f"unsolicited {kind.value} reply for {topic!r}")
        op = self._inflight[0]
        if op.kind is not kind or (topic is not None and op.topic != topic):
            raise ProtocolDesync(f"{kind.value} reply for {topic!r} but waiting for {op}")
        self._inflight.popleft()
        if op.resync:
            self._resync_left -= 1
        return op

    def on_frame(self, frame: object) -> tuple[Reply, str]:
        """Account for one frame that is not a published message."""
        if frame == b"PONG":  # PING outside subscribed mode
            self._pop(OpKind.PING, None)
            return Reply.PONG, ""
        if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[1], bytes):
            raise ProtocolDesync(f"unexpected frame {frame!r}")
        kind, channel = frame[0], frame[1]
        if kind == b"pong":
            self._pop(OpKind.PING, None)
            return Reply.PONG, ""
        topic = channel.decode()
        if kind == self._dialect.subscribe_ack:
            op = self._pop(OpKind.SUBSCRIBE, topic)
            _resolve(op.waiter, SubscribeOutcome.ACKED)
            return Reply.SUBSCRIBED, topic
        if kind == self._dialect.unsubscribe_ack:
            head = self._inflight[0] if self._inflight else None
            if head is not None and head.kind is OpKind.UNSUBSCRIBE and head.topic == topic:
                self._pop(OpKind.UNSUBSCRIBE, topic)
                return Reply.UNSUBSCRIBED, topic
            # Not an answer: the server dropped the subscription itself (a
            # sharded channel whose slot migrated away sends this).
            return Reply.LOST, topic
        raise ProtocolDesync(f"unexpected frame {frame!r}")

    def on_error(self, error: ResponseError) -> tuple[Reply, str]:
        """Account for an error reply (it answers the oldest in-flight command)."""
        if not self._inflight:
            raise ProtocolDesync(f"unsolicited error {error!r}")
        op = self._inflight.popleft()
        if op.resync:
            self._resync_left -= 1
        if op.kind is OpKind.SUBSCRIBE:
            if isinstance(error, MovedError | AskError):
                _resolve(op.waiter, SubscribeOutcome.MOVED)
                return Reply.MOVED, op.topic
            _resolve(op.waiter, SubscribeOutcome.REFUSED)
            return Reply.REFUSED, op.topic
        if op.kind is OpKind.UNSUBSCRIBE:
            # E.g. SUNSUBSCRIBE on a node that no longer owns the slot answers
            # MOVED: either way we are not subscribed there any more.
            return Reply.UNSUBSCRIBED, op.topic
        raise ProtocolDesync(f"PING answered with {error!r}")

    def drop(self) -> None:
        """The connection is gone: release everyone waiting on it."""
        for op in self._inflight:
            _resolve(op.waiter, SubscribeOutcome.DROPPED)
        self._inflight.clear()
        self._resync_left = 0


# --------------------------------------------------------------------------- link


class LinkState(enum.Enum):
    """Life cycle of a ``PubSubLink``: CONNECTING -> SYNCING -> READY -> BACKOFF -> CONNECTING..."""

    IDLE = "idle"  # constructed, task not started
    CONNECTING = "connecting"  # dialling and handshaking; no subscription is active
    SYNCING = "syncing"  # connected; re-subscribes sent, some not yet acknowledged
    READY = "ready"  # every wanted topic acknowledged on the live connection
    BACKOFF = "backoff"  # the last attempt or connection failed; waiting to retry
    CLOSED = "closed"  # close() called; terminal


class LinkListener(Protocol):
    """What a ``PubSubLink`` reports to the hub owning it.  Called on the loop."""

    def on_link_message(self, topic: str, payload: bytes) -> None:
        """A payload arrived on a wanted topic (runs on the link's reader task)."""

    def on_link_state(self, link: PubSubLink, state: LinkState) -> None:
        """The link entered ``state``."""

    def on_link_lost(self, link: PubSubLink, topic: str, reply: Reply) -> None:
        """The server dropped or refused the subscription to a still-wanted ``topic``.

        ``reply`` is ``LOST`` (server-side unsubscribe), ``MOVED`` or
        ``REFUSED``.  The link has already forgotten the topic.
        """



class PubSubLink:
    """One dedicated pub/sub connection to one server, kept alive by its own task.

    The owner says which topics it wants (``add``/``discard``); the link keeps
    the server subscribed to exactly those, across reconnects, and reports
    messages and state changes to its ``LinkListener``.
    """

    def __init__(
        self,
        name: str,
        dial: Dial,
        dialect: Dialect,
        listener: LinkListener,
        options: ConnectionTuning,
    ) -> None:
        self.name = name
        self._dial = dial
        self._dialect = dialect
        self._listener = listener
        self._ping_interval_s = options.ping_interval_s
        self._backoff = Backoff(options.backoff_base_s, options.backoff_cap_s)
        # Topics this link must be subscribed to; the truth that survives reconnects.
        self.wanted: set[str] = set()
        # Latest SUBSCRIBE waiter per topic, for a second subscriber to share.
        self._pending: dict[str, asyncio.Future[SubscribeOutcome]] = {}
        self._state = LinkState.IDLE
        self._session: PubSubSession | None = None
        self._outbox: list[Op] = []
        self._outbox_ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._settled: asyncio.Future[None] | None = None
        self.failures = 0  # consecutive failed attempts/connections
        self.ready_count = 0  # times the link became READY
        # One line when the link goes down, a count at intervals while it
        # stays down, one when it is READY again (not one per attempt).
        self._outage = OutageLog(
            log, f"hub link {name}", traceback=False,
            consequence=f"live delivery paused; reconnecting with backoff "
                        f"(at most {options.backoff_cap_s:g} s between attempts)")

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state in (LinkState.SYNCING, LinkState.READY)

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        self._state = state
        if (
            state in (LinkState.READY, LinkState.BACKOFF, LinkState.CLOSED)
            and self._settled is not None
            and not self._settled.done()
        ):
            self._settled.set_result(None)
        try:
            self._listener.on_link_state(self, state)
        except Exception:
            log.exception("hub link %s: state listener failed", self.name)

    # -- owner API -----------------------------------------------------------

    def start(self) -> None:
        """Start the connection task (returns at once; see ``wait_settled``)."""
        if self._task is not None:
            return
        self._settled = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"hub-link {self.name}"
        )

    async def wait_settled(self) -> None:
        """Return once the first attempt succeeded (READY) or failed (BACKOFF)."""
        if self._settled is not None:
            await asyncio.shield(self._settled)

    def add(self, topic: str) -> asyncio.Future[SubscribeOutcome]:
        """Want ``topic``; the future says when the subscription is active.

        When the link is not connected the future is already ``DROPPED``: the
        topic will be subscribed on reconnect, and a reset follows.
        """
        self.wanted.add(topic)
        waiter: asyncio.Future[SubscribeOutcome] = asyncio.get_running_loop().create_future()
        if self.connected:
            self._pending[topic] = waiter
            waiter.add_done_callback(lambda w: self._forget_pending(topic, w))
            self._enqueue(Op(OpKind.SUBSCRIBE, topic, waiter))
        else:
            waiter.set_result(SubscribeOutcome.DROPPED)
        return waiter

    def _forget_pending(self, topic: str, waiter: asyncio.Future[SubscribeOutcome]) -> None:
        if self._pending.get(topic) is waiter:
            del self._pending[topic]

    def pending(self, topic: str) -> asyncio.Future[SubscribeOutcome] | None:
        """The in-flight SUBSCRIBE waiter for ``topic``, if any."""
        waiter = self._pending.get(topic)
        if waiter is None or waiter.done():
            return None
        return waiter

    def discard(self, topic: str, *, send: bool = True) -> None:
        """Stop wanting ``topic``; nothing more is delivered for it from now on.

        ``send=False`` skips the UNSUBSCRIBE (the server already dropped it).
        """
        if topic not in self.wanted:
            return
        self.wanted.discard(topic)
        self._pending.pop(topic, None)
        if send and self.connected:
            self._enqueue(Op(OpKind.UNSUBSCRIBE, topic))

    async def close(self) -> None:
        """Stop the task and the connection.  Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._set_state(LinkState.CLOSED)

    # -- connection task -----------------------------------------------------

    def _enqueue(self, op: Op) -> None:
        self._outbox.append(op)
        self._outbox_ready.set()

    async def _run(self) -> None:
        while True:
            self._set_state(LinkState.CONNECTING)
            try:
                conn = await self._dial()
            except Exception as exc:
                self.failures += 1
                self._outage.failure(exc, "connect")
            else:
                try:
                    await self._serve(conn)
                except Exception as exc:
                    self.failures += 1
                    self._outage.failure(exc, "connection lost")
                finally:
                    await self._teardown(conn)
            self._set_state(LinkState.BACKOFF)
            await asyncio.sleep(self._backoff.next_delay_s())

    async def _teardown(self, conn: AbstractConnection) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.drop()
        for op in self._outbox:
            _resolve(op.waiter, SubscribeOutcome.DROPPED)
        self._outbox.clear()
        self._outbox_ready.clear()
        self._pending.clear()
        try:
            await conn.disconnect(nowait=True)
        except Exception as exc:
            log.debug("hub link %s: disconnect: %s", self.name, exc)

    async def _serve(self, conn: AbstractConnection) -> None:
        """Resubscribe, then read and write until the connection fails."""
        session = PubSubSession(self._dialect)
        self._session = session
        self._set_state(LinkState.SYNCING)
        for topic in self.wanted:
            self._enqueue(Op(OpKind.SUBSCRIBE, topic, resync=True))
        if not self.wanted:
            self._became_ready()  # nothing to re-subscribe
        reader = asyncio.create_task(self._read_loop(conn, session), name=f"hub-read {self.name}")
        writer = asyncio.create_task(self._write_loop(conn, session), name=f"hub-write {self.name}")
        try:
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
        raise ConnectionError("pub/sub loop ended")  # pragma: no cover - loops never return

    async def _write_loop(self, conn: AbstractConnection, session: PubSubSession) -> None:
        # The only writer: it records ops in the session right before sending
        # them, so the in-flight FIFO is always in wire order.
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            ops, self._outbox = self._outbox, []
            if not ops:
                continue
            session.sent(ops)
            await conn.send_packed_command(
                conn.pack_commands([session.pack(op) for op in ops]), check_health=False
            )

    async def _read_loop(self, conn: AbstractConnection, session: PubSubSession) -> None:
        message = self._dialect.message
        wanted = self.wanted
        listener = self._listener
        awaiting_pong = False
        while True:
            try:
                frame = await conn.read_response(timeout=self._ping_interval_s)
            except ResponseError as error:
                self._on_reply(*session.on_error(error))
                continue
            if frame is None:  # silence for ping_interval_s
                if awaiting_pong:
                    raise TimeoutError(f"no reply to PING within {self._ping_interval_s} s")
                awaiting_pong = True
                self._enqueue(Op(OpKind.PING, ""))
                continue
            awaiting_pong = False
            # Hot path: a published payload.
            if type(frame) is list and len(frame) == 3 and frame[0] == message:
                topic = frame[1].decode()
                if topic in wanted:
                    try:
                        listener.on_link_message(topic, frame[2])
                    except Exception:
                        log.exception("hub link %s: handler failed on %r", self.name, topic)
                continue
            self._on_reply(*session.on_frame(frame))

    def _on_reply(self, reply: Reply, topic: str) -> None:
        session = self._session
        if reply in (Reply.LOST, Reply.MOVED, Reply.REFUSED) and topic in self.wanted:
            # Forget it here; the owner decides where (and whether) it goes.
            self.wanted.discard(topic)
            self._pending.pop(topic, None)
            try:
                self._listener.on_link_lost(self, topic, reply)
            except Exception:
                log.exception("hub link %s: lost-topic listener failed", self.name)
        if self._state is LinkState.SYNCING and session is not None and session.synced:
            self._became_ready()

    def _became_ready(self) -> None:
        self._backoff.reset()
        self._outage.success()
        self.failures = 0
        self.ready_count += 1
        self._set_state(LinkState.READY)


