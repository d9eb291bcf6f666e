"""What each generator connection does: the roles of the load generator.

Every role runs inside one generator process (``bench.generator``) on its
event loop and reports into that process's ``Stats``.  Timing rule: an event
counts when its *send* time lies in the measurement window ``[t_from, t_to)``
(monotonic ns), so a throughput is "what was sent in the window and arrived",
independent of when the receiver got around to reading it.

Roles:

``Receiver``      counts timed deliveries (fanout subscribers); optional callback
                  (the publisher's sentinel).
``Publisher``     the fanout publisher: a closed loop of at most ``window``
                  messages not yet seen by its sentinel receiver, spread over
                  one or more sockets each paced by a token bucket (Parley
                  limits commands per connection).
``CommandConn``   a paced closed loop of ``send`` commands -> ``ack`` (ingest);
                  built with ``op="heartbeat"`` it is a ``HeartbeatConn``.
``HeartbeatConn`` presence: paced ref-less heartbeats (no reply), then one
                  heartbeat with a ref whose ``heartbeat_ack`` confirms them.
``EchoConn``      round trips: send, wait for the echo, send again.
``IdleConn``      holds the socket (answers pings).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from bench.wsclient import OP_BINARY, WsClient, read_timestamp, timed_text
from core_ext import build_frame
from parley.ratelimit import TokenBucket

#: Latencies are stored as unsigned 32-bit microseconds (up to ~71 minutes).
_MAX_US = 2**32 - 1
#: Envelope types a role cares about, pre-encoded for a cheap prefix test.
_CREATED = b"message.created"
#: If the publisher's window makes no progress for this long, it is reset
#: (messages were lost: rejected, or their sockets closed) and counted as a stall.
STALL_RESET_S = 3.0


class Stats:
    """Counters of one generator process (all roles in it share one)."""

    def __init__(self) -> None:
        self.t_from = 0
        self.t_to = 0
        self.running = False  # senders may send
        self.count = 0  # events whose send time lies in the window
        self.total = 0  # every timed event
        self.sent = 0  # messages/commands sent in the window
        self.latencies = array("I")
        self.errors: Counter[str] = Counter()
        self.closed_conns = 0
        self.close_codes: Counter[int] = Counter()
        self.extra: Counter[str] = Counter()

    def record(self, sent_ns: int, now_ns: int) -> None:
        self.total += 1
        if self.t_from <= sent_ns < self.t_to:
            self.count += 1
            us = (now_ns - sent_ns) // 1000
            self.latencies.append(us if 0 <= us < _MAX_US else _MAX_US)


class Bucket:
    """The server's own token bucket (``parley.ratelimit``) on the bench's
    clock, so the generator paces exactly as the server limits (rate 0 =
    unlimited)."""

    __slots__ = ("_bucket",)

    def __init__(self, rate: float, burst: float) -> None:
        self._bucket = (TokenBucket(rate, max(1.0, burst), time.monotonic()) if rate > 0
                        else None)

    def take(self) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        return 0.0 if self._bucket is None else self._bucket.take(time.monotonic())


class BenchConn(WsClient):
    """A generator socket: knows its process Stats and when it is ready."""

    def __init__(self, request: tuple[bytes, str], stats: Stats, wait_hello: bool) -> None:
        super().__init__(request)
        self.stats = stats
        self.wait_hello = wait_hello
        self.ready: asyncio.Future[None] = self.loop.create_future()

    def on_open(self) -> None:
        if not self.wait_hello and not self.ready.done():
            self.ready.set_result(None)

    def on_message(self, payload: bytes, now_ns: int) -> None:
        if not self.ready.done():
            self.ready.set_result(None)  # Parley's hello: subscribed to every channel
            return
        self.handle(payload, now_ns)

    def handle(self, payload: bytes, now_ns: int) -> None:
        """A message after the hello."""

    def on_closed(self) -> None:
        self.stats.closed_conns += 1
        if self.close_code is not None:
            self.stats.close_codes[self.close_code] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before ready"))


class IdleConn(BenchConn):
    """Holds the connection; counts whatever arrives."""

    def handle(self, payload: bytes, now_ns: int) -> None:
        self.stats.extra["unexpected_messages"] += 1


class Receiver(BenchConn):
    """A fan-out subscriber: times every payload that carries a timestamp.

    The hot path of the generator: ``data_received`` is inlined (one parser
    call, one ``find`` and one ``int`` per delivery, no method calls), so a
    receiver process costs as little CPU per delivery as Python allows.
    """

    on_delivery: Callable[[], None] | None = None

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self.on_delivery is not None or not self.ready.done():
            super().data_received(data)
            return
        now = time.monotonic_ns()
        try:
            frames = parser.feed(data)
        except Exception as exc:
            self.abort(exc)
            return
        stats = self.stats
        t_from = stats.t_from
        t_to = stats.t_to
        for frame in frames:
            op = frame.opcode
            if (op != 2 and op != 1) or not frame.fin:
                self._control(frame)
                continue
            payload = frame.payload
            i = payload.find(b"~ts=")
            if i < 0:
                stats.extra["untimed_messages"] += 1
                continue
            sent = int(payload[i + 4:i + 23])
            stats.total += 1
            if t_from <= sent < t_to:
                stats.count += 1
                us = (now - sent) // 1000
                stats.latencies.append(us if 0 <= us < _MAX_US else _MAX_US)

    def _control(self, frame: Any) -> None:
        """A control or fragmented frame: the generic path handles it."""
        op = frame.opcode
        if op == 0x9:
            self.send_frame(0xA, frame.payload)
        elif op == 0x8:
            payload = frame.payload
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.send_frame(0x8, payload[:2])
            if self.transport is not None:
                self.transport.close()
        else:
            self.stats.errors["fragmented_message"] += 1

    def handle(self, payload: bytes, now_ns: int) -> None:
        sent = read_timestamp(payload)
        if sent < 0:
            self.stats.extra["untimed_messages"] += 1
            return
        self.stats.record(sent, now_ns)
        if self.on_delivery is not None:
            self.on_delivery()


class PublisherConn(BenchConn):
    """One socket of the publisher (sends; Parley also delivers to it)."""

    publisher: Publisher

    def handle(self, payload: bytes, now_ns: int) -> None:
        if payload.find(b"~ts=") >= 0:
            # Parley delivers the message to every member socket, the sender's too.
            self.stats.extra["publisher_deliveries"] += 1
            return
        try:
            event = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        except Exception:
            self.stats.errors["undecodable"] += 1
            return
        kind = event.get("t") if isinstance(event, dict) else None
        if kind == "ack":
            self.stats.extra["acks"] += 1
        elif kind == "error":
            code = (event.get("d") or {}).get("code", "?")
            self.stats.errors[str(code)] += 1
            self.publisher.lost()


class Publisher:
    """Closed-loop fan-out publisher over ``conns`` (see the module docstring)."""

    def __init__(self, conns: list[PublisherConn], sentinel: Receiver, stats: Stats, *,
                 dialect: str, channel_id: int, size: int, window: int, rate: float,
                 burst: float, pace: float = 0.0) -> None:
        self.conns = conns
        # Open-loop pacing: at most ``pace`` messages/s in total (0 = closed loop only).
        self.pace = Bucket(pace, max(1.0, pace * 0.01)) if pace > 0 else None
        self.stats = stats
        self.dialect = dialect
        self.channel_id = channel_id
        self.size = size
        self.window = window
        self.buckets = [Bucket(rate, burst) for _ in conns]
        self.outstanding = 0
        self.next = 0
        self.ref = 0
        self.timer: asyncio.TimerHandle | None = None
        self.progress_at = time.monotonic()
        self.loop = asyncio.get_running_loop()
        for c in conns:
            c.publisher = self
        sentinel.on_delivery = self.delivered
        self._watchdog = self.loop.call_later(1.0, self._watch)

    def start(self) -> None:
        self.pump()

    def stop(self) -> None:
        self._watchdog.cancel()
        if self.timer is not None:
            self.timer.cancel()

    def delivered(self) -> None:
        if self.outstanding > 0:
            self.outstanding -= 1
        self.progress_at = time.monotonic()
        self.pump()

    def lost(self) -> None:
        self.delivered()

    def _watch(self) -> None:
        if self.outstanding and time.monotonic() - self.progress_at > STALL_RESET_S:
            self.stats.extra["publisher_stalls"] += 1
            self.outstanding = 0
            self.progress_at = time.monotonic()
            self.pump()
        self._watchdog = self.loop.call_later(1.0, self._watch)

    def _timer_fired(self) -> None:
        self.timer = None
        self.pump()

    def pump(self) -> None:
        stats = self.stats
        n = len(self.conns)
        while stats.running and self.outstanding < self.window:
            if self.pace is not None:
                wait = self.pace.take()
                if wait > 0.0:
                    if self.timer is None:
                        self.timer = self.loop.call_later(wait, self._timer_fired)
                    return
            wait = 0.0
            for _ in range(n):
                i = self.next
                self.next = (i + 1) % n
                wait = self.buckets[i].take()
                if wait == 0.0:
                    break
            else:
                if self.timer is None:
                    stats.extra["publisher_rate_waits"] += 1
                    self.timer = self.loop.call_later(wait, self._timer_fired)
                return
            conn = self.conns[i]
            now = time.monotonic_ns()
            text = timed_text(self.size, now)
            if self.dialect == "parley":
                self.ref += 1
                conn.send(msgpack.packb({"op": "send", "ref": self.ref,
                                         "d": {"channel_id": self.channel_id, "text": text}}))
            else:
                conn.send(b"P" + text.encode())
            self.outstanding += 1
            if stats.t_from <= now < stats.t_to:
                stats.sent += 1


class PacedConn(BenchConn):
    """A closed loop of ``window`` requests in flight, paced by a token bucket."""

    def __init__(self, request: tuple[bytes, str], stats: Stats, wait_hello: bool, *, window: int,
                 rate: float, burst: float) -> None:
        super().__init__(request, stats, wait_hello)
        self.window = window
        self.bucket = Bucket(rate, burst)
        self.inflight = 0
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.pump()

    def _timer_fired(self) -> None:
        self.timer = None
        self.pump()

    def pump(self) -> None:
        stats = self.stats
        while stats.running and self.inflight < self.window:
            wait = self.bucket.take()
            if wait > 0.0:
                if self.timer is None:
                    self.timer = self.loop.call_later(wait, self._timer_fired)
                return
            self.inflight += 1
            now = time.monotonic_ns()
            if stats.t_from <= now < stats.t_to:
                stats.sent += 1
            self.fire(now)

    def done_one(self) -> None:
        if self.inflight > 0:
            self.inflight -= 1
        self.pump()

    def fire(self, now_ns: int) -> None:
        raise NotImplementedError


class EchoConn(PacedConn):
    """Round trips: the payload comes back; its timestamp gives the RTT."""

    def __init__(self, request: tuple[bytes, str], stats: Stats, wait_hello: bool, *, size: int,
                 window: int = 1) -> None:
        super().__init__(request, stats, wait_hello, window=window, rate=0, burst=0)
        self.size = size

    def fire(self, now_ns: int) -> None:
        self.send(b"E" + timed_text(self.size - 1, now_ns).encode())

    def handle(self, payload: bytes, now_ns: int) -> None:
        sent = read_timestamp(payload)
        if sent >= 0:
            self.stats.record(sent, now_ns)
        self.done_one()


def _decode_event(payload: bytes, stats: Stats) -> dict[str, Any] | None:
    """A server event as a dict, or None (counted when undecodable)."""
    try:
        event = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:
        stats.errors["undecodable"] += 1
        return None
    return event if isinstance(event, dict) else None


class CommandConn(PacedConn):
    """Parley commands with replies: ``send`` (ingest).

    ``CommandConn(..., op="heartbeat")`` returns a ``HeartbeatConn`` (the
    generator builds every ``command`` socket through this class).
    """

    def __new__(cls, *args: Any, op: str = "send", **kwargs: Any) -> CommandConn:
        if cls is CommandConn and op in HEARTBEAT_MODES:
            cls = HeartbeatConn
        return super().__new__(cls)

    def __init__(self, request: tuple[bytes, str], stats: Stats, wait_hello: bool, *, op: str,
                 channel_id: int, size: int, window: int, rate: float, burst: float,
                 texts: Sequence[str] = (), offset: int = 0) -> None:
        """``texts``: message bodies sent in turn from ``offset`` (a corpus of
        ``bench.textgen``, shared by the sockets of a process); empty: the
        fixed ``timed_text`` of ``size`` bytes."""
        super().__init__(request, stats, wait_hello, window=window, rate=rate, burst=burst)
        self.op = op
        self.channel_id = channel_id
        self.size = size
        self.texts = texts
        self.offset = offset
        self.ref = 0
        # client_msg_id is unique per (user, id): sockets of one user must not collide.
        self.cmid_prefix = os.urandom(6).hex()
        self.sent_at: dict[int, int] = {}

    def fire(self, now_ns: int) -> None:
        self.ref += 1
        self.sent_at[self.ref] = now_ns
        texts = self.texts
        text = (texts[(self.offset + self.ref) % len(texts)] if texts
                else timed_text(self.size, now_ns))
        self.send(msgpack.packb({"op": "send", "ref": self.ref, "d": {
            "channel_id": self.channel_id, "text": text,
            "client_msg_id": f"{self.cmid_prefix}-{self.ref}"}}))

    def handle(self, payload: bytes, now_ns: int) -> None:
        if payload.find(_CREATED, 0, 40) >= 0:
            self.stats.extra["deliveries"] += 1  # our own message, delivered to us
            return
        event = _decode_event(payload, self.stats)
        if event is None:
            return
        kind = event.get("t")
        ref = event.get("ref")
        sent = self.sent_at.pop(ref, None) if isinstance(ref, int) else None
        if kind == "ack" and sent is not None:
            self.stats.record(sent, now_ns)
            self.done_one()
        elif kind == "error":
            code = (event.get("d") or {}).get("code", "?")
            self.stats.errors[str(code)] += 1
            if sent is not None:
                self.done_one()
        else:
            self.stats.extra[f"other:{kind}"] += 1


#: The ``ref`` of the final heartbeat of a ``HeartbeatConn``.
FINAL_REF = 1
#: The ``ref`` of every other heartbeat in the ``heartbeat+ack`` mode.
PACED_REF = 0
#: ``op`` values that make a ``HeartbeatConn``: ref-less heartbeats, or (for
#: comparison, the client pattern before ref-less heartbeats) every heartbeat
#: with a ref and acknowledged.  The mode rides on ``op`` because the
#: generator passes a fixed set of parameters to command sockets.
HEARTBEAT_MODES = ("heartbeat", "heartbeat+ack")


class HeartbeatConn(CommandConn):
    """Presence as clients do it: ref-less heartbeats, evenly paced, no reply.

    One heartbeat every ``1 / rate`` seconds (the first at a random phase, so
    sockets do not beat in step), each a pre-built masked frame and one
    write: the generator spends as little per heartbeat as it can, since it
    shares the machine with the server.  The server answers nothing, so
    nothing is counted as it goes.  Once the senders stop, the next tick sends
    one heartbeat *with* a ref; the server handles a connection's frames in
    order, so its ``heartbeat_ack`` proves every earlier heartbeat on the
    socket was absorbed.  Then, and only then, the socket's heartbeats count:
    those sent in the window go to ``stats.count``, all of them to
    ``stats.total``, minus any the server rejected (an ``error`` without a
    ref).  A socket whose ack never arrives counts nothing: the scenario
    reports the shortfall (``stats.sent`` counts every heartbeat sent in the
    window).  Latency samples are the final heartbeat's round trips, one
    per socket: how far behind the server was when the load stopped.

    With ``op="heartbeat+ack"`` every heartbeat carries ``ref`` 0, so the
    server decodes it and answers each one (``extra.paced_acks`` counts the
    answers): the cost of replying, measured the same way.
    """

    def __init__(self, request: tuple[bytes, str], stats: Stats, wait_hello: bool, *, op: str,
                 channel_id: int, size: int, window: int, rate: float, burst: float,
                 texts: Sequence[str] = (), offset: int = 0) -> None:
        # ``texts``/``offset``: accepted because the generator builds every
        # command socket alike; a heartbeat carries no text.
        super().__init__(request, stats, wait_hello, op=op, channel_id=channel_id, size=size,
                         window=window, rate=rate, burst=burst)
        if rate <= 0:
            raise ValueError("heartbeats need a rate > 0 per socket")
        self.interval = 1.0 / rate
        self.frame = b""  # the ref-less heartbeat, masked with this socket's key
        self.beats = 0  # heartbeats sent
        self.in_window = 0  # ... of them in the window
        self.rejected = 0  # error replies without a ref (rejected heartbeats)
        self.rejected_in_window = 0  # ... of them received in the window
        self.final_sent_ns = 0  # when the final heartbeat (with a ref) left; 0: not yet

    def start(self) -> None:
        cmd: dict[str, Any] = {"op": "heartbeat"}
        if self.op == "heartbeat+ack":
            cmd["ref"] = PACED_REF
        self.frame = build_frame(OP_BINARY, msgpack.packb(cmd), True, self.mask_key)
        self.timer = self.loop.call_later(random.uniform(0.0, self.interval), self._beat)

    def _beat(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        stats = self.stats
        if not stats.running:
            if self.beats and not self.final_sent_ns:
                self.final_sent_ns = time.monotonic_ns()
                self.send(msgpack.packb({"op": "heartbeat", "ref": FINAL_REF, "d": {}}))
            return
        transport.write(self.frame)
        self.beats += 1
        now = time.monotonic_ns()
        if stats.t_from <= now < stats.t_to:
            self.in_window += 1
            stats.sent += 1
        self.timer = self.loop.call_later(self.interval, self._beat)

    def handle(self, payload: bytes, now_ns: int) -> None:
        event = _decode_event(payload, self.stats)
        if event is None:
            return
        kind = event.get("t")
        ref = event.get("ref")
        stats = self.stats
        if kind == "heartbeat_ack" and ref == FINAL_REF and self.final_sent_ns:
            stats.count += self.in_window - self.rejected_in_window
            stats.total += self.beats - self.rejected
            stats.extra["final_acks"] += 1
            us = (now_ns - self.final_sent_ns) // 1000
            stats.latencies.append(us if 0 <= us < _MAX_US else _MAX_US)
        elif kind == "heartbeat_ack" and ref == PACED_REF:
            stats.extra["paced_acks"] += 1
        elif kind == "error":
            code = (event.get("d") or {}).get("code", "?")
            stats.errors[str(code)] += 1
            if ref is None or ref == PACED_REF:
                self.rejected += 1
                if stats.t_from <= now_ns < stats.t_to:
                    self.rejected_in_window += 1
                    stats.extra["rejected_in_window"] += 1
        else:
            stats.extra[f"other:{kind}"] += 1
