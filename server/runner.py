"""Running Parley: the API, the gateway, or both in one process, with a clean
shutdown on SIGINT/SIGTERM (drain sockets, stop HTTP, close pools, stop the
embedded PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import signal
import socket
import sys
from collections.abc import Generator

import uvicorn

from api.app import create_app
from api.health import create_health_app
from gateway.protocol import CONNECT_PATH, CloseCode
from gateway.session import GatewayApp
from gateway.socket_relay import SocketRelay
from gateway.transport import GatewayServer, TransportLimits, serve
from gateway.websocket import WsLimits
from parley.config import Settings
from server.app_events_proc import DispatcherChild
from server.composition import Runtime, build
from server.workers import Worker

log = logging.getLogger("parley")

DRAIN_DEADLINE_S = 10.0  # how long a draining gateway waits for clients to go
RECONNECT_JITTER_MS = (1_000, 10_000)  # spread of reconnect hints, so clients do not stampede


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _reconnect_hint(_: object) -> str:
    return json.dumps({"retry_after_ms": random.randint(*RECONNECT_JITTER_MS)})  # noqa: S311


def banner(settings: Settings, notes: list[str], api_port: int | None, gw_port: int | None,
           full_api: bool = True) -> str:
    h = settings.host
    lines = ["Parley is running."]
    lines += [f"  {n}" for n in notes]
    if api_port is not None and not full_api:
        lines.append(f"  Health:    http://{h}:{api_port}/healthz and /readyz")
    elif api_port is not None:
        lines.append(f"  REST API:  http://{h}:{api_port}"
                     f"  (OpenAPI: http://{h}:{api_port}/openapi.json)")
    if gw_port is not None:
        lines.append(f"  Gateway:   ws://{h}:{gw_port}{CONNECT_PATH}")
    if api_port is not None and full_api:
        a = f"http://{h}:{api_port}"
        lines += [
            "First steps:",
            f"  curl -s {a}/v1/auth/register -H 'content-type: application/json' "
            "-d '{\"email\":\"ada@example.com\",\"password\":\"correct horse\","
            "\"display_name\":\"Ada\"}'",
            f"  curl -s {a}/v1/auth/login -H 'content-type: application/json' "
            "-d '{\"email\":\"ada@example.com\",\"password\":\"correct horse\"}'",
            f"  curl -s {a}/v1/workspaces -H \"authorization: Bearer $TOKEN\" "
            "-H 'content-type: application/json' -d '{\"name\":\"Acme\"}'",
            "  (README.md walks through channels, messages and the WebSocket.)",
        ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


class Running:
    """Started components of one process; ``stop()`` shuts them down in order."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.gateway_app: GatewayApp | None = None
        self.gateway_server: GatewayServer | None = None
        self.uvicorn: _Uvicorn | None = None
        self.api_task: asyncio.Task[None] | None = None
        self.api_port: int | None = None
        self.events_child: DispatcherChild | None = None

    @property
    def gateway_port(self) -> int | None:
        return None if self.gateway_server is None else self.gateway_server.port

    async def stop(self, drain_deadline_s: float = DRAIN_DEADLINE_S) -> None:
        if self.events_child is not None:
            await self.events_child.stop()
            self.events_child = None
        if self.gateway_app is not None:
            # In-flight sends commit and are acked before sockets close.
            await self.gateway_app.quiesce(drain_deadline_s / 2)
        if self.gateway_server is not None:
            await self.gateway_server.drain(CloseCode.SERVER_DRAINING, _reconnect_hint,
                                            drain_deadline_s / 2)
            self.gateway_server = None
        if self.uvicorn is not None and self.api_task is not None:
            self.uvicorn.should_exit = True
            with contextlib.suppress(Exception):
                await self.api_task
            self.uvicorn = None
        if self.gateway_app is not None:
            await self.gateway_app.close()
            self.gateway_app = None
        await self.rt.close()


