"""Redis pub/sub ``Hub``, plus the link and batching machinery the cluster hub reuses.

Rules for this file:

* Nothing is retried once it may have reached Redis.  A lost publish is
  allowed (delivery is at most once); a duplicated one is not.  Clients are
  therefore built with zero retries, and a failed pipeline fails its callers.
* A ``PubSubLink``'s tasks never raise.  A handler exception is logged and
  the next payload delivered; every other failure (I/O, timeout, a reply that
  matches no command) ends in "drop the connection, back off, reconnect,
  resubscribe, reset".
* Nothing here blocks the loop; every wait is bounded by a timeout or by a
  connection that is being torn down.

Theory of operation
-------------------
A ``RedisHub`` is one gateway process's view of Redis.

*Subscriptions* are reference-counted per topic; the first reference makes
the backend subscription, the last removes it.  A payload reaches the handler
only while its topic is wanted, so nothing arrives after ``unsubscribe``
returns, even before Redis confirms the UNSUBSCRIBE.

*Receiving* uses one dedicated connection owned by a ``PubSubLink``: a task
that dials, re-sends SUBSCRIBE for every wanted topic, and then runs a reader
and a writer until the connection dies, after which it backs off (jittered
exponential) and starts over.  A ``PubSubSession`` (sans-IO) pairs each reply
with the command that caused it: Redis answers commands on a connection in
order, interleaved with pushed messages, so one FIFO of in-flight commands is
enough to know which topic an ``ssubscribe`` ack or a ``MOVED`` error is about.
The reader pings after ``ping_interval_s`` of silence and declares the
connection dead after a second silent interval, so a half-open TCP connection
is noticed.

*Publishing* goes through a ``PublishBatcher``: publishes issued in the same
loop iteration, or while the previous pipeline is in flight, go out as one
pipeline; exactly one pipeline is in flight at a time, so Redis receives a
process's publishes in call order, which is what gives per-publisher order.

*Resets*: whenever a link fails (enters ``BACKOFF``) a reset becomes owed; it
is paid (``handler.on_reset()``) once every link is ``READY`` again, i.e. once
every wanted topic has been acknowledged by the server, as the contract asks.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, RedisError, ResponseError

from storage.interfaces import HubHandler

__all__ = [
    "PLAIN",
    "SHARDED",
    "Backoff",
    "Dial",
    "Dialect",
    "HubCore",
    "HubOptions",
    "HubStats",
    "HubUnavailable",
    "LinkListener",
    "LinkState",
    "PubSubLink",
    "PubSubSession",
    "PublishBatcher",
    "RedisHub",
    "Reply",
    "SubscribeOutcome",
    "dial_connection",
    "enforced_connection_kwargs",
    "redact_url",
]

log = logging.getLogger(__name__)

#: Bound on dialling plus the connection handshake (AUTH/SELECT/SETINFO).
DEFAULT_CONNECT_TIMEOUT_S = 2.0
#: Bound on one publish pipeline round trip once connected.
DEFAULT_SOCKET_TIMEOUT_S = 5.0
#: Reader silence before it sends PING; a second silent interval with the PING
#: unanswered declares the connection dead (so detection takes at most 2x this).
DEFAULT_PING_INTERVAL_S = 5.0
#: First reconnect delay (upper bound of the jitter); doubles per failure.
DEFAULT_BACKOFF_BASE_S = 0.05
#: Largest reconnect delay: Redis restarts take ~1 s; retrying every 2 s at
#: worst keeps the outage visible to users short without hammering Redis.
DEFAULT_BACKOFF_CAP_S = 2.0
#: Payloads per pipeline when coalescing publishes.  One ``publish_many`` call
#: is never split, whatever its size.
DEFAULT_MAX_BATCH_ITEMS = 1024
#: How long ``close`` waits for the publish pipeline already in flight.
CLOSE_DRAIN_TIMEOUT_S = 5.0


class HubUnavailable(ConnectionError):
    """A publish failed: the payload may or may not have reached the backend.

    A subclass of the built-in ``ConnectionError``, so callers can catch it
    without importing a backend module.
    """


@dataclass(frozen=True, slots=True)
class HubOptions:
    """Tuning shared by ``RedisHub`` and ``RedisClusterHub``; the defaults suit production.

    ``connection_kwargs`` are extra keyword arguments for every redis-py
    connection (``password``, ``username``, ``ssl``...); the hub overrides the
    ones its correctness depends on (RESP2, raw bytes, no retries, timeouts).
    ``on_health_change`` is an observability hook called with the new value of
    ``healthy`` each time it flips (for metrics and readiness probes).
    """

    client_name: str = "parley-hub"
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S
    ping_interval_s: float = DEFAULT_PING_INTERVAL_S
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    connection_kwargs: Mapping[str, Any] | None = None
    on_health_change: Callable[[bool], None] | None = None


@dataclass(slots=True)
class HubStats:
    """Monotonic counters, for metrics and tests; cheap to bump on hot paths."""

    published: int = 0  # payloads Redis acknowledged
    publish_failures: int = 0  # payloads whose publish raised HubUnavailable
    pipelines: int = 0  # publish round trips (pipelines) completed
    delivered: int = 0  # payloads handed to handler.on_message
    reconnects: int = 0  # pub/sub connections established after a failure
    redirects: int = 0  # payloads resent to a new owner after MOVED (cluster)
    resets: int = 0  # handler.on_reset calls


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def enforced_connection_kwargs(options: HubOptions) -> dict[str, Any]:
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


class _OpKind(enum.Enum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PING = "ping"


@dataclass(slots=True, eq=False)
class _Op:
    """One command sent on a pub/sub connection that the server will answer once."""

    kind: _OpKind
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
        self._inflight: deque[_Op] = deque()
        self._resync_left = 0

    @property
    def synced(self) -> bool:
        """True once every re-subscribe command has been answered."""
        return self._resync_left == 0

    def pack(self, op: _Op) -> tuple[str, ...]:
        if op.kind is _OpKind.SUBSCRIBE:
            return (self._dialect.subscribe, op.topic)
        if op.kind is _OpKind.UNSUBSCRIBE:
            return (self._dialect.unsubscribe, op.topic)
        return ("PING",)

    def sent(self, ops: Iterable[_Op]) -> None:
        for op in ops:
            self._inflight.append(op)
            if op.resync:
                self._resync_left += 1

    def _pop(self, kind: _OpKind, topic: str | None) -> _Op:
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
            self._pop(_OpKind.PING, None)
            return Reply.PONG, ""
        if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[1], bytes):
            raise ProtocolDesync(f"unexpected frame {frame!r}")
        kind, channel = frame[0], frame[1]
        if kind == b"pong":
            self._pop(_OpKind.PING, None)
            return Reply.PONG, ""
        topic = channel.decode()
        if kind == self._dialect.subscribe_ack:
            op = self._pop(_OpKind.SUBSCRIBE, topic)
            _resolve(op.waiter, SubscribeOutcome.ACKED)
            return Reply.SUBSCRIBED, topic
        if kind == self._dialect.unsubscribe_ack:
            head = self._inflight[0] if self._inflight else None
            if head is not None and head.kind is _OpKind.UNSUBSCRIBE and head.topic == topic:
                self._pop(_OpKind.UNSUBSCRIBE, topic)
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
        if op.kind is _OpKind.SUBSCRIBE:
            if isinstance(error, MovedError | AskError):
                _resolve(op.waiter, SubscribeOutcome.MOVED)
                return Reply.MOVED, op.topic
            _resolve(op.waiter, SubscribeOutcome.REFUSED)
            return Reply.REFUSED, op.topic
        if op.kind is _OpKind.UNSUBSCRIBE:
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


Dial = Callable[[], Awaitable[AbstractConnection]]


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
        options: HubOptions,
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
        self._outbox: list[_Op] = []
        self._outbox_ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._settled: asyncio.Future[None] | None = None
        self.failures = 0  # consecutive failed attempts/connections
        self.ready_count = 0  # times the link became READY

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
            self._enqueue(_Op(_OpKind.SUBSCRIBE, topic, waiter))
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
            self._enqueue(_Op(_OpKind.UNSUBSCRIBE, topic))

    async def close(self) -> None:
        """Stop the task and the connection.  Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._set_state(LinkState.CLOSED)

    # -- connection task -----------------------------------------------------

    def _enqueue(self, op: _Op) -> None:
        self._outbox.append(op)
        self._outbox_ready.set()

    async def _run(self) -> None:
        while True:
            self._set_state(LinkState.CONNECTING)
            try:
                conn = await self._dial()
            except Exception as exc:
                self.failures += 1
                log.warning(
                    "hub link %s: connect failed (%d in a row): %s", self.name, self.failures, exc
                )
            else:
                try:
                    await self._serve(conn)
                except Exception as exc:
                    self.failures += 1
                    log.warning("hub link %s: connection lost: %s", self.name, exc)
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
            self._enqueue(_Op(_OpKind.SUBSCRIBE, topic, resync=True))
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
                self._enqueue(_Op(_OpKind.PING, ""))
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
        self.failures = 0
        self.ready_count += 1
        self._set_state(LinkState.READY)


