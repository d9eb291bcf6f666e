"""The Events API dispatcher in a process of its own (``app_events_dispatch``
``process``, the default): ``parley app-events``, started as a child by the
API process.

Why: sending events to apps costs CPU (building, encoding and signing the
envelope, the request, the cursor write: about 1.5 ms of CPU per event
measured, docs/benchmarks.md "Events API (issue 15)"), and 100 apps in a
busy channel are 100 events per message.  On the event loop of the process
that also holds people's sockets, that work queues in front of people's
messages: their p99 rose from 74 ms to 520-1,190 ms with 100 apps on one
loaded 2-core machine.  In a child process it runs on another core, and at
a lower CPU priority (nice ``app_events_nice``, default 10: the Linux
scheduler then gives it about a tenth of the CPU weight of the gateway),
so when the cores are short it is the apps' events that wait, never
people's messages.  Apps are the ones that can wait: their events are
durable rows with cursors, delivered at least once.

Invariants:

* One dispatcher child per machine's serving processes: a single process
  starts one; with ``--workers N``, worker 0 does.  More dispatchers (on
  other machines, ``parley app-events``) are harmless: they lease (app,
  channel) pairs (``AppEventStore.claim``).
* The child runs with exactly the parent's settings (``settings_env``),
  the parent's real database URLs (the embedded PostgreSQL's included) and
  ``app_events_dispatch=inline``; it migrates nothing (the parent did).
* The child exits when its parent is gone (it watches ``os.getppid()``), so
  a SIGKILLed server leaves no orphan sending events.
* A child that dies is started again after a backoff (1 s, doubling to
  30 s); meanwhile events wait in PostgreSQL and nothing is lost.  A child
  that cannot start the first time fails the server's start-up instead.
* The failing-app check (which turns an app's events off and DMs its
  admins) runs in the API processes (``Runtime.start_maintenance``), not in
  the child: the DM is posted where the hub reaches people's sockets, even
  when that hub is in-process.  The child only counts tries and adds them
  to the store (``DeliveryHealth.flush``), where the check reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from parley.config import Settings
from server.settings import settings_env

log = logging.getLogger("parley")

ENV_PARENT_PID = "PARLEY_APP_EVENTS_PARENT_PID"  # set in a child: the pid to outlive never
READY_LINE = b"parley-app-events-ready\n"
READY_TIMEOUT_S = 60.0  # imports, pools and the id lease; PostgreSQL is already up
STOP_TIMEOUT_S = 10.0  # a stopping child cancels its sends; then it is killed
RESTART_BACKOFF_S = (1.0, 30.0)  # first and longest wait before restarting a dead child
PARENT_CHECK_S = 1.0  # how often a child looks for its parent


class DispatcherChild:
    """The parent's handle on its dispatcher child: ``start()`` returns once
    the child is ready (or raises), ``stop()`` ends it; in between a dead
    child is restarted."""

    def __init__(self, settings: Settings, dsns: Sequence[str]) -> None:
        env = dict(os.environ)
        env.update(settings_env(settings))
        env["PARLEY_DATABASE_URL"] = ",".join(dsns)
        env["PARLEY_APP_EVENTS_DISPATCH"] = "inline"
        env["PARLEY_WORKERS"] = "1"
        env[ENV_PARENT_PID] = str(os.getpid())
        env.pop("PARLEY_WORKER_INDEX", None)  # the child is no worker of a supervisor
        env.pop("PARLEY_WORKER_READY_FD", None)
        self._env = env
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.starts = 0  # processes started (restarts included), for tests and logs

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise(), name="parley-app-events-child")

    async def _spawn(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "app-events", env=self._env,
            stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        self.starts += 1
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                while (line := await proc.stdout.readline()) != READY_LINE:
                    if not line:
                        raise RuntimeError(
                            f"the Events API dispatcher exited at start (status "
                            f"{await proc.wait()})")
                    sys.stdout.buffer.write(line)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        self._proc = proc

    async def _supervise(self) -> None:
        backoff = RESTART_BACKOFF_S[0]
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None and proc.stdout is not None
            while line := await proc.stdout.readline():  # nothing but stray prints
                sys.stdout.buffer.write(line)
            status = await proc.wait()
            if self._stopping.is_set():
                return
            log.warning("the Events API dispatcher (pid %s) exited with status %s; "
                        "starting it again in %.0f s (events wait in PostgreSQL)",
                        proc.pid, status, backoff)
            await asyncio.sleep(backoff)
            try:
                await self._spawn()
                backoff = RESTART_BACKOFF_S[0]
            except Exception:
                # _proc still holds the dead process: the loop comes back here at once
                log.exception("restarting the Events API dispatcher failed")
                backoff = min(backoff * 2, RESTART_BACKOFF_S[1])

    async def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def run(settings: Settings) -> None:
    """``parley app-events``: the HTTP Events API dispatcher alone, until
    SIGINT/SIGTERM (or, as a child, until its parent is gone)."""
    from server.composition import build

    parent = os.environ.get(ENV_PARENT_PID)
    if parent is not None and settings.app_events_nice > 0:
        os.nice(settings.app_events_nice)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rt = await build(settings, migrate=parent is None)
    try:
        rt.start_dispatcher(check_health=False)
        if parent is not None:
            sys.stdout.buffer.write(READY_LINE)
            sys.stdout.flush()
        else:
            print("Parley Events API dispatcher is running. Press Ctrl-C to stop.", flush=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PARENT_CHECK_S)
            if parent is not None and os.getppid() != int(parent):
                log.warning("the Events API dispatcher's parent is gone; stopping")
                break
    finally:
        await rt.close()
