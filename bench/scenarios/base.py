"""What every scenario shares: options, the servers it starts, and the
measurement sequence (ready -> go -> window -> collect -> stop).

A scenario builds ``WorkerSpec``s for its generator processes and calls
``measure``; the server's CPU seconds are read at the two ends of the
window (``psutil``, i.e. /proc/PID/stat), its peak RSS from VmHWM.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.common import Result, latency_summary
from bench.generator import Fleet, WorkerSpec, summarize
from bench.servers import (
    Databases,
    Monitored,
    ParleyProcess,
    PeerProcess,
    RedisProcess,
    postgres_cpu_s,
)
from parley.config import ConfigError, Settings
from server.settings import load_settings

SUBPROTOCOL = "parley.msgpack.v1"
#: Busy cores outside the server, its database and the generator above which a
#: result carries a note that the machine was not quiet.
OTHER_LOAD_NOTE_CORES = 0.3
#: --wait-idle: the machine counts as idle below this busy share (all cores).
IDLE_BUSY_SHARE = 0.15


@dataclass
class Options:
    """Command-line options common to every scenario."""

    server: str = "parley"
    duration: float = 10.0
    warmup: float = 2.0
    drain: float = 2.0
    procs: int = 2
    out: Path | None = None
    url: str = ""  # an already running Parley's REST API (skips starting one)
    gateway_url: str = ""  # its gateway, ws://host:port
    server_pid: int = 0  # its process, for CPU and memory readings
    database_url: str = ""
    pg_admin_url: str = ""
    redis_url: str = ""
    keep: bool = False  # keep the work dir (server logs)
    wait_idle: float = 0.0  # wait up to this many seconds for a quiet machine first
    quiet: bool = False
    #: ``--server-setting NAME=VALUE``: Parley settings for the servers this run
    #: starts (the servers' environment is otherwise built from scratch, so a
    #: PARLEY_* variable of the caller never reaches them).
    server_settings: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        names = cls.__dataclass_fields__
        values = {k: v for k, v in vars(args).items() if k in names and v is not None}
        if "server_settings" in values:  # validated by bench.__main__ before set-up
            values["server_settings"] = tuple(values["server_settings"])
        return cls(**values)


def server_settings(items: Sequence[str]) -> dict[str, str]:
    """``("commit_lanes=8", ...)`` -> ``{"commit_lanes": "8"}``, checked against
    Parley's own settings and their validation, so that a typo fails here
    instead of being ignored by the server (unknown PARLEY_* variables are).
    Raises ``ValueError``."""
    known = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    settings: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in known:
            raise ValueError(f"--server-setting {item!r}: expected NAME=VALUE with NAME one "
                             f"of Parley's settings (see the README's table)")
        settings[name] = value
    try:
        load_settings(environ=server_settings_env(settings))
    except (ConfigError, ValueError) as exc:
        raise ValueError(f"--server-setting: {exc}") from exc
    return settings


def server_settings_env(settings: dict[str, str]) -> dict[str, str]:
    """``{"commit_lanes": "8"}`` -> ``{"PARLEY_COMMIT_LANES": "8"}``."""
    return {f"PARLEY_{name.upper()}": value for name, value in settings.items()}


def add_common_arguments(p: argparse.ArgumentParser, *, peers: bool) -> None:
    servers = ["parley", "picows", "websockets", "aiohttp", "node-ws"] if peers else ["parley"]
    p.add_argument("--server", choices=servers, default="parley", help="server under test")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    p.add_argument("--drain", type=float, default=2.0,
                   help="seconds receivers keep reading after senders stop")
    p.add_argument("--procs", type=int, default=2, help="generator processes (receivers)")
    p.add_argument("--out", type=Path, help="directory for the JSON result (bench/results/)")
    p.add_argument("--url", help="REST API of a running Parley (do not start one)")
    p.add_argument("--gateway-url", help="gateway of that Parley, ws://host:port")
    p.add_argument("--server-pid", type=int, help="pid of that Parley, for CPU/RSS readings")
    p.add_argument("--database-url", default=os.environ.get("PARLEY_DATABASE_URL", ""),
                   help="PostgreSQL DSN for the servers (default $PARLEY_DATABASE_URL; "
                        "empty: embedded)")
    p.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL", ""),
                   help="admin DSN: create a fresh database for this run and drop it after "
                        "(default $BENCH_PG_ADMIN_URL)")
    p.add_argument("--redis-url", default="",
                   help="Redis for crossnode/presence (default: a private redis-server)")
    p.add_argument("--keep", action="store_true", help="keep the work dir with server logs")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="first wait (up to SECONDS) until the machine is nearly idle "
                        f"(< {IDLE_BUSY_SHARE:.0%}% busy over a second): shared machines")
    p.add_argument("--quiet", action="store_true", help="less progress output")
    p.add_argument("--server-setting", dest="server_settings", action="append",
                   metavar="NAME=VALUE",
                   help="a Parley setting for the servers the run starts, e.g. "
                        "commit_lanes=8 (repeatable; recorded in the result's parameters)")


class Run:
    """Resources of one scenario run; closes them in reverse order."""

    def __init__(self, opts: Options, name: str) -> None:
        self.opts = opts
        self.workdir = Path(tempfile.mkdtemp(prefix=f"parley-bench-{name}-"))
        self.servers: list[Monitored] = []
        self.dbs: Databases | None = None
        self.notes: list[str] = []

    def log(self, msg: str) -> None:
        if not self.opts.quiet:
            print(f"[bench] {msg}", flush=True)

    def databases(self, *, shared: bool) -> Databases:
        self.dbs = Databases(database_url=self.opts.database_url,
                             admin_url=self.opts.pg_admin_url, need_shared=shared,
                             workdir=self.workdir)
        return self.dbs

    def parley(self, mode: str, **kw: Any) -> ParleyProcess:
        kw["extra_env"] = {**server_settings_env(server_settings(self.opts.server_settings)),
                           **(kw.get("extra_env") or {})}
        srv = ParleyProcess(mode, workdir=self.workdir, **kw)
        self.servers.append(srv)
        return srv

    def peer(self, kind: str) -> PeerProcess:
        srv = PeerProcess(kind, self.workdir)
        self.servers.append(srv)
        return srv

    def add(self, srv: Monitored) -> None:
        self.servers.append(srv)

    def redis(self) -> tuple[str, list[Monitored]]:
        """The Redis to use: ``--redis-url`` if given, else a private server
        started (and closed) with the run.  Returns its URL and the processes
        to monitor (the private server, if one was started)."""
        if self.opts.redis_url:
            return self.opts.redis_url, []
        srv = RedisProcess(self.workdir)
        self.add(srv)
        return srv.url, [srv]

    def close(self) -> None:
        for srv in reversed(self.servers):
            with contextlib.suppress(Exception):
                srv.stop()
        if self.dbs is not None:
            self.dbs.close()
        if self.opts.keep:
            print(f"[bench] work dir kept: {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Run:
        if self.opts.wait_idle > 0:
            deadline = time.monotonic() + self.opts.wait_idle
            while True:
                busy = psutil.cpu_percent(interval=1.0) / 100.0
                if busy < IDLE_BUSY_SHARE or time.monotonic() > deadline:
                    break
            self.log(f"machine {busy:.0%} busy when the run started")
            if busy >= IDLE_BUSY_SHARE:
                self.notes.append(f"the machine was {busy:.0%} busy with other work when the "
                                  "run started (--wait-idle timed out)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExternalServer(Monitored):
    """A Parley we did not start (``--url``); readings need ``--server-pid``."""

    def __init__(self, pid: int) -> None:
        self.name = "external"
        self.log = None
        self.ps = psutil.Process(pid)

    @property
    def pid(self) -> int:
        return int(self.ps.pid)

    def stop(self, timeout: float = 15.0) -> None:
        pass


def gateway_address(opts: Options, srv: ParleyProcess | PeerProcess | None) -> tuple[str, int]:
    if srv is not None and srv.gateway_port is not None:
        return "127.0.0.1", srv.gateway_port
    parts = urlsplit(opts.gateway_url)
    if not parts.hostname or not parts.port:
        raise SystemExit("--url needs --gateway-url ws://host:port")
    return parts.hostname, parts.port


@dataclass
class Measurement:
    """What ``measure`` returns."""

    reports: list[dict[str, Any]]
    ready: list[dict[str, Any]]
    window_s: float
    server_cpu_s: dict[str, float]
    db_cpu_s: float
    host_busy_s: float  # every CPU of the machine, busy seconds (all processes, softirq too)
    peak_rss_mib: dict[str, float]
    rss_mib: dict[str, float]
    #: /proc/pressure/cpu "some avg10": % of the last 10 s some task waited for a CPU.
    cpu_pressure: float | None
    latencies_us: array[int] = field(default_factory=lambda: array("I"))

    def count(self, role: str | None = None) -> int:
        return sum(r["count"] for r in self.reports if role is None or r["role"] == role)


def _cpu_pressure() -> float | None:
    """PSI: the share of the last 10 s in which some runnable task waited for a CPU."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(f.split("=", 1) for f in line.split()[1:])
    try:
        return float(fields["avg10"])
    except (KeyError, ValueError):
        return None


