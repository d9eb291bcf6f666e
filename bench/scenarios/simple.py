"""``echo``, ``idle``, ``ingest`` and ``presence``.

echo      round trips (send, wait for the echo, send again) on ``--connections``
          sockets with ``--size`` byte messages.  Parley runs ``parley gateway
          --echo``: the same transport, framing and flush path as the gateway,
          with no session layer (the session layer has no echo command, and
          its 50 commands/s per socket would cap it).
idle      ``--connections`` sockets that only answer pings; server memory per
          connection = (RSS with them - RSS before them) / connections.
ingest    ``--senders`` sockets, each sending into its own channel (so every
          message is delivered to one socket: its sender), paced just under
          the 50 commands/s per-connection limit with ``--window`` sends in
          flight; durable messages/s is acks/s, latency is send-to-ack.
          ``--text realistic`` (the default) sends ``bench.textgen`` chat
          text (``--seed``); ``--text fixed`` the old ``~ts=...xxx`` corpus.
presence  ``--connections`` sockets sending ref-less ``heartbeat`` commands
          (no reply) evenly paced at ``--rate`` per socket, then one with a
          ref each: its ``heartbeat_ack`` confirms every earlier heartbeat on
          the socket (``bench.roles.HeartbeatConn``).  Heartbeats absorbed/s
          counts confirmed heartbeats sent in the window; the gateway's CPU
          per heartbeat gives its per-process capacity; Redis commands per
          1,000 heartbeats come from ``INFO commandstats`` deltas of a
          private Redis the gateway uses as its hub.  ``--pin`` puts the
          gateway on a core of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from bench import textgen
from bench.common import Result
from bench.generator import ConnTarget, WorkerSpec, split
from bench.provision import MAX_SOCKETS_PER_USER, Provisioner, auth_headers, connect_path
from bench.scenarios.base import (
    SUBPROTOCOL,
    ExternalServer,
    Measurement,
    Options,
    Run,
    build_result,
    gateway_address,
    measure,
)
from bench.scenarios.population import peer_targets, populate
from bench.servers import Monitored, ParleyProcess, PeerProcess

#: Client-side pace per socket, just under the gateway's 50 commands/s.
COMMAND_RATE_PER_SOCKET = 45.0
#: Modules one of which will hold the presence feature (issue 7) once it lands.
PRESENCE_MODULES = ("gateway.presence", "parley.presence", "parley.actions.presence",
                    "storage.presence", "storage.presence_redis")


def add_echo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--size", type=int, default=256, help="message bytes")
    p.add_argument("--window", type=int, default=1, help="messages in flight per socket")


def add_idle_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to wait after the last connect before reading RSS")
    p.add_argument("--transport-only", action="store_true",
                   help="Parley: connect to `parley gateway --echo` (transport and framing, "
                        "no session layer) to split the per-connection memory")


def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--senders", type=int, default=1500, help="sender sockets (one channel each)")
    p.add_argument("--text", choices=textgen.TEXT_KINDS, default=textgen.TEXT_KINDS[0],
                   help="message bodies: realistic (bench/textgen.py: Zipf words, mentions, "
                        "links, emoji, non-Latin scripts; mean 200 bytes) or fixed (the old "
                        "~ts=...xxx corpus of --size bytes)")
    p.add_argument("--seed", type=int, default=0, help="seed of the realistic text")
    p.add_argument("--size", type=int, default=None,
                   help="message text bytes (default: fixed 100; realistic: drawn, mean 200)")
    p.add_argument("--window", type=int, default=2, help="sends in flight per socket")
    p.add_argument("--rate", type=float, default=COMMAND_RATE_PER_SOCKET,
                   help="sends per second per socket (the gateway allows 50)")


def add_presence_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=4500)
    p.add_argument("--rate", type=float, default=COMMAND_RATE_PER_SOCKET,
                   help="heartbeats per second per socket, evenly paced (the gateway "
                        "allows 50)")
    p.add_argument("--ack", action="store_true",
                   help="every heartbeat carries a ref and gets a heartbeat_ack (the client "
                        "pattern before ref-less heartbeats): what replying costs")
    p.add_argument("--pin", action="store_true",
                   help="once the sockets are ready, pin the gateway process to the first "
                        "CPU this process may use, and everything else the run started "
                        "(generator processes, Redis, this process) to the others")


def _parley(run: Run, opts: Options, mode: str = "serve",
            redis_url: str = "") -> tuple[list[Monitored], str, ParleyProcess | None]:
    """Start (or find) Parley; returns (servers to read, API URL, the process)."""
    if opts.url:
        servers: list[Monitored] = [ExternalServer(opts.server_pid)] if opts.server_pid else []
        return servers, opts.url, None
    dbs = run.databases(shared=False)
    run.log(f"starting parley {mode} (database: {dbs.kind})")
    srv = run.parley(mode, database_url=dbs.url, redis_url=redis_url)
    return [srv], srv.api_url, srv


def run_echo(opts: Options, args: argparse.Namespace) -> Result:
    with Run(opts, "echo") as run:
        if opts.server == "parley":
            srv: Any = run.parley("echo")
            notes = ["parley = `parley gateway --echo`: the gateway's transport and framing, "
                     "no session layer"]
        else:
            srv = run.peer(opts.server)
            notes = []
        run.notes += notes
        host, port = gateway_address(opts, srv)
        specs = [WorkerSpec(f"echo-{i}", "echo", host, port, SUBPROTOCOL, chunk, False,
                            {"size": args.size, "window": args.window})
                 for i, chunk in enumerate(split(peer_targets(args.connections), opts.procs))]
        m = measure(run, specs, [srv])
        return build_result(run, m, scenario="echo", server=opts.server,
                            parameters={"connections": args.connections, "size": args.size,
                                        "window": args.window},
                            throughput_count=m.count(), unit="round trips/s")


def run_idle(opts: Options, args: argparse.Namespace) -> Result:
    n = args.connections
    with Run(opts, "idle") as run:
        transport_only = getattr(args, "transport_only", False)
        servers: list[Monitored]
        srv: ParleyProcess | PeerProcess | None
        targets: list[ConnTarget]
        if opts.server == "parley" and transport_only:
            srv = run.parley("echo")
            servers, targets, wait_hello = [srv], peer_targets(n), False
            run.notes.append("transport only: `parley gateway --echo`, no session layer")
        elif opts.server == "parley":
            servers, api, srv = _parley(run, opts)
            pop = populate(api, n)
            run.log(f"provisioned {len(pop.members)} accounts in {pop.setup_s:.1f} s")
            targets = pop.targets(n)
            wait_hello = True
        else:
            srv = run.peer(opts.server)
            servers, targets, wait_hello = [srv], peer_targets(n), False
        if not servers:
            raise SystemExit("idle needs the server's memory: start it here or give --server-pid")
        host, port = gateway_address(opts, srv)
        time.sleep(1.0)
        before = servers[0].rss_kib()
        readings: dict[str, float] = {}

        def after_connect(r: Run) -> None:
            time.sleep(args.settle)
            readings["after"] = servers[0].rss_kib()

        specs = [WorkerSpec(f"idle-{i}", "idle", host, port, SUBPROTOCOL, chunk, wait_hello,
                            connect_concurrency=32)
                 for i, chunk in enumerate(split(targets, opts.procs))]
        m = measure(run, specs, servers, before_go=after_connect)
        connected = sum(r["connected"] for r in m.ready)
        growth_kib = readings["after"] - before
        per_conn = growth_kib * 1024 / connected if connected else None
        res = build_result(run, m, scenario="idle", server=opts.server,
                           parameters={"connections": n, "transport_only": transport_only},
                           throughput_count=0,
                           unit="connections",
                           extra={"rss_before_kib": before, "rss_after_kib": readings["after"],
                                  "connected": connected,
                                  "bytes_per_connection": round(per_conn) if per_conn else None})
        res.throughput = float(connected)
        res.cpu_s_per_million = None
        return res


async def _ingest_population(api: str, senders: int) -> tuple[list[ConnTarget], float]:
    """``senders`` sockets: users x workspaces, each socket with its own channel."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    prov = Provisioner(api)
    try:
        # A user may hold 32 sockets per gateway, whatever the workspace: each
        # user gets one socket in each of up to 32 workspaces.
        n_ws = min(senders, MAX_SOCKETS_PER_USER)
        n_users = -(-senders // n_ws)
        accounts = await prov.accounts(n_users + 1)
        owner, users = accounts[0], accounts[1:]
        workspaces = [await prov.workspace(owner, f"ingest {w}") for w in range(n_ws)]
        await asyncio.gather(*(prov.add_members(owner, wid, users) for wid, _ in workspaces))
        pairs = [(users[i // n_ws], workspaces[i % n_ws][0]) for i in range(senders)]
        channels = await prov.channels([(u, wid, f"ingest-{i}")
                                        for i, (u, wid) in enumerate(pairs)])
    finally:
        await prov.close()
    targets = [ConnTarget(connect_path(wid), auth_headers(u.token), cid)
               for (u, wid), cid in zip(pairs, channels, strict=True)]
    return targets, round(loop.time() - started, 2)


#: The design's ingest target (issue 4), for ``cores_for_target``.
INGEST_TARGET_PER_S = 50_000


def _ingest_costs(m: Measurement) -> dict[str, Any]:
    """CPU per durable message, by side, and what it implies: the capacity of
    one core of each, and the cores the 50,000/s target needs.  On a machine
    whose generator shares the cores these are the figures that carry over to
    bigger hosts (throughput here is bounded by the sum of all three)."""
    n = m.count()
    if not n:
        return {}
    gateway_us = sum(m.server_cpu_s.values()) / n * 1e6
    db_us = m.db_cpu_s / n * 1e6
    gen_us = sum(r.get("cpu_s", 0.0) for r in m.reports) / n * 1e6
    return {
        "cpu_us_per_message": {"gateway": round(gateway_us, 1), "postgresql": round(db_us, 1),
                               "generator": round(gen_us, 1)},
        "capacity_messages_per_core_s": {
            "gateway": round(1e6 / gateway_us) if gateway_us else None,
            "postgresql": round(1e6 / db_us) if db_us else None},
        "cores_for_target": {
            "target_per_s": INGEST_TARGET_PER_S,
            "gateway": round(INGEST_TARGET_PER_S * gateway_us / 1e6, 2),
            "postgresql": round(INGEST_TARGET_PER_S * db_us / 1e6, 2)},
    }


def run_ingest(opts: Options, args: argparse.Namespace) -> Result:
    with Run(opts, "ingest") as run:
        servers, api, srv = _parley(run, opts)
        run.log(f"provisioning {args.senders} sender sockets with a channel each")
        targets, setup_s = asyncio.run(_ingest_population(api, args.senders))
        run.log(f"provisioned in {setup_s:.1f} s")
        host, port = gateway_address(opts, srv)
        size = args.size if args.size is not None or args.text == "realistic" else 100
        params = {"op": "send", "size": size or 0, "window": args.window, "rate": args.rate,
                  "burst": 1.0, "text": args.text, "seed": args.seed, "text_size": size}
        specs = [WorkerSpec(f"senders-{i}", "command", host, port, SUBPROTOCOL, chunk, True,
                            params) for i, chunk in enumerate(split(targets, opts.procs))]
        io: dict[str, tuple[int, int] | None] = {}

        def before(_: Run) -> None:
            io["before"] = _syscalls(srv.pid) if srv is not None else None

        m = measure(run, specs, servers, before_go=before)
        io["after"] = _syscalls(srv.pid) if srv is not None else None
        offered = args.senders * args.rate
        if m.count() / opts.duration > 0.95 * offered:
            run.notes.append(f"the offered load ({offered:,.0f}/s = senders x rate) was "
                             "absorbed: the server was not saturated; add --senders")
        return build_result(run, m, scenario="ingest", server="parley",
                            parameters={"senders": args.senders, "channels": args.senders,
                                        # realistic without --size: the mean drawn
                                        "size": size or textgen.MEAN_BYTES, "text": args.text,
                                        "seed": args.seed, "window": args.window,
                                        "rate_per_socket": args.rate},
                            throughput_count=m.count(), unit="messages/s",
                            extra={"setup_s": setup_s, "offered_per_s": offered,
                                   "database": run.dbs.kind if run.dbs else "external",
                                   **_ingest_costs(m), **_syscalls_per(io, m, "message")})


def _command_calls(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items()
               if not k.startswith("cmdstat_info") and isinstance(v, dict))


def presence_implemented() -> bool:
    """True once a presence module exists *and* the gateway's sessions use it
    (a module that is not wired in does not absorb heartbeats)."""
    exists = any(importlib.util.find_spec(m) is not None for m in PRESENCE_MODULES
                 if importlib.util.find_spec(m.rsplit(".", 1)[0]) is not None)
    spec = importlib.util.find_spec("gateway.session")
    origin = spec.origin if spec is not None else None
    try:
        wired = origin is not None and "presence" in Path(origin).read_text()
    except OSError:
        wired = False
    return exists and wired


def _pin(gateway_pid: int) -> dict[str, list[int]] | None:
    """Pin ``gateway_pid`` (every thread) to the first CPU we may use, and
    this process and every other process it started (recursively) to the
    rest.  None, and nothing done, with fewer than 2 CPUs."""
    import psutil

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    mine, others = {cpus[0]}, set(cpus[1:])

    def pin(pid: int, where: set[int]) -> None:
        # sched_setaffinity applies to one thread: set it for each of them.
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return
        for tid in tids:
            try:
                os.sched_setaffinity(tid, where)
            except OSError:
                pass  # the thread (or the process) is gone

    pin(gateway_pid, mine)
    for child in psutil.Process().children(recursive=True):
        if child.pid != gateway_pid:
            pin(child.pid, others)
    pin(os.getpid(), others)
    return {"gateway": sorted(mine), "others": sorted(others)}


def _syscalls_per(io: dict[str, tuple[int, int] | None], m: Measurement,
                  unit: str) -> dict[str, float]:
    """The gateway process's read and write syscalls per acknowledged
    ``unit`` over the whole run (warm-up and drain too, so divided by every
    ack, not only the window's): ``gateway_reads_per_<unit>``, ``..._writes_...``."""
    before, after = io.get("before"), io.get("after")
    total = sum(r.get("total", 0) for r in m.reports)
    if before is None or after is None or not total:
        return {}
    return {f"gateway_reads_per_{unit}": round((after[0] - before[0]) / total, 3),
            f"gateway_writes_per_{unit}": round((after[1] - before[1]) / total, 3)}


def _syscalls(pid: int) -> tuple[int, int] | None:
    """(read, write) syscalls of ``pid`` so far (/proc/PID/io), or None."""
    try:
        fields = dict(line.split(": ", 1) for line in
                      Path(f"/proc/{pid}/io").read_text().splitlines())
        return int(fields["syscr"]), int(fields["syscw"])
    except (OSError, KeyError, ValueError):
        return None


def run_presence(opts: Options, args: argparse.Namespace) -> Result:
    n = args.connections
    with Run(opts, "presence") as run:
        redis_url, redis_procs = run.redis()
        servers, api, srv = _parley(run, opts, redis_url=redis_url)
        pop = populate(api, n)
        run.log(f"provisioned {len(pop.members)} accounts in {pop.setup_s:.1f} s")
        host, port = gateway_address(opts, srv)
        acked = getattr(args, "ack", False)
        params = {"op": "heartbeat+ack" if acked else "heartbeat", "rate": args.rate}
        specs = [WorkerSpec(f"heartbeats-{i}", "command", host, port, SUBPROTOCOL, chunk, True,
                            params) for i, chunk in enumerate(split(pop.targets(n), opts.procs))]
        calls: dict[str, int] = {}
        io: dict[str, tuple[int, int] | None] = {}  # the gateway's syscall counters
        pinned: dict[str, list[int]] | None = None

        def before(r: Run) -> None:
            nonlocal pinned
            if getattr(args, "pin", False):
                if srv is None:
                    r.notes.append("--pin needs a gateway started by the bench: not pinned")
                else:
                    pinned = _pin(srv.pid)
                    if pinned is None:
                        r.notes.append("--pin needs 2 CPUs: not pinned")
            calls["before"] = _command_calls(redis_url)
            io["before"] = _syscalls(srv.pid) if srv is not None else None

        m = measure(run, specs, [*servers, *redis_procs], before_go=before)
        calls["after"] = _command_calls(redis_url)
        io["after"] = _syscalls(srv.pid) if srv is not None else None
        beats = m.count()
        # Redis saw the whole run (warm-up and drain too): divide by every
        # confirmed heartbeat, not only the window's.
        total_beats = sum(r["total"] for r in m.reports)
        delta = calls["after"] - calls["before"]
        per_1000 = round(delta / total_beats * 1000, 2) if total_beats else None
        sent = sum(r["sent"] for r in m.reports)
        rejected = sum(r["extra"].get("rejected_in_window", 0) for r in m.reports)
        unconfirmed = sent - beats - rejected
        connected = sum(r["connections"] for r in m.reports)
        final_acks = sum(r["extra"].get("final_acks", 0) for r in m.reports)
        # The gateway process alone (crossnode-style runs list more servers;
        # Redis is monitored too): its CPU over the window per heartbeat.
        gateway_cpu = m.server_cpu_s.get(srv.name if srv is not None else "external")
        cpu_us = round(gateway_cpu / beats * 1e6, 3) if gateway_cpu and beats else None
        # One read per heartbeat is the realistic pattern (a client sends one
        # every 30 s); well below 1 means the gateway fell behind and read
        # several heartbeats at once, which makes each one cheaper.
        before_io, after_io = io.get("before"), io.get("after")
        reads = writes = None
        if before_io and after_io and total_beats:
            reads = round((after_io[0] - before_io[0]) / total_beats, 3)
            writes = round((after_io[1] - before_io[1]) / total_beats, 3)
        if unconfirmed:
            run.notes.append(f"{unconfirmed} heartbeats sent in the window were not confirmed "
                             f"({connected - final_acks} of {connected} sockets got no "
                             "heartbeat_ack for their final heartbeat within the drain time)")
        if rejected:
            run.notes.append(f"the gateway rejected {rejected} heartbeats in the window "
                             f"(see generator.errors)")
        if cpu_us is not None:
            run.notes.append("the generator runs on this machine too ("
                             + ("pinned to the other core" if pinned else "sharing its cores")
                             + ") and needs more CPU per heartbeat than the gateway, so the "
                             "wall-clock rate is the generator's limit; the gateway's "
                             "per-process figure is capacity_heartbeats_per_core_s = 1e6 / "
                             "cpu_us_per_heartbeat")
        implemented = presence_implemented()
        if not implemented:
            run.notes.append("presence (issue 7) is not implemented yet: heartbeats are "
                             "answered by the session layer only, so the Redis figure is "
                             "PENDING (it measures the baseline, not presence)")
        return build_result(run, m, scenario="presence", server="parley",
                            parameters={"connections": n, "rate_per_socket": args.rate,
                                        "acked": acked, "pinned": pinned is not None},
                            throughput_count=beats, unit="heartbeats/s",
                            extra={"redis_commands": delta, "heartbeats_total": total_beats,
                                   "redis_commands_per_1000_heartbeats": per_1000,
                                   "heartbeats_sent_in_window": sent,
                                   "heartbeats_rejected_in_window": rejected,
                                   "heartbeats_unconfirmed": unconfirmed,
                                   "sockets_confirmed": final_acks,
                                   "gateway_cpu_s": gateway_cpu,
                                   "cpu_us_per_heartbeat": cpu_us,
                                   "capacity_heartbeats_per_core_s":
                                       round(1e6 / cpu_us) if cpu_us else None,
                                   "gateway_reads_per_heartbeat": reads,
                                   "gateway_writes_per_heartbeat": writes,
                                   "pinned_cpus": pinned,
                                   "presence_implemented": implemented,
                                   "presence_figure": "measured" if implemented else "pending",
                                   "offered_per_s": n * args.rate})