# --------------------------------------------------------------------------- publishing


SendBatch = Callable[[list[tuple[str, bytes]]], Awaitable[list[BaseException | None]]]


@dataclass(slots=True, eq=False)
class _PublishRequest:
    items: list[tuple[str, bytes]]
    future: asyncio.Future[None]


class PublishBatcher:
    """Coalesces publishes into ordered pipelines, one pipeline in flight at a time.

    ``send(items)`` performs one round trip (per node) and returns, per item,
    ``None`` or the exception that item failed with; raising fails them all.
    A request fails if any of its items failed.  Cancelling a waiting caller
    does not withdraw its payloads.
    """

    def __init__(self, send: SendBatch, *, max_batch_items: int, stats: HubStats) -> None:
        self._send = send
        self._max_batch_items = max_batch_items
        self._stats = stats
        self._queue: deque[_PublishRequest] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, items: list[tuple[str, bytes]]) -> None:
        if self._closed:
            raise RuntimeError("hub closed")
        if not items:
            return
        loop = asyncio.get_running_loop()
        request = _PublishRequest(items, loop.create_future())
        self._queue.append(request)
        if self._drainer is None:
            # Runs from the next loop iteration: every publish issued in this
            # one joins the same pipeline.
            self._drainer = loop.create_task(self._drain(), name="hub-publisher")
        await request.future

    def _take_batch(self) -> list[_PublishRequest]:
        batch = [self._queue.popleft()]
        size = len(batch[0].items)
        while self._queue and size + len(self._queue[0].items) <= self._max_batch_items:
            request = self._queue.popleft()
            batch.append(request)
            size += len(request.items)
        return batch

    async def _drain(self) -> None:
        batch: list[_PublishRequest] = []
        try:
            while self._queue:
                batch = self._take_batch()
                flat = [item for request in batch for item in request.items]
                try:
                    errors = await self._send(flat)
                except Exception as exc:
                    errors = [exc] * len(flat)
                offset = 0
                for request in batch:
                    n = len(request.items)
                    failed = next((e for e in errors[offset : offset + n] if e is not None), None)
                    offset += n
                    if failed is None:
                        self._stats.published += n
                        if not request.future.done():
                            request.future.set_result(None)
                    else:
                        self._stats.publish_failures += n
                        if not request.future.done():
                            error = HubUnavailable(f"publish failed: {failed}")
                            error.__cause__ = failed
                            request.future.set_exception(error)
                batch = []
        finally:
            self._drainer = None
            # Only reached with requests left when close() cancelled us; the
            # batch in flight may or may not have been published.
            for request in [*batch, *self._queue]:
                if not request.future.done():
                    request.future.set_exception(HubUnavailable("hub closed mid-publish"))
            self._queue.clear()

    async def close(self) -> None:
        """Refuse new publishes; let the pipeline in flight finish (bounded)."""
        self._closed = True
        drainer = self._drainer
        if drainer is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(drainer), CLOSE_DRAIN_TIMEOUT_S)
        except Exception:
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)