def _host_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores, /proc/stat)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0)
                 + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0))


def measure(run: Run, specs: list[WorkerSpec], servers: Sequence[Monitored], *,
            latency_roles: tuple[str, ...] | None = None,
            before_go: Any = None) -> Measurement:
    """Start the generator processes, run the window, return the readings.

    ``before_go(run)``, if given, is called once every socket is ready (the
    idle scenario reads the server's memory there).
    """
    opts = run.opts
    fleet = Fleet(specs)
    try:
        ready = fleet.wait_ready()
        connected = sum(r["connected"] for r in ready)
        failed = sum(r["failed"] for r in ready)
        slowest = max(r["connect_s"] for r in ready)
        run.log(f"{connected} sockets ready in {slowest:.1f} s ({failed} failed)")
        for r in ready:
            if r["errors"]:
                run.log(f"  {r['name']}: connect errors {r['errors']}")
        if before_go is not None:
            before_go(run)
        if not all(s.reset_peak() for s in servers):
            run.notes.append("peak RSS could not be reset after set-up: it includes provisioning")
        _, t_from, t_to, _ = fleet.go(opts.warmup, opts.duration, opts.drain)
        time.sleep(max(0.0, (t_from - time.monotonic_ns()) / 1e9))
        cpu0 = {s.name: s.cpu_s() for s in servers}
        db0 = postgres_cpu_s()
        host0 = _host_busy_s()
        w0 = time.monotonic()
        time.sleep(max(0.0, (t_to - time.monotonic_ns()) / 1e9))
        cpu1 = {s.name: s.cpu_s() for s in servers}
        db1 = postgres_cpu_s()
        host1 = _host_busy_s()
        window = time.monotonic() - w0
        rss = {s.name: round(s.rss_mib(), 1) for s in servers}
        pressure = _cpu_pressure()
        reports = fleet.collect(timeout=opts.drain + 120.0)
    finally:
        fleet.stop()
    lat: array[int] = array("I")
    for r in reports:
        if latency_roles is None or r["role"] in latency_roles:
            lat.extend(r["latencies_us"])
    return Measurement(
        reports=reports, ready=ready, window_s=window,
        server_cpu_s={k: round(cpu1[k] - cpu0[k], 3) for k in cpu0},
        db_cpu_s=round(db1 - db0, 3), host_busy_s=round(host1 - host0, 3),
        peak_rss_mib={s.name: round(s.peak_rss_mib(), 1) for s in servers},
        rss_mib=rss, cpu_pressure=pressure, latencies_us=lat)


