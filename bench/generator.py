"""The load generator: several processes, each a uvloop event loop full of
``bench.roles`` connections, driven by the scenario in the parent.

Protocol between the parent (``Fleet``) and a generator process, over a pipe:

1. the child connects every socket of its ``WorkerSpec`` (bounded
   concurrency, a few retries for refused TCP connects), waits for each
   one's ``ready`` (Parley's ``hello``) and sends ``("ready", info)``;
2. the parent sends ``("go", t0, t_from, t_to, t_end)`` (``time.monotonic_ns()``,
   one clock for all processes): senders start at ``t0``, the measurement
   window is ``[t_from, t_to)``, senders stop at ``t_to``, and receivers keep
   reading until ``t_end`` so in-flight messages land;
3. the child sends ``("done", report)``: counts, latencies (``array('I')`` of
   microseconds), and its own CPU seconds and wall seconds over the window;
4. the parent sends ``("stop",)``; the child closes its sockets and exits.

Each child measures its own CPU share: a share above
``bench.common.SATURATION_SHARE`` means the generator, not the server, may
have been the bottleneck, and the result says so.

The fan-out closed loop (``Publisher``'s window) is closed around *every*
receiver process, not around one socket in the lightly loaded publisher
process: each receiver process picks one of its sockets as its sentinel and
reports every timed message that socket reads, as a datagram (its index and
how many timed messages it has read so far), to a Unix socket the publisher
process binds (``sentinel_path``).  A message counts as delivered for the
window once every sentinel has reported it (they all see the channel in the
same order).  Counts are cumulative, so a datagram dropped on a full queue
(``sentinel_reports_dropped``; Linux queues only ``max_dgram_qlen``, 10 by
default) only delays the window, and the sentinel resends its count 1 ms
later.  Otherwise the loop would
only bound what the *server* holds: a receiver process starved of CPU would
fall seconds behind, unread bytes piling up in its kernel buffers, while a
sentinel in an idle process kept the publisher going.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing as mp
import os
import socket
import struct
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

from bench import textgen
from bench.common import SATURATION_SHARE, raise_nofile_limit
from bench.roles import (
    BenchConn,
    CommandConn,
    EchoConn,
    IdleConn,
    Publisher,
    PublisherConn,
    Receiver,
    Stats,
)
from bench.wsclient import HandshakeRejected, upgrade_request

#: Attempts per socket when the TCP connect itself fails (a full accept backlog).
CONNECT_ATTEMPTS = 4
#: How long one socket may take from TCP connect to ready.
READY_TIMEOUT_S = 60.0
#: A sentinel's report: its process index and its count of timed messages read.
_REPORT = struct.Struct("<BI")
#: When a report could not be queued, send the count again after this long.
REPORT_RETRY_S = 0.001


@dataclass
class ConnTarget:
    """Where and as whom one socket connects."""

    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    channel_id: int = 0  # the channel a sender writes to (ingest)
    port: int = 0  # another port than the spec's; 0: the spec's


@dataclass
class WorkerSpec:
    """Everything one generator process needs (picklable)."""

    name: str
    role: str  # "receiver" | "publisher" | "command" | "echo" | "idle"
    host: str
    port: int
    subprotocol: str | None
    targets: list[ConnTarget]
    wait_hello: bool
    params: dict[str, Any] = field(default_factory=dict)
    connect_concurrency: int = 64


#: Messages in the corpus a generator process cycles through (``text="realistic"``).
CORPUS_MESSAGES = 4096
#: Step between the corpus positions of consecutive sockets of a process.
CORPUS_STRIDE = 97


@functools.cache
def _corpus(seed: int, size: int | None) -> list[str]:
    """One corpus per process and seed: built once (about 60 us a message),
    never on the send path."""
    return textgen.corpus(CORPUS_MESSAGES, seed, size)


def _factory(spec: WorkerSpec, stats: Stats, index: int) -> BenchConn:
    target = spec.targets[index]
    req = upgrade_request(spec.host, target.port or spec.port, target.path, spec.subprotocol,
                          target.headers)
    p = spec.params
    if spec.role == "receiver":
        return Receiver(req, stats, spec.wait_hello)
    if spec.role == "publisher":
        return PublisherConn(req, stats, spec.wait_hello)
    if spec.role == "command":
        texts = (_corpus(p.get("seed", 0), p.get("text_size"))
                 if p.get("text", "fixed") == "realistic" else ())
        return CommandConn(req, stats, spec.wait_hello, op=p["op"], channel_id=target.channel_id,
                           size=p.get("size", 0), window=p.get("window", 1),
                           rate=p.get("rate", 0.0), burst=p.get("burst", 1.0),
                           texts=texts, offset=index * CORPUS_STRIDE)
    if spec.role == "echo":
        return EchoConn(req, stats, spec.wait_hello, size=p["size"], window=p.get("window", 1))
    if spec.role == "idle":
        return IdleConn(req, stats, spec.wait_hello)
    raise ValueError(f"unknown role {spec.role!r}")


class SentinelRelay:
    """The publisher's end of the closed loop (see the module docstring).

    Stands in for the sentinel ``Receiver`` that ``Publisher`` expects: it
    calls ``on_delivery()`` once per message every one of ``sources``
    receiver processes has reported.
    """

    def __init__(self, path: str, sources: int, loop: asyncio.AbstractEventLoop) -> None:
        self.on_delivery: Callable[[], None] | None = None
        self.path = path
        self._counts = [0] * sources
        self._done = 0
        self._loop = loop
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._sock.bind(path)
        self._sock.setblocking(False)
        loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        counts = self._counts
        while True:
            try:
                data = self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                break
            if len(data) == _REPORT.size:
                source, seen = _REPORT.unpack(data)
                if source < len(counts) and seen > counts[source]:
                    counts[source] = seen
        complete = min(counts)
        while self._done < complete:
            self._done += 1
            if self.on_delivery is not None:
                self.on_delivery()

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _sentinel_reporter(path: str, index: int, stats: Stats) -> Callable[[], None]:
    """A receiver process's side of the closed loop: a datagram per message."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(path)  # the publisher bound it before reporting ready
    seen = 0
    retry: asyncio.TimerHandle | None = None

    def send() -> None:
        nonlocal retry
        retry = None
        try:
            sock.send(_REPORT.pack(index, seen))
        except OSError:  # the publisher's queue is full: the next report, or a retry, tells
            stats.extra["sentinel_reports_dropped"] += 1
            retry = loop.call_later(REPORT_RETRY_S, send)

    def report() -> None:
        nonlocal seen
        seen += 1
        if retry is None:
            send()

    return report