# --------------------------------------------------------------------------- shared hub plumbing


class HubCore(abc.ABC):
    """What both Redis hubs share: reference counts, dispatch, health and resets.

    Invariants:

    * ``_refcounts[topic] > 0`` iff the topic is wanted by exactly one link
      (the one ``_link_for`` names) or is in ``_homeless`` (cluster only:
      its slot has no known owner until the next topology refresh).
    * A reset is owed from the moment a payload may have been lost (a link
      failed, a subscription was dropped by the server) until it is paid,
      which happens only when the hub is healthy and no topic is being
      re-subscribed, so "every subscription is active again" holds.
    """

    def __init__(self, options: HubOptions) -> None:
        self._options = options
        self.stats = HubStats()
        self._refcounts: dict[str, int] = {}
        self._handler: HubHandler | None = None
        self._closed = False
        self._reset_owed = False
        self._reported_healthy = False
        # Topic -> the waiter of its re-subscription after the server dropped it.
        self._rehoming: dict[str, asyncio.Future[SubscribeOutcome]] = {}
        # Subscribed topics no link carries yet (slot owner unknown).
        self._homeless: set[str] = set()

    @abc.abstractmethod
    def _links(self) -> Iterable[PubSubLink]:
        """Every link of the hub."""

    @abc.abstractmethod
    def _link_for(self, topic: str) -> PubSubLink | None:
        """The link that carries ``topic``, or None while that is unknown."""

    @abc.abstractmethod
    def _topology_needed(self) -> None:
        """Some topic has no link (or met MOVED): find out who owns what."""

    def _topology_ready(self) -> bool:
        """Hub-specific readiness beyond "every link READY"."""
        return True

    # -- health and resets ---------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while any part of the backend is unreachable (see the ``Hub`` contract)."""
        if self._handler is None or self._closed:
            return False
        return self._topology_ready() and all(
            link.state is LinkState.READY for link in self._links()
        )

    def _check_open(self) -> None:
        if self._handler is None:
            raise RuntimeError("hub not started")
        if self._closed:
            raise RuntimeError("hub closed")

    def _owe_reset(self) -> None:
        if self._handler is not None and not self._closed:
            self._reset_owed = True

    def _health_changed(self) -> None:
        """Report a health flip, and pay an owed reset once everything is active."""
        healthy = self.healthy
        if healthy != self._reported_healthy:
            self._reported_healthy = healthy
            hook = self._options.on_health_change
            if hook is not None:
                try:
                    hook(healthy)
                except Exception:
                    log.exception("hub on_health_change hook failed")
        settled = not self._rehoming and not self._homeless
        if healthy and settled and self._reset_owed and self._handler is not None:
            self._reset_owed = False
            self.stats.resets += 1
            try:
                self._handler.on_reset()
            except Exception:
                log.exception("hub handler on_reset failed")

    def _rehome(self, topic: str) -> None:
        """Subscribe ``topic`` again on the link that now carries it; a reset follows."""
        if topic not in self._refcounts or self._closed:
            return
        self._owe_reset()
        link = self._link_for(topic)
        if link is None:
            self._homeless.add(topic)
            self._topology_needed()
            return
        self._homeless.discard(topic)
        waiter = link.add(topic)
        self._rehoming[topic] = waiter
        waiter.add_done_callback(lambda w: self._rehomed(topic, w))

    def _refused(self, link: PubSubLink, topic: str, reply: Reply) -> bool:
        """Handle a SUBSCRIBE the server rejected (ACL...); True if ``reply`` was that.

        Not retried, since it would be refused again, possibly in a tight loop.
        A waiting ``subscribe`` raises; a topic refused while re-subscribing
        stays inactive until it is unsubscribed and subscribed again.
        """
        if reply is not Reply.REFUSED:
            return False
        log.error("hub %s: the server refused to subscribe %r (see its log)", link.name, topic)
        return True

    def _rehomed(self, topic: str, waiter: asyncio.Future[SubscribeOutcome]) -> None:
        if self._rehoming.get(topic) is waiter:
            del self._rehoming[topic]
        self._health_changed()

    # -- LinkListener --------------------------------------------------------

    def on_link_message(self, topic: str, payload: bytes) -> None:
        handler = self._handler
        if handler is not None and not self._closed:
            self.stats.delivered += 1
            handler.on_message(topic, payload)

    def on_link_state(self, link: PubSubLink, state: LinkState) -> None:
        if state is LinkState.BACKOFF:
            self._owe_reset()
        elif state is LinkState.READY and link.ready_count > 1:
            self.stats.reconnects += 1
        self._health_changed()

    # -- reference counting --------------------------------------------------

    async def _acquire(self, topic: str) -> None:
        """Take one reference; return once the subscription is active (or known lost)."""
        count = self._refcounts.get(topic, 0)
        self._refcounts[topic] = count + 1
        waiter = self._waiter_for(topic, first=count == 0)
        if waiter is None:
            return
        try:
            # Shielded: a second subscriber shares this waiter, and cancelling
            # one caller must not cancel it for the other.
            outcome = await asyncio.shield(waiter)
        except asyncio.CancelledError:
            self._release(topic)
            raise
        if outcome is SubscribeOutcome.REFUSED:
            self._release(topic)
            raise HubUnavailable(f"subscribing to {topic!r} was refused (see the log)")
        if outcome is SubscribeOutcome.MOVED:
            await self._after_moved(topic)

    def _waiter_for(self, topic: str, *, first: bool) -> asyncio.Future[SubscribeOutcome] | None:
        link = self._link_for(topic)
        if link is None:
            # Like subscribing while disconnected: returns now, a reset follows.
            self._homeless.add(topic)
            self._owe_reset()
            self._topology_needed()
            return None
        if first:
            return link.add(topic)
        return link.pending(topic) or self._rehoming.get(topic)

    @abc.abstractmethod
    async def _after_moved(self, topic: str) -> None:
        """A SUBSCRIBE of ``topic`` met MOVED; wait until it is re-homed (or given up)."""

    def _release(self, topic: str) -> None:
        """Drop one reference; an unbalanced release is a no-op."""
        count = self._refcounts.get(topic, 0)
        if count > 1:
            self._refcounts[topic] = count - 1
            return
        if count == 1:
            del self._refcounts[topic]
            self._rehoming.pop(topic, None)
            self._homeless.discard(topic)
            link = self._link_for(topic)
            if link is not None:
                link.discard(topic)