async def start(rt: Runtime, *, api: bool = True, gateway: bool = True,
                api_port: int | None = None, gateway_port: int | None = None,
                reuse_port: bool = False, events_child: bool = True) -> Running:
    """Start the selected components on ``rt``'s services (ports default to
    the settings; 0 picks a free port).  ``reuse_port``: bind with
    SO_REUSEPORT, so the workers of server/workers.py share the ports.
    ``events_child``: with the API and ``app_events_dispatch`` ``process``,
    start the Events API dispatcher's child process (server/app_events_proc.py;
    False in all but one of a machine's workers)."""
    settings = rt.settings
    svc = rt.services
    running = Running(rt)
    try:
        if gateway:
            running.gateway_app = GatewayApp(svc)
            await running.gateway_app.start()
            running.gateway_server = await serve(
                running.gateway_app, settings.host,
                settings.gateway_port if gateway_port is None else gateway_port,
                TransportLimits(slow_consumer_code=CloseCode.SLOW_CONSUMER), WsLimits(),
                reuse_port=reuse_port)
            running.gateway_app.links.public_url = (
                f"ws://{settings.host}:{running.gateway_server.port}")
        else:
            # No gateway here: the hub brings only the Socket Mode relay's
            # answers (commands and button presses for apps whose sockets
            # are on the gateways).
            relay = SocketRelay(svc.hub)
            svc.app_links = relay
            await svc.hub.start(relay)
        # A gateway-only process still answers /healthz and /readyz on the
        # API port, so orchestrators can probe it the same way.
        if api or gateway:
            port = settings.api_port if api_port is None else api_port
            sock = socket.create_server((settings.host, port), reuse_port=reuse_port)
            running.api_port = sock.getsockname()[1]
            http_app = create_app(svc) if api else create_health_app(svc)
            config = uvicorn.Config(http_app, loop="none", lifespan="off",
                                    log_level="warning", access_log=False, server_header=False)
            running.uvicorn = _Uvicorn(config)
            running.api_task = asyncio.create_task(running.uvicorn.serve(sockets=[sock]))
            while not running.uvicorn.started and not running.api_task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.005)  # uvicorn exposes no "started" event to wait on
            if running.api_task.done():
                running.api_task.result()
            if api:
                rt.start_maintenance()  # stale-upload cleanup; Runtime.close() cancels it
                if events_child and settings.app_events_dispatch == "process":
                    running.events_child = DispatcherChild(settings, rt.db.dsns)
                    await running.events_child.start()
                    rt.notes.append(f"Events API dispatcher: pid {running.events_child.pid}, "
                                    f"nice +{settings.app_events_nice}")
            rt.start_indexer()  # search, off the commit path; Runtime.close() cancels it
    except BaseException:
        await running.stop(drain_deadline_s=0.1)
        raise
    return running


def tune_gc(gen0_threshold: int) -> None:
    """Garbage-collector settings for a long-running server process.

    Why: a gateway holds thousands of long-lived objects per thousand
    sockets, and each message allocates a few dozen short-lived ones.  At
    Python's default (a young collection every 700 net allocations, an older
    one every 10 of those) the collector ran so often that it took a third of
    the gateway's CPU under ingest load (py-spy --native: ``gc_collect_main``
    33% of samples).  So: collect once, freeze what start-up built (modules,
    the app, pools: never garbage) out of the collector's sight, and collect
    the young generation every ``gen0_threshold`` allocations instead.
    Reference counting still frees almost everything at once; the collector
    only finds cycles, and finds them later.  ``gen0_threshold`` 0 changes
    nothing.
    """
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


async def run(settings: Settings, *, api: bool = True, gateway: bool = True,
              worker: Worker | None = None) -> None:
    """Serve until SIGINT/SIGTERM.  ``worker``: this process is one of a
    supervisor's workers (server/workers.py): it shares the ports, leaves
    migrations to the supervisor, and reports ready instead of a banner."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rt = await build(settings, migrate=worker is None)
    # One Events API dispatcher child per machine: worker 0's with --workers.
    running = await start(rt, api=api, gateway=gateway, reuse_port=worker is not None,
                          events_child=worker is None or worker.index == 0)
    tune_gc(settings.gc_gen0_threshold)
    name = "Parley" if worker is None else f"Parley worker {worker.index}"
    try:
        if worker is None:
            print(banner(settings, rt.notes, running.api_port, running.gateway_port, api),
                  flush=True)
        else:
            worker.report_ready()
        await stop.wait()
        if worker is None:
            print("Stopping: draining connections...", file=sys.stderr, flush=True)
    finally:
        await running.stop()
        print(f"{name} stopped.", file=sys.stderr, flush=True)
