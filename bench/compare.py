"""``python -m bench compare SCENARIO``: Parley and every peer back to back,
with each server's figures as a ratio of the first server's (Parley's)."""

from __future__ import annotations

import argparse
import copy

from bench.common import Result, print_result, table
from bench.scenarios import fanout, simple
from bench.scenarios.base import Options

#: Per-scenario defaults for options that compare's parser leaves unset.
DEFAULTS = {
    "fanout": {"size": 100, "window": 32},
    "echo": {"size": 256, "window": 1, "connections": 64},
    "idle": {"connections": 10_000},
}


def _figure(res: Result) -> float | None:
    """The figure compared: throughput, or bytes per connection for idle."""
    if res.scenario == "idle":
        v = res.extra.get("bytes_per_connection")
        return float(v) if v is not None else None
    return res.throughput


def main(args: argparse.Namespace) -> int:
    for key, value in DEFAULTS[args.scenario].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    runner = {"fanout": fanout.run_fanout, "echo": simple.run_echo,
              "idle": simple.run_idle}[args.scenario]
    results: list[Result] = []
    for server in [s.strip() for s in args.servers.split(",") if s.strip()]:
        run_args = copy.copy(args)
        run_args.server = server
        opts = Options.from_args(run_args)
        print(f"\n=== {args.scenario} on {server} ===", flush=True)
        try:
            res = runner(opts, run_args)
        except Exception as exc:  # one broken peer must not hide the others
            print(f"{server}: failed: {exc}")
            continue
        path = res.save(opts.out)
        print_result(res, path)
        results.append(res)
    if not results:
        return 1
    base = _figure(results[0])
    unit = "bytes/conn" if args.scenario == "idle" else results[0].throughput_unit
    rows = []
    for r in results:
        fig = _figure(r)
        ratio = round(fig / base, 2) if fig is not None and base else None
        rows.append([r.server, fig, unit, ratio, r.latency.get("p99_ms"), r.server_cpu_s,
                     r.cpu_s_per_million, "yes" if r.generator.get("saturated") else "no"])
    print(f"\n{args.scenario}: ratios against {results[0].server}")
    print(table(["server", "figure", "unit", f"x {results[0].server}", "p99 ms", "srv CPU s",
                 "CPU s/M", "gen saturated"], rows))
    return 0