# --------------------------------------------------------------------------- RedisHub


class RedisHub(HubCore):
    """A ``Hub`` over Redis pub/sub (SUBSCRIBE/PUBLISH): one topic per channel.

    ``RedisHub(url, *, options=None)``: ``url`` is a redis-py URL
    (``redis://``, ``rediss://``, ``unix://``).  Beyond the ``Hub`` contract:

    * ``start`` waits for the first connection attempt (at most
      ``connect_timeout_s``) and does not raise if Redis is down: the hub is
      then unhealthy, keeps retrying, and calls ``on_reset`` once connected.
    * ``subscribe`` returns once Redis acknowledged the SUBSCRIBE, or at once
      while disconnected (the topic is subscribed on reconnect, then
      ``on_reset`` is called).
    * ``publish``/``publish_many`` raise ``HubUnavailable`` (a
      ``ConnectionError``) when the payloads may not have reached Redis; they
      are never retried.  Cancelling a publish does not withdraw it.
    * After ``close``, every method but ``close`` raises ``RuntimeError``.
    """

    def __init__(self, url: str, *, options: HubOptions | None = None) -> None:
        super().__init__(options or HubOptions())
        self._url = url
        kwargs: dict[str, Any] = dict(self._options.connection_kwargs or {})
        kwargs.update(parse_url(url))
        kwargs.update(enforced_connection_kwargs(self._options))
        connection_class: type[AbstractConnection] = kwargs.pop("connection_class", Connection)
        self._connection_class = connection_class
        self._connection_kwargs = kwargs
        self._link = PubSubLink(redact_url(url), self._dial, PLAIN, self, self._options)
        self._client = aioredis.Redis(
            connection_pool=ConnectionPool(connection_class=connection_class, **kwargs)
        )
        self._batcher = PublishBatcher(
            self._send_batch, max_batch_items=self._options.max_batch_items, stats=self.stats
        )

    def _links(self) -> Iterable[PubSubLink]:
        return (self._link,)

    def _link_for(self, topic: str) -> PubSubLink:
        return self._link

    async def _dial(self) -> AbstractConnection:
        conn = self._connection_class(**self._connection_kwargs)
        return await dial_connection(conn, self._options.connect_timeout_s)

    async def start(self, handler: HubHandler) -> None:
        """Connect and start delivering to ``handler``.  Called once."""
        if self._handler is not None:
            raise RuntimeError("hub already started")
        if self._closed:
            raise RuntimeError("hub closed")
        self._handler = handler
        self._link.start()
        await self._link.wait_settled()

    async def subscribe(self, topic: str) -> None:
        self._check_open()
        await self._acquire(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._check_open()
        self._release(topic)

    async def publish(self, topic: str, payload: bytes) -> None:
        self._check_open()
        await self._batcher.submit([(topic, payload)])

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._check_open()
        await self._batcher.submit(list(items))

    async def _send_batch(self, items: list[tuple[str, bytes]]) -> list[BaseException | None]:
        pipe = self._client.pipeline(transaction=False)
        for topic, payload in items:
            pipe.publish(topic, payload)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            raise HubUnavailable(f"publish to {redact_url(self._url)} failed: {exc}") from exc
        self.stats.pipelines += 1
        return [r if isinstance(r, BaseException) else None for r in results]

    async def _after_moved(self, topic: str) -> None:
        # A standalone server never answers MOVED; nothing will re-home it.
        return None

    def _topology_needed(self) -> None:
        # One server, one link: there is no topology to learn.
        return None

    def on_link_lost(self, link: PubSubLink, topic: str, reply: Reply) -> None:
        if self._refused(link, topic, reply):
            return
        # Plain pub/sub has no server-side unsubscribe or MOVED; if it happens
        # anyway, subscribe again and tell the consumer it may have missed some.
        log.warning("hub %s: subscription to %r ended by the server (%s)", link.name, topic, reply)
        self._rehome(topic)

    async def close(self) -> None:
        """Stop delivery and release connections.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._batcher.close()
        await self._link.close()
        await self._client.aclose()
        self._refcounts.clear()
        self._health_changed()
