"""``fanout`` and ``crossnode``: one publisher, N subscribers in one channel.

The publisher writes a monotonic timestamp into every message; each
subscriber's latency is delivery time minus that timestamp.  The publisher
is a closed loop: at most ``--window`` messages not yet seen by every
receiver process's sentinel (one of the N subscribers in each process; see
``bench.generator``), so the offered load follows what is delivered, by the
server *and* read by the receivers, instead of piling up in the server's or
the kernel's buffers.  The publisher's process holds only the publisher's
sockets, so its pacing (``--rate``) is not disturbed by reading.

Parley specifics:

* Parley limits commands per connection (``ws_commands_per_s``, 50/s, and
  ``ws_command_burst``, 200, by default), so "the publisher" is one account
  with ``--publishers`` sockets (at most 32, the per-user cap), each paced by
  a client-side token bucket just under the limit the server runs with
  (``--server-setting ws_commands_per_s=...`` raises both).  Parley
  delivers every message to every member socket, the publisher's own
  sockets included: the deliveries counted here are those to the N
  subscribers only; ``extra.publisher_deliveries`` has the rest.
* Every message is committed to PostgreSQL before it is fanned out.

``crossnode`` runs two gateway processes on one Redis: the publisher on
gateway A (``parley serve``), every subscriber on gateway B (``parley
gateway``), so each message crosses Redis pub/sub once.
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from bench.common import Result
from bench.generator import WorkerSpec, split
from bench.scenarios.base import (
    SUBPROTOCOL,
    ExternalServer,
    Options,
    Run,
    build_result,
    gateway_address,
    measure,
    server_settings,
    server_settings_env,
)
from bench.scenarios.population import peer_targets, populate
from bench.servers import Monitored, ParleyProcess
from server.settings import load_settings

#: Client-side pace per publisher socket, as fractions of the gateway's
#: per-connection command budget (``ws_commands_per_s``/``ws_command_burst``,
#: 50/s and 200 by default): just under it, so the server never closes a
#: publisher for its rate.
PUBLISH_RATE_SHARE = 0.96
PUBLISH_BURST_SHARE = 0.75


def publisher_budget(opts: Options) -> tuple[float, float]:
    """(messages/s, burst) per publisher socket for the server the run
    starts, ``--server-setting`` included (defaults for ``--url``)."""
    s = load_settings(environ=server_settings_env(server_settings(opts.server_settings)))
    return s.ws_commands_per_s * PUBLISH_RATE_SHARE, s.ws_command_burst * PUBLISH_BURST_SHARE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subscribers", type=int, default=1000, help="subscriber sockets")
    p.add_argument("--size", type=int, default=100, help="message text bytes")
    p.add_argument("--window", type=int, default=32,
                   help="messages in flight (not yet seen by the sentinel)")
    p.add_argument("--publishers", type=int, default=24,
                   help="Parley: publisher sockets of the one publishing account (<= 32)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="publish at most this many messages/s in total (open loop, still "
                        "capped by --window); 0: as fast as the closed loop goes")


def _specs(pub_at: tuple[str, int], sub_at: tuple[str, int], subs: list[Any],
           pubs: list[Any], *, wait_hello: bool, dialect: str, channel_id: int, size: int,
           window: int, procs: int, rate: float, sentinel_path: str,
           pace: float = 0.0, burst: float = 1.0) -> list[WorkerSpec]:
    """The publisher's process (``pubs`` at ``pub_at``) and ``procs`` receiver
    processes (``subs`` at ``sub_at``), each with a sentinel (the first
    socket that connects) reporting to ``sentinel_path``."""
    chunks = split(subs, procs)
    specs = [WorkerSpec("publisher", "publisher", *pub_at, SUBPROTOCOL, pubs, wait_hello,
                        {"dialect": dialect, "channel_id": channel_id, "size": size,
                         "window": window, "rate": rate,
                         "burst": burst if rate else 1.0, "pace": pace,
                         "sentinel_path": sentinel_path, "sentinel_sources": len(chunks)})]
    for i, chunk in enumerate(chunks):
        specs.append(WorkerSpec(f"subscribers-{i}", "receiver", *sub_at, SUBPROTOCOL, chunk,
                                wait_hello, {"sentinel_path": sentinel_path,
                                             "sentinel_index": i}))
    return specs


def _sentinel_path(run: Run) -> str:
    """Where the publisher's process hears from the sentinels (a Unix socket)."""
    return str(run.workdir / "sentinels.sock")