def _returning(conn: BenchConn) -> Callable[[], BenchConn]:
    """A protocol factory that hands out ``conn``."""
    return lambda: conn


async def _connect_one(spec: WorkerSpec, stats: Stats, index: int,
                       sem: asyncio.Semaphore, errors: Counter[str]) -> BenchConn | None:
    loop = asyncio.get_running_loop()
    async with sem:
        for attempt in range(CONNECT_ATTEMPTS):
            conn = _factory(spec, stats, index)
            try:
                await loop.create_connection(_returning(conn), spec.host,
                                             spec.targets[index].port or spec.port)
                await asyncio.wait_for(conn.opened, READY_TIMEOUT_S)
                await asyncio.wait_for(conn.ready, READY_TIMEOUT_S)
                return conn
            except HandshakeRejected as exc:
                errors[f"HTTP {exc.status}"] += 1
                return None
            except (OSError, TimeoutError) as exc:
                conn.abort()
                if attempt == CONNECT_ATTEMPTS - 1:
                    errors[type(exc).__name__] += 1
                    return None
                await asyncio.sleep(0.2 * (attempt + 1))
    return None


async def _run(spec: WorkerSpec, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    errors: Counter[str] = Counter()
    sem = asyncio.Semaphore(spec.connect_concurrency)
    started = time.monotonic()
    p = spec.params
    relay: SentinelRelay | None = None
    if spec.role == "publisher":
        relay = SentinelRelay(p["sentinel_path"], p["sentinel_sources"], loop)
    results = await asyncio.gather(*(_connect_one(spec, stats, i, sem, errors)
                                     for i in range(len(spec.targets))))
    conns = [c for c in results if c is not None]
    pipe.send(("ready", {"name": spec.name, "connected": len(conns),
                         "failed": len(spec.targets) - len(conns), "errors": dict(errors),
                         "connect_s": round(time.monotonic() - started, 3)}))
    msg = await loop.run_in_executor(None, pipe.recv)
    if msg[0] != "go":
        return
    _, t0, t_from, t_to, t_end = msg
    stats.t_from, stats.t_to = t_from, t_to

    publisher: Publisher | None = None
    if relay is not None:
        pub_conns = [c for c in conns if isinstance(c, PublisherConn)]
        publisher = Publisher(pub_conns, cast(Receiver, relay), stats, dialect=p["dialect"],
                              channel_id=p.get("channel_id", 0), size=p["size"],
                              window=p["window"], rate=p.get("rate", 0.0),
                              burst=p.get("burst", 1.0), pace=p.get("pace", 0.0))
    elif "sentinel_path" in p and conns:
        sentinel = conns[0]
        assert isinstance(sentinel, Receiver)
        sentinel.on_delivery = _sentinel_reporter(p["sentinel_path"], p["sentinel_index"],
                                                  stats)

    def now() -> int:
        return time.monotonic_ns()

    await asyncio.sleep(max(0.0, (t0 - now()) / 1e9))
    stats.running = True
    if publisher is not None and publisher.conns:
        publisher.start()
    for c in conns:
        if isinstance(c, CommandConn | EchoConn):
            c.start()
    await asyncio.sleep(max(0.0, (t_from - now()) / 1e9))
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(max(0.0, (t_to - now()) / 1e9))
    cpu1, wall1 = time.process_time(), time.monotonic()
    stats.running = False
    if publisher is not None:
        publisher.stop()
    await asyncio.sleep(max(0.0, (t_end - now()) / 1e9))
    if relay is not None:
        relay.close()
    cpu_s = cpu1 - cpu0
    wall_s = max(wall1 - wall0, 1e-9)
    pipe.send(("done", {
        "name": spec.name, "role": spec.role, "connections": len(conns),
        "count": stats.count, "total": stats.total, "sent": stats.sent,
        "latencies_us": stats.latencies, "errors": dict(stats.errors),
        "closed_conns": stats.closed_conns, "close_codes": dict(stats.close_codes),
        "extra": dict(stats.extra), "cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 3),
        "cpu_share": round(cpu_s / wall_s, 3),
    }))
    await loop.run_in_executor(None, pipe.recv)  # ("stop",)
    for c in conns:
        c.close()
    await asyncio.sleep(0.05)


def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    """Entry point of one generator process."""
    raise_nofile_limit()
    import uvloop

    try:
        uvloop.run(_run(spec, pipe))
    except Exception:
        pipe.send(("error", traceback.format_exc()))
        raise


class GeneratorError(RuntimeError):
    """A generator process failed; the message carries its traceback."""


class Fleet:
    """The generator processes of one scenario run."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        ctx = mp.get_context("spawn")  # no inherited event loops or sockets
        self.specs = specs
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(spec, child), name=spec.name,
                               daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def _recv(self, pipe: Connection, want: str, timeout: float) -> dict[str, Any]:
        if not pipe.poll(timeout):
            raise GeneratorError(f"no {want!r} from a generator within {timeout:.0f} s")
        try:
            msg = pipe.recv()
        except EOFError as exc:
            raise GeneratorError("a generator process died") from exc
        if msg[0] == "error":
            raise GeneratorError(msg[1])
        if msg[0] != want:
            raise GeneratorError(f"expected {want!r}, got {msg[0]!r}")
        info: dict[str, Any] = msg[1]
        return info

    def wait_ready(self, timeout: float = 600.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self._recv(p, "ready", max(1.0, deadline - time.monotonic()))
                for p in self.pipes]

    def go(self, warmup_s: float, duration_s: float, drain_s: float,
           lead_s: float = 0.3) -> tuple[int, int, int, int]:
        """Start every process at the same instant; returns (t0, t_from, t_to, t_end)."""
        t0 = time.monotonic_ns() + int(lead_s * 1e9)
        t_from = t0 + int(warmup_s * 1e9)
        t_to = t_from + int(duration_s * 1e9)
        t_end = t_to + int(drain_s * 1e9)
        for p in self.pipes:
            p.send(("go", t0, t_from, t_to, t_end))
        return t0, t_from, t_to, t_end

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self._recv(p, "done", max(1.0, deadline - time.monotonic()))
                for p in self.pipes]

    def stop(self) -> None:
        for p in self.pipes:
            try:
                p.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Generator-side facts for the result: per-process CPU share, saturation."""
    procs = [{"name": r["name"], "role": r["role"], "connections": r["connections"],
              "cpu_s": r["cpu_s"], "cpu_share": r["cpu_share"]} for r in reports]
    shares = [r["cpu_share"] for r in reports]
    errors: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    for r in reports:
        errors.update(r["errors"])
        extra.update(r["extra"])
        closes.update({str(k): v for k, v in r["close_codes"].items()})
    return {
        "processes": procs,
        "max_cpu_share": max(shares) if shares else None,
        "total_cpu_s": round(sum(r["cpu_s"] for r in reports), 3),
        "saturated": bool(shares) and max(shares) > SATURATION_SHARE,
        "saturated_processes": [r["name"] for r in reports
                                if r["cpu_share"] > SATURATION_SHARE],
        "errors": dict(errors),
        "counters": dict(extra),
        "closed_connections": sum(r["closed_conns"] for r in reports),
        "close_codes": dict(closes),
    }


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` nearly equal contiguous slices (no empty ones)."""
    parts = max(1, min(parts, len(items)))
    size, rest = divmod(len(items), parts)
    out: list[list[Any]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < rest else 0)
        out.append(items[start:end])
        start = end
    return out