def build_result(run: Run, m: Measurement, *, scenario: str, server: str,
                 parameters: dict[str, Any], throughput_count: int, unit: str,
                 extra: dict[str, Any] | None = None) -> Result:
    """A Result from a measurement: rate over the window, CPU per million."""
    opts = run.opts
    rate = throughput_count / opts.duration if opts.duration > 0 else 0.0
    cpu = round(sum(m.server_cpu_s.values()), 3)
    gen = summarize(m.reports)
    gen["connect"] = [{k: r[k] for k in ("name", "connected", "failed", "errors", "connect_s")}
                      for r in m.ready]
    notes = list(run.notes)
    if gen["saturated"]:
        notes.append("a generator process used more than 90% of a core "
                     f"({', '.join(gen['saturated_processes'])}): the generator, not the "
                     "server, may have limited this result")
    cores = psutil.cpu_count() or 1
    other = m.host_busy_s - cpu - m.db_cpu_s - gen["total_cpu_s"]
    if m.window_s and other / m.window_s > OTHER_LOAD_NOTE_CORES:
        notes.append(f"other processes on the machine used about {other / m.window_s:.2f} "
                     f"cores of {cores} during the window (kernel network time counted "
                     "outside the processes included): numbers are pessimistic")
    failed = sum(r["failed"] for r in m.ready)
    if failed:
        notes.append(f"{failed} sockets failed to connect: {gen['connect']}")
    params = dict(parameters, duration_s=opts.duration, warmup_s=opts.warmup,
                  generator_processes=len(m.reports))
    if opts.server_settings and server == "parley":
        params["server_settings"] = server_settings(opts.server_settings)
    all_extra: dict[str, Any] = {
        "server_cpu_s_by_process": m.server_cpu_s,
        "server_cpu_cores": round(cpu / m.window_s, 3) if m.window_s else None,
        "db_cpu_s": m.db_cpu_s,
        "cpu_pressure_some_avg10_pct": m.cpu_pressure,
        "host_busy_cores": round(m.host_busy_s / m.window_s, 3) if m.window_s else None,
        "other_busy_cores": round((m.host_busy_s - cpu - m.db_cpu_s - gen["total_cpu_s"])
                                  / m.window_s, 3) if m.window_s else None,
        "server_rss_mib_end": m.rss_mib,
        "server_peak_rss_mib_by_process": m.peak_rss_mib,
    }
    all_extra.update(extra or {})
    return Result(
        scenario=scenario, server=server, parameters=params,
        throughput=round(rate, 1), throughput_unit=unit,
        latency=latency_summary(m.latencies_us),
        server_cpu_s=cpu,
        cpu_s_per_million=round(cpu / throughput_count * 1e6, 3) if throughput_count else None,
        server_peak_rss_mib=round(max(m.peak_rss_mib.values(), default=0.0), 1),
        generator=gen, extra=all_extra, notes=notes)