def _finish(run: Run, m: Any, *, scenario: str, server: str, n: int, args: argparse.Namespace,
            publishers: int, extra: dict[str, Any]) -> Result:
    deliveries = m.count()
    sent = sum(r["sent"] for r in m.reports)
    expected = sent * n
    counters: dict[str, int] = {}
    for r in m.reports:
        for k, v in r["extra"].items():
            counters[k] = counters.get(k, 0) + v
    extra = dict(extra, messages_sent=sent,
                 messages_per_s=round(sent / run.opts.duration, 1),
                 delivery_ratio=round(deliveries / expected, 4) if expected else None,
                 publisher_deliveries=counters.get("publisher_deliveries", 0),
                 publisher_rate_waits=counters.get("publisher_rate_waits", 0))
    if counters.get("publisher_rate_waits", 0) > 10:
        run.notes.append("the publisher waited for the per-connection rate limit "
                         f"{counters['publisher_rate_waits']} times: its sockets' command "
                         "budget, not the server, may have capped the message rate")
    if expected and deliveries < 0.99 * expected:
        run.notes.append(f"only {deliveries / expected:.1%} of the expected deliveries arrived "
                         "within the drain time")
    return build_result(run, m, scenario=scenario, server=server,
                        parameters={"subscribers": n, "size": args.size,
                                    "window": args.window, "publishers": publishers,
                                    "rate": getattr(args, "rate", 0.0)},
                        throughput_count=deliveries, unit="deliveries/s", extra=extra)


def run_fanout(opts: Options, args: argparse.Namespace) -> Result:
    n = args.subscribers
    if n < 1:
        raise SystemExit("--subscribers must be >= 1")
    with Run(opts, "fanout") as run:
        servers: list[Monitored]
        if opts.server != "parley":
            peer = run.peer(opts.server)
            servers = [peer]
            at = gateway_address(opts, peer)
            specs = _specs(at, at, peer_targets(n), peer_targets(1), wait_hello=False,
                           dialect="peer", channel_id=0, size=args.size, window=args.window,
                           procs=opts.procs, rate=0.0, pace=args.rate,
                           sentinel_path=_sentinel_path(run))
            publishers = 1
            extra: dict[str, Any] = {}
        else:
            srv: ParleyProcess | None = None
            if opts.url:
                api = opts.url
                servers = [ExternalServer(opts.server_pid)] if opts.server_pid else []
            else:
                dbs = run.databases(shared=False)
                run.log(f"starting parley serve (database: {dbs.kind})")
                srv = run.parley("serve", database_url=dbs.url)
                servers, api = [srv], srv.api_url
            publishers = max(1, min(args.publishers, 32))
            rate, burst = publisher_budget(opts)
            run.log(f"provisioning {n} subscriber sockets and {publishers} publisher sockets")
            pop = populate(api, n, extras=1)
            run.log(f"provisioned in {pop.setup_s:.1f} s")
            at = gateway_address(opts, srv)
            specs = _specs(at, at, pop.targets(n), pop.extra_targets(0, publishers),
                           wait_hello=True, dialect="parley", channel_id=pop.general_id,
                           size=args.size, window=args.window, procs=opts.procs,
                           rate=rate, burst=burst, pace=args.rate,
                           sentinel_path=_sentinel_path(run))
            extra = {"setup_s": pop.setup_s}
        m = measure(run, specs, servers, latency_roles=("receiver", "publisher"))
        return _finish(run, m, scenario="fanout", server=opts.server, n=n, args=args,
                       publishers=publishers, extra=extra)


def run_crossnode(opts: Options, args: argparse.Namespace) -> Result:
    n = args.subscribers
    with Run(opts, "crossnode") as run:
        redis_url, redis_procs = run.redis()
        dbs = run.databases(shared=True)
        secret = secrets.token_urlsafe(32)
        run.log(f"starting gateway A (serve) and gateway B (database: {dbs.kind})")
        a = run.parley("serve", database_url=dbs.url, redis_url=redis_url, jwt_secret=secret,
                       name="parley-a")
        b = run.parley("gateway", database_url=dbs.url, redis_url=redis_url, jwt_secret=secret,
                       name="parley-b")
        publishers = max(1, min(args.publishers, 32))
        rate, burst = publisher_budget(opts)
        pop = populate(a.api_url, n, extras=1)
        run.log(f"provisioned in {pop.setup_s:.1f} s")
        assert a.gateway_port is not None and b.gateway_port is not None
        # The publisher's sockets on A, every subscriber (and so every sentinel) on B.
        specs = _specs(("127.0.0.1", a.gateway_port), ("127.0.0.1", b.gateway_port),
                       pop.targets(n), pop.extra_targets(0, publishers), wait_hello=True,
                       dialect="parley", channel_id=pop.general_id, size=args.size,
                       window=args.window, procs=opts.procs, rate=rate, burst=burst,
                       pace=args.rate, sentinel_path=_sentinel_path(run))
        servers: list[Monitored] = [a, b, *redis_procs]
        m = measure(run, specs, servers, latency_roles=("receiver", "publisher"))
        return _finish(run, m, scenario="crossnode", server="parley", n=n, args=args,
                       publishers=publishers,
                       extra={"setup_s": pop.setup_s, "redis": redis_url,
                              "database": dbs.kind})
