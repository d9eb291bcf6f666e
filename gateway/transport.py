"""The asyncio adapter: TCP connections in, ConnectionHandler callbacks out.

This is the only I/O in the WebSocket stack.  It feeds bytes to the sans-IO
``HandshakeParser`` and ``ServerConnection``, writes what they return, and
dispatches messages.  It runs on uvloop or plain asyncio.

Rules:

1. One ``WsTransport`` (an ``asyncio.Protocol``) per TCP connection, with
   ``__slots__`` and no per-connection task or timer: an idle open
   connection holds a handful of Python objects (target: <= 6 KB including
   the event loop's transport).  Buffers are allocated only while used.
2. Timers (handshake timeout, server pings, idle timeout, close-handshake
   timeout) live in one ``_TimerWheel`` per server.  Activity only updates a
   timestamp; the wheel re-checks a connection when its earliest deadline
   comes, so an active connection costs one check per ping interval.
3. Outbound writes are coalesced: ``send()`` queues the frame in the
   connection's ``core_ext.Outbound`` (WsTransport's C-level base class) and,
   on its first frame, lists the connection in the server's
   ``OutboundQueue``.  The server flushes listed connections from loop
   callbacks (one ``loop.call_soon`` per server, not per connection), in the
   order they were listed, at most ``flush_slice_connections`` per loop
   iteration; each gets exactly one ``transport.write`` of everything queued
   for it by then.  Slicing matters for fan-out: writing 1,000 sockets costs
   milliseconds of syscalls, and between two slices the loop reads sockets,
   so commands, database replies (a commit is one round trip, and its
   reply needs a loop iteration) and acks are not held up by a whole
   broadcast.  We do not write straight to the socket when the buffer is
   empty (the picows way): that would save one loop iteration of latency
   but break coalescing, which is what keeps fan-out bursts to one syscall
   per socket.
4. Flow control never waits: when the bytes we hold plus the transport's
   buffer exceed ``max_outbound_bytes``, the queued frames are dropped and the
   connection is closed with ``slow_consumer_code``.  ``fanout_write`` runs
   the same check on the Outbound in C (the transport's buffer is asked only
   when the queued bytes come within its high-water mark of the limit, or
   while it has paused us: see ``core_ext.fanout_py``).
5. Automatic replies (pongs) of a read are sent before the application's
   answer to a message that follows them in that read, so a pong for a ping
   sent between fragments precedes the echo of the message.
6. Handler contract: ``on_upgrade`` is awaited (reading is paused meanwhile);
   ``on_open``, ``on_message`` and ``on_close`` are plain calls that must not
   block.  ``on_close`` is called exactly once for every connection that got
   ``on_open``, as soon as the WebSocket stops being OPEN (close sent,
   received, failure or TCP loss), always from a fresh loop callback (never
   re-entrantly from ``send``/``close``).  No message is dispatched after it.
   A handler exception is logged and closes that connection with 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, cast

from core_ext import Kernels, Outbound, OutboundQueue
from gateway.handshake import (
    DEFAULT_MAX_HEADER_BYTES,
    HandshakeError,
    HandshakeParser,
    UpgradeRequest,
    accept_response,
    reject_response,
)
from gateway.websocket import (
    VALID_CLOSE_CODES,
    BinaryMessage,
    CloseReceived,
    ConnectionState,
    ProtocolFailure,
    ServerConnection,
    TextMessage,
    WsLimits,
)

__all__ = [
    "Accept",
    "ConnectionHandler",
    "GatewayServer",
    "Reject",
    "TransportLimits",
    "WsTransport",
    "serve",
]

log = logging.getLogger("parley.gateway.transport")

_MiB: Final = 1024 * 1024
CLOSE_ABNORMAL: Final = 1006  # reported (never sent) when TCP dies without a close frame
CLOSE_INTERNAL_ERROR: Final = 1011
_WHEEL_SLOTS: Final = 512  # wheel span = slots * tick; later deadlines are re-checked
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Per-connection I/O limits and timers (one instance per server)."""

    #: Bytes we hold plus the transport buffer above which a connection is a
    #: slow consumer and gets closed.
    max_outbound_bytes: int = 4 * _MiB
    #: Close code for slow consumers (Parley passes its 4002).
    slow_consumer_code: int = 1008
    #: Send a ping after this many seconds without receiving anything.
    ping_interval_s: float = 20.0
    #: Close a connection that sent nothing for this many seconds.
    idle_timeout_s: float = 60.0
    #: Close code for idle connections (1011, as the websockets library does).
    idle_close_code: int = 1011
    #: Abort a connection that has not completed its upgrade within this.
    handshake_timeout_s: float = 10.0
    #: After our close frame (or rejection), abort TCP if still open after this.
    close_timeout_s: float = 5.0
    #: Largest HTTP upgrade request head (431 beyond).
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    #: Timer wheel resolution: deadlines fire up to this late.
    timer_tick_s: float = 0.5
    #: Connections written per loop iteration when flushing (rule 3).  64 is
    #: about 1 ms of write syscalls at ~16 us each on the 2-vCPU benchmark VM,
    #: so a database round trip or a command waits at most that long behind a
    #: broadcast (each extra iteration is one call_soon and one epoll_wait).
    flush_slice_connections: int = 64

    def __post_init__(self) -> None:
        for code in (self.slow_consumer_code, self.idle_close_code):
            if code not in VALID_CLOSE_CODES:
                raise ValueError(f"close code {code} may not be sent")
        if min(self.ping_interval_s, self.idle_timeout_s, self.handshake_timeout_s,
               self.close_timeout_s, self.timer_tick_s) <= 0:
            raise ValueError("timeouts and intervals must be positive")
        if self.flush_slice_connections < 1:
            raise ValueError("flush_slice_connections must be >= 1")


