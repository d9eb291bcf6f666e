"""Shared pieces of the end-to-end benchmarks: results, percentiles, machine
facts, file limits and the printed table.

A result is one JSON object per run (the schema is documented in
docs/benchmarks.md, "Result files").  Latencies are microseconds throughout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import socket
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Where results go unless --out says otherwise (gitignored).
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: A generator process above this share of one core was the bottleneck, not the server.
SATURATION_SHARE = 0.90
#: Version of the result schema (bump when a field changes meaning).
SCHEMA_VERSION = 1


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit; return the new soft limit.

    10,000 connections need 10,000 descriptors on each side of loopback.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of already sorted values, nearest rank."""
    if not sorted_values:
        return None
    rank = math.ceil(round(q * len(sorted_values) / 100.0, 6)) - 1
    rank = max(0, min(len(sorted_values) - 1, rank))
    return float(sorted_values[rank])


def latency_summary(values_us: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/p99.9/max of latencies in microseconds, reported in ms."""
    ordered = sorted(values_us)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v / 1000.0, 3)

    return {
        "samples": len(ordered),
        "p50_ms": ms(percentile(ordered, 50)),
        "p90_ms": ms(percentile(ordered, 90)),
        "p99_ms": ms(percentile(ordered, 99)),
        "p999_ms": ms(percentile(ordered, 99.9)),
        "max_ms": ms(float(ordered[-1])) if ordered else None,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def git_revision() -> str | None:
    """The checkout's commit (with ``+dirty`` when the tree has changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, check=True, capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


@dataclass
class Result:
    """One benchmark run, as written to JSON (see docs/benchmarks.md)."""

    scenario: str
    server: str
    parameters: dict[str, Any]
    #: Main throughput figure and its unit ("deliveries/s", "messages/s", ...).
    throughput: float
    throughput_unit: str
    latency: dict[str, float | int | None]
    #: Server process CPU seconds during the measurement window.
    server_cpu_s: float
    #: Server CPU seconds per million units of ``throughput_unit`` (per core: divide by 1).
    cpu_s_per_million: float | None
    server_peak_rss_mib: float
    generator: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)
    revision: str | None = field(default_factory=git_revision)
    started_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, out_dir: Path | None = None) -> Path:
        """Write ``<scenario>-<server>-<params>-<time>.json``; return the path."""
        directory = out_dir or RESULTS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        tag = "-".join(f"{v}" for k, v in sorted(self.parameters.items())
                       if k in ("subscribers", "size", "connections", "senders", "channels"))
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        name = f"{self.scenario}-{self.server}{'-' + tag if tag else ''}-{stamp}.json"
        path = directory / name
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


def load_results(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every readable result object among ``paths`` (files or directories)."""
    out: list[dict[str, Any]] = []
    for p in paths:
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        for f in files:
            try:
                obj = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(obj, dict) and "scenario" in obj and "server" in obj:
                obj["_file"] = str(f)
                out.append(obj)
    return out


def fmt(v: Any, digits: int = 1) -> str:
    """A number for a table: thousands separators, '-' for missing."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_result(res: Result, path: Path | None) -> None:
    """The table a scenario prints at the end."""
    lat = res.latency
    gen = res.generator
    rows = [[res.scenario, res.server, res.throughput, res.throughput_unit,
             lat.get("p50_ms"), lat.get("p99_ms"), lat.get("p999_ms"), res.server_cpu_s,
             res.cpu_s_per_million, res.server_peak_rss_mib,
             gen.get("max_cpu_share"), "yes" if gen.get("saturated") else "no"]]
    print(table(["scenario", "server", "throughput", "unit", "p50 ms", "p99 ms", "p99.9 ms",
                 "srv CPU s", "CPU s/M", "peak RSS MiB", "gen max core", "gen saturated"],
                rows))
    params = ", ".join(f"{k}={v}" for k, v in sorted(res.parameters.items()))
    print(f"parameters: {params}")
    for key, value in sorted(res.extra.items()):
        print(f"  {key}: {value}")
    for note in res.notes:
        print(f"note: {note}")
    if path is not None:
        print(f"result: {path}")