@dataclass(frozen=True, slots=True)
class Accept:
    """``on_upgrade`` result: send 101.  ``context`` becomes ``conn.context``."""

    subprotocol: str | None = None
    headers: Headers = ()
    context: object = None


@dataclass(frozen=True, slots=True)
class Reject:
    """``on_upgrade`` result: answer with an HTTP error and close."""

    status: int
    code: str
    message: str
    headers: Headers = ()


class ConnectionHandler(Protocol):
    """The application behind the gateway (see rule 6 of the module docstring)."""

    async def on_upgrade(self, request: UpgradeRequest) -> Accept | Reject:
        """Authenticate/route an upgrade request; may await I/O."""
        ...

    def on_open(self, conn: WsTransport) -> None:
        """The 101 was sent; ``conn`` may send from now on."""
        ...

    def on_message(self, conn: WsTransport, data: bytes | str) -> None:
        """A complete message: ``str`` for text, ``bytes`` for binary."""
        ...

    def on_close(self, conn: WsTransport, code: int, reason: str) -> None:
        """The connection stopped being OPEN (see ``WsTransport.close_code``)."""
        ...


class _Phase(enum.IntEnum):
    """Life cycle of one TCP connection."""

    HANDSHAKE = 0  # reading the HTTP upgrade request
    UPGRADING = 1  # request parsed; on_upgrade running; reading paused
    OPEN = 2  # WebSocket open: messages flow both ways
    CLOSING = 3  # our close frame or rejection was sent, or TCP close was asked
    CLOSED = 4  # the TCP connection is gone


# Hot-path aliases: on Python 3.11 every ``_Phase.OPEN`` is an attribute
# lookup through EnumType (~200 ns), and a read of one heartbeat did four of
# them plus two union objects built by ``isinstance(x, A | B)``; a module
# global is one dict lookup (gateway/websocket.py does the same).
_OPEN, _CLOSING, _HANDSHAKE, _UPGRADING = (_Phase.OPEN, _Phase.CLOSING, _Phase.HANDSHAKE,
                                           _Phase.UPGRADING)
_WS_CLOSED = ConnectionState.CLOSED
_MESSAGE_EVENTS = (TextMessage, BinaryMessage)
_END_EVENTS = (CloseReceived, ProtocolFailure)


class _TimerWheel:
    """A hashed timer wheel: one loop timer per server, not per connection.

    A connection sits in at most one slot (``conn._timer_slot``).  When its
    slot comes up, ``conn._on_timer(now)`` runs and returns its next deadline
    or None.  A deadline within the span (512 ticks) is called back at most
    one tick late and never early.  A farther one is parked in the last slot
    and called back early, so ``_on_timer`` must compare its deadlines with
    ``now`` and simply return them when they are not due yet.
    """

    __slots__ = ("_handle", "_loop", "_origin", "_slots", "_tick", "_tick_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float) -> None:
        self._loop = loop
        self._tick_s = tick_s
        self._origin = loop.time()
        self._tick = 0  # every tick <= this one has been processed
        self._slots: list[set[WsTransport]] = [set() for _ in range(_WHEEL_SLOTS)]
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def schedule(self, conn: WsTransport, when: float) -> None:
        tick = math.ceil((when - self._origin) / self._tick_s)
        tick = min(max(tick, self._tick + 1), self._tick + _WHEEL_SLOTS - 1)
        slot = tick % _WHEEL_SLOTS
        if conn._timer_slot == slot:
            return
        self.cancel(conn)
        self._slots[slot].add(conn)
        conn._timer_slot = slot

    def cancel(self, conn: WsTransport) -> None:
        if conn._timer_slot >= 0:
            self._slots[conn._timer_slot].discard(conn)
            conn._timer_slot = -1

    def _arm(self) -> None:
        when = self._origin + (self._tick + 1) * self._tick_s
        self._handle = self._loop.call_at(when, self._run)

    def _run(self) -> None:
        now = self._loop.time()
        target = math.floor((now - self._origin) / self._tick_s)
        # After a stall longer than the span, one pass over every slot suffices.
        self._tick = max(self._tick, target - _WHEEL_SLOTS)
        while self._tick < target:
            self._tick += 1
            slot = self._tick % _WHEEL_SLOTS
            due = self._slots[slot]
            if not due:
                continue
            self._slots[slot] = set()
            for conn in due:
                conn._timer_slot = -1
                try:
                    deadline = conn._on_timer(now)
                except Exception:
                    log.exception("timer callback failed; aborting the connection")
                    conn.abort()
                    continue
                if deadline is not None:
                    self.schedule(conn, deadline)
        self._arm()


class WsTransport(Outbound, asyncio.Protocol):
    """One client TCP connection: handshake, then a WebSocket.

    The application sees it as ``conn`` in ConnectionHandler callbacks.  It
    is also a FanoutTarget (``get_write_buffer_size`` + ``write``), and an
    ``Outbound``, which ``fanout_write`` queues frames to without calling it.
    Its ``_ob_open`` is true exactly while ``_phase`` is OPEN (``_set_phase``).
    """

    __slots__ = (
        "_app_state",
        "_close_code",
        "_close_reason",
        "_deadline",
        "_early",
        "_handshake",
        "_last_ping",
        "_last_recv",
        "_phase",
        "_server",
        "_timer_slot",
        "_transport",
        "_upgrade_task",
        "_ws",
        "context",
        "subprotocol",
    )

    def __init__(self, server: GatewayServer) -> None:
        Outbound.__init__(self)  # the queue of frames not yet written (rule 3)
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._phase = _Phase.HANDSHAKE
        self._handshake: HandshakeParser | None = None
        self._upgrade_task: asyncio.Task[None] | None = None
        self._early: bytes | None = None  # frames that arrived with the request
        self._ws: ServerConnection | None = None
        self._last_recv = 0.0  # loop time of the last bytes received
        self._last_ping = 0.0  # loop time of our last ping
        self._deadline = 0.0  # abort time in HANDSHAKE/UPGRADING/CLOSING
        self._timer_slot = -1  # owned by the server's _TimerWheel
        self._app_state = 0  # 0: not opened, 1: on_open called, 2: on_close scheduled
        self._close_code = CLOSE_ABNORMAL
        self._close_reason = ""
        #: The handler's ``Accept.context``.
        self.context: object = None
        #: The negotiated subprotocol, or None.
        self.subprotocol: str | None = None

    # --- public API ------------------------------------------------------------
    @property
    def handler(self) -> ConnectionHandler:
        """The server's ConnectionHandler."""
        return self._server.handler

    @property
    def is_open(self) -> bool:
        """True while messages can be sent."""
        return self._phase is _Phase.OPEN

    @property
    def close_code(self) -> int:
        """Code that ended the WebSocket: the peer's if it closed first (1005
        without a code), ours if we closed or failed it, 1006 if TCP died
        without a close frame.  1006 while still open."""
        return self._close_code

    @property
    def remote_address(self) -> object:
        """The peer's address as the transport reports it (computed lazily)."""
        return self.get_extra_info("peername")

    def get_extra_info(self, name: str, default: object = None) -> object:
        """The underlying transport's ``get_extra_info`` (``"socket"``, ``"peername"``...)."""
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    def send(self, frame: bytes) -> bool:
        """Queue a pre-built frame (from ``core_ext.build_frame``).

        Returns False and drops it when the connection is not OPEN, or when it
        made the connection a slow consumer (which closes it).  Frames queued in
        one loop iteration go out in one ``transport.write``.
        """
        if self._phase is not _Phase.OPEN:
            return False
        return self._queue(frame)

    write = send  # FanoutTarget

    def send_message(self, data: bytes | str) -> bool:
        """Send ``str`` as a text message, ``bytes`` as a binary one (see ``send``)."""
        ws = self._ws
        if self._phase is not _Phase.OPEN or ws is None:
            return False
        frame = ws.send_text(data) if isinstance(data, str) else ws.send_binary(data)
        return self._queue(frame)

    def get_write_buffer_size(self) -> int:
        """Bytes queued here plus bytes in the transport's buffer (FanoutTarget)."""
        return self._ob_buffered()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; abort TCP if the peer does not finish it
        within ``close_timeout_s``.  Before the upgrade: closes TCP.  Idempotent."""
        if self._phase is _Phase.OPEN:
            self._start_close(code, reason)
        elif self._phase in (_Phase.HANDSHAKE, _Phase.UPGRADING):
            self._close_transport()

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio.Protocol --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, only alike.
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        self._ob_attach(transport, server.outbound)
        server.connections.add(self)
        self._deadline = server.loop.time() + server.limits.handshake_timeout_s
        server.wheel.schedule(self, self._deadline)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase is _OPEN or phase is _CLOSING:
            if self._ws is not None:
                self._last_recv = self._server.loop.time()
                self._on_frames(data)
        elif phase is _HANDSHAKE:
            self._on_handshake_bytes(data)
        elif phase is _UPGRADING:
            self._early = data if self._early is None else self._early + data

    def eof_received(self) -> bool | None:
        return None  # half-close means the peer is gone: let asyncio close

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_phase(_Phase.CLOSED)
        server = self._server
        server.wheel.cancel(self)
        server.forget(self)
        if self._upgrade_task is not None:
            self._upgrade_task.cancel()
            self._upgrade_task = None
        self._ob_drop()
        self._ws = None
        self._early = None
        self._notify_close(CLOSE_ABNORMAL, "")

    # --- handshake -----------------------------------------------------------------
    def _on_handshake_bytes(self, data: bytes) -> None:
        if self._handshake is None:
            self._handshake = HandshakeParser(self._server.limits.max_header_bytes)
        try:
            request = self._handshake.feed(data)
        except HandshakeError as exc:
            self._handshake = None
            self._reject(exc.status, exc.code, exc.message, exc.headers)
            return
        if request is None:
            return
        self._handshake = None
        self._set_phase(_Phase.UPGRADING)
        self._early = request.leftover or None
        assert self._transport is not None
        self._transport.pause_reading()
        self._upgrade_task = self._server.loop.create_task(self._upgrade(request))

    async def _upgrade(self, request: UpgradeRequest) -> None:
        server = self._server
        try:
            decision = await server.handler.on_upgrade(request)
        except Exception:
            log.exception("on_upgrade failed")
            decision = Reject(500, "internal_error", "the upgrade failed")
        self._upgrade_task = None
        if self._phase is not _Phase.UPGRADING:
            return  # timed out, drained or disconnected meanwhile
        if isinstance(decision, Reject):
            self._reject(decision.status, decision.code, decision.message, decision.headers)
            return
        try:
            response = accept_response(request, decision.subprotocol, decision.headers)
        except ValueError:
            log.exception("on_upgrade returned an invalid Accept")
            self._reject(500, "internal_error", "the upgrade failed")
            return
        transport = self._transport
        assert transport is not None
        transport.write(response)
        self.subprotocol = decision.subprotocol
        self.context = decision.context
        self._ws = ServerConnection(server.ws_limits, kernels=server.kernels)
        self._set_phase(_Phase.OPEN)
        now = server.loop.time()
        self._last_recv = self._last_ping = now
        self._deadline = 0.0
        server.wheel.schedule(self, now + min(server.limits.ping_interval_s,
                                              server.limits.idle_timeout_s))
        self._app_state = 1
        try:
            server.handler.on_open(self)
        except Exception:
            log.exception("on_open failed")
            self.close(CLOSE_INTERNAL_ERROR, "internal error")
        if self._upgraded():
            # Also when on_open already closed: the peer's close must be read.
            transport.resume_reading()
            early, self._early = self._early, None
            if early and self._ws is not None:
                self._on_frames(early)

    def _reject(self, status: int, code: str, message: str, headers: Headers = ()) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(reject_response(status, code, message, headers))
        self._close_transport()

    # --- WebSocket ------------------------------------------------------------------
    def _on_frames(self, data: bytes) -> None:
        ws = self._ws
        assert ws is not None
        events = ws.receive_data(data)
        handler = self._server.handler
        failed = False
        for event in events:
            if isinstance(event, _MESSAGE_EVENTS):
                if self._phase is not _OPEN:
                    break  # the handler closed the connection meanwhile
                replies = ws.data_to_send()  # rule 5: pongs before the answer
                if replies and not self._queue(replies):
                    break
                payload = event.text if isinstance(event, TextMessage) else event.data
                try:
                    handler.on_message(self, payload)
                except Exception:
                    log.exception("on_message failed")
                    self.close(CLOSE_INTERNAL_ERROR, "internal error")
            elif isinstance(event, _END_EVENTS) and self._phase is _OPEN:
                # The peer closed, or failed: ws recorded the code.
                self._close_code = ws.close_code or CLOSE_ABNORMAL
                self._close_reason = ws.close_reason
                failed = isinstance(event, ProtocolFailure)
        replies = ws.data_to_send()
        if replies:
            self._queue(replies, check_limit=False)
        if ws.state is _WS_CLOSED:
            if failed:
                self._linger()
            else:
                self._finish()

    def _linger(self) -> None:
        """We failed the connection (1002/1007/1009): our close frame is queued,
        but the peer may still be sending (the rest of an oversized message).
        Closing TCP now, with unread bytes in the kernel's receive buffer,
        makes the kernel answer with RST, and an RST can destroy our close
        frame before the peer reads it (RFC 6455 7.1.1 asks the server to
        close TCP first, after the close frame is delivered).  So: send the
        close frame and FIN (half-close), discard whatever still arrives, and
        let the peer's own close or the close deadline end the connection."""
        self.flush()
        self._set_phase(_Phase.CLOSING)
        self._ws = None  # data_received now discards
        transport = self._transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        self._arm_close_deadline()
        self._notify_close(self._close_code, self._close_reason)

    def _upgraded(self) -> bool:
        """OPEN or CLOSING: the WebSocket exists and its bytes must be read."""
        return self._phase is _OPEN or self._phase is _CLOSING

    def _set_phase(self, phase: _Phase) -> None:
        self._phase = phase
        self._ob_open = phase is _Phase.OPEN

    def _queue(self, data: bytes, check_limit: bool = True) -> bool:
        """Queue ``data`` for the next flush (rule 3).  With ``check_limit`` on
        an OPEN connection, False if it made the connection a slow consumer:
        the queued frames were dropped and the connection closed (rule 4,
        ``_ob_overflow``)."""
        return self._ob_queue_frame(data, check_limit)

    def _ob_overflow(self) -> None:
        self._start_close(self._server.limits.slow_consumer_code, "slow consumer")

    def flush(self) -> None:
        """Write everything queued now, in one ``transport.write``."""
        self._ob_write_now()

    def _start_close(self, code: int, reason: str) -> None:
        ws = self._ws
        assert ws is not None
        self._queue(ws.close(code, reason), check_limit=False)
        self._set_phase(_Phase.CLOSING)
        self._close_code = code
        self._close_reason = reason
        self._arm_close_deadline()
        self._notify_close(code, reason)

    def _finish(self) -> None:
        """The closing handshake is complete or failed: flush and close TCP."""
        if self._phase is _Phase.OPEN:
            self._set_phase(_Phase.CLOSING)
        self._close_transport()
        self._notify_close(self._close_code, self._close_reason)

    def _close_transport(self) -> None:
        self.flush()
        self._set_phase(_Phase.CLOSING)
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # already closing: keep the first deadline
        transport.close()  # FIN once the buffer drains
        self._arm_close_deadline()

    def _arm_close_deadline(self) -> None:
        server = self._server
        self._deadline = server.loop.time() + server.limits.close_timeout_s
        server.wheel.schedule(self, self._deadline)

    def _notify_close(self, code: int, reason: str) -> None:
        if self._app_state != 1:
            return
        self._app_state = 2
        self._close_code = code
        self._close_reason = reason
        self._server.loop.call_soon(self._deliver_close, code, reason)

    def _deliver_close(self, code: int, reason: str) -> None:
        try:
            self._server.handler.on_close(self, code, reason)
        except Exception:
            log.exception("on_close failed")

    # --- timers ---------------------------------------------------------------------
    def _on_timer(self, now: float) -> float | None:
        """Called by the wheel at (or just after) a deadline; returns the next."""
        phase = self._phase
        if phase is _Phase.OPEN:
            limits = self._server.limits
            idle_due = self._last_recv + limits.idle_timeout_s
            if now >= idle_due:
                self._start_close(limits.idle_close_code, "idle timeout")
                return self._deadline
            ping_due = max(self._last_recv, self._last_ping) + limits.ping_interval_s
            if now >= ping_due:
                assert self._ws is not None
                self._last_ping = now
                self._queue(self._ws.send_ping(b""))
                if self._phase is not _Phase.OPEN:
                    return self._deadline
                ping_due = now + limits.ping_interval_s
            return min(idle_due, ping_due)
        if phase is _Phase.CLOSED:
            return None
        if now >= self._deadline:
            self.abort()
            return None
        return self._deadline


class GatewayServer:
    """A listening socket and every connection accepted from it."""

    __slots__ = (
        "_all_gone",
        "_server",
        "connections",
        "handler",
        "kernels",
        "limits",
        "loop",
        "outbound",
        "wheel",
        "ws_limits",
    )

    def __init__(
        self,
        handler: ConnectionHandler,
        limits: TransportLimits,
        ws_limits: WsLimits,
        loop: asyncio.AbstractEventLoop,
        kernels: Kernels | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.ws_limits = ws_limits
        self.loop = loop
        self.kernels = kernels
        #: Every live TCP connection, whatever its phase.
        self.connections: set[WsTransport] = set()
        self.wheel = _TimerWheel(loop, limits.timer_tick_s)
        #: Connections with frames to write, in turn order (rule 3).
        self.outbound = OutboundQueue(self._schedule_flush, limits.max_outbound_bytes,
                                      self._write_failed)
        self._server: asyncio.Server | None = None
        self._all_gone: asyncio.Event | None = None

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def sockets(self) -> tuple[object, ...]:
        """The listening sockets."""
        return () if self._server is None else tuple(self._server.sockets)

    def _schedule_flush(self) -> None:
        """The OutboundQueue got work while idle: flush at the next iteration."""
        self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """One slice of the flush (rule 3); the rest in later iterations."""
        if self.outbound.flush(self.limits.flush_slice_connections):
            self.loop.call_soon(self._flush)

    @staticmethod
    def _write_failed(conn: Outbound, exc: Exception) -> None:
        log.error("write to a connection failed; aborting it", exc_info=exc)
        if isinstance(conn, WsTransport):
            conn.abort()

    def forget(self, conn: WsTransport) -> None:
        """Drop a connection whose TCP connection is gone."""
        self.connections.discard(conn)
        if not self.connections and self._all_gone is not None:
            self._all_gone.set()

    async def drain(
        self, code: int, reason_for: Callable[[WsTransport], str], deadline_s: float
    ) -> None:
        """Stop accepting, close every connection with ``code``, and wait.

        Open connections get a close frame with ``code`` and ``reason_for(conn)``;
        connections still in the handshake get 503.  Whatever is left after
        ``deadline_s`` seconds is aborted.  Then the server is closed.
        ValueError (before anything is done) for a code that may not be sent.
        """
        if code not in VALID_CLOSE_CODES:
            raise ValueError(f"close code {code} may not be sent")
        self._stop_listening()
        for conn in list(self.connections):
            if conn.is_open:
                try:
                    reason = reason_for(conn)
                except Exception:
                    log.exception("reason_for failed")
                    reason = ""
                conn.close(code, reason)
            elif conn._phase in (_Phase.HANDSHAKE, _Phase.UPGRADING):
                if conn._upgrade_task is not None:
                    conn._upgrade_task.cancel()
                    conn._upgrade_task = None
                conn._reject(503, "server_draining", "the server is shutting down")
        if self.connections:
            self._all_gone = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), deadline_s)
        self.close()
        await self.wait_closed()

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    def close(self) -> None:
        """Stop accepting and abort every connection now (no closing handshake)."""
        self._stop_listening()
        for conn in list(self.connections):
            conn.abort()
        self.wheel.stop()

    async def wait_closed(self) -> None:
        """Wait until the listening sockets are closed and connections are gone."""
        if self._server is not None:
            await self._server.wait_closed()
        # Aborted transports report connection_lost on a later iteration.
        for _ in range(10):
            if not self.connections:
                break
            await asyncio.sleep(0)

    async def _start(self, host: str | None, port: int, reuse_port: bool, backlog: int) -> None:
        self._server = await self.loop.create_server(
            lambda: WsTransport(self), host, port, reuse_port=reuse_port or None,
            backlog=backlog,
        )
        self.wheel.start()


async def serve(
    handler: ConnectionHandler,
    host: str | None,
    port: int,
    transport_limits: TransportLimits | None = None,
    ws_limits: WsLimits | None = None,
    *,
    reuse_port: bool = False,
    backlog: int = 1024,
    kernels: Kernels | None = None,
) -> GatewayServer:
    """Listen on ``host:port`` (port 0: any free port) and serve WebSockets.

    ``reuse_port`` sets SO_REUSEPORT so several processes can share the port.
    ``kernels`` picks a core_ext implementation (default: core_ext's choice).
    """
    server = GatewayServer(
        handler,
        transport_limits if transport_limits is not None else TransportLimits(),
        ws_limits if ws_limits is not None else WsLimits(),
        asyncio.get_running_loop(),
        kernels,
    )
    await server._start(host, port, reuse_port, backlog)
    return server
