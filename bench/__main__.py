"""``python -m bench SCENARIO [options]``: end-to-end benchmarks.

  fanout     one publisher, N subscribers in one channel (deliveries/s)
  ingest     many senders, many channels (durable messages/s, send-to-ack)
  echo       round trips on 1 or 64 connections
  idle       server memory per idle connection
  crossnode  fanout across two gateway processes through Redis
  presence   heartbeats absorbed/s and Redis commands per 1,000 heartbeats
  compare    one scenario against Parley and every peer server, with ratios
  app_events Events API: events/s to 100 apps, people's delivery p99 with
             fast, slow and no apps (bench/app_events.py, its own options)
  report     results (bench/results/*.json) -> docs/benchmarks.md tables + docs/img/*.png
  capacity   the capacity model: cores of each kind for the design's targets, from
             bench/capacity_inputs.json (--update from results; --write docs/capacity.md)

Every scenario starts its own server (``--url`` uses a running one), prints
a table and writes a JSON result under bench/results/.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from bench.common import Result, print_result, raise_nofile_limit
from bench.scenarios import fanout, simple
from bench.scenarios.base import Options, add_common_arguments, server_settings

Runner = Callable[[Options, argparse.Namespace], Result]

#: scenario -> (help, argument adder, runner, accepts peers)
SCENARIOS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner, bool]] = {
    "fanout": ("one publisher, N subscribers in one channel", fanout.add_arguments,
               fanout.run_fanout, True),
    "ingest": ("durable messages/s through the gateway and the group-commit writer",
               simple.add_ingest_arguments, simple.run_ingest, False),
    "echo": ("round trips per second", simple.add_echo_arguments, simple.run_echo, True),
    "idle": ("server memory per idle connection", simple.add_idle_arguments,
             simple.run_idle, True),
    "crossnode": ("fanout across two gateways and Redis", fanout.add_arguments,
                  fanout.run_crossnode, False),
    "presence": ("heartbeats absorbed/s, Redis commands per 1,000 heartbeats",
                 simple.add_presence_arguments, simple.run_presence, False),
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (help_, add, _, peers) in SCENARIOS.items():
        p = sub.add_parser(name, help=help_)
        add_common_arguments(p, peers=peers)
        add(p)
    p = sub.add_parser("compare", help="run a scenario on every server, print ratios")
    p.add_argument("scenario", choices=["fanout", "echo", "idle"])
    p.add_argument("--servers", default="parley,picows,websockets,aiohttp,node-ws",
                   help="comma-separated servers (first = the baseline of the ratios)")
    add_common_arguments(p, peers=True)
    # The union of the scenarios' own options; each run uses what applies.
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--publishers", type=int, default=24)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--connections", type=int, default=None)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--transport-only", action="store_true")
    p = sub.add_parser("report", help="JSON results -> docs/benchmarks.md and docs/img/")
    from bench import report

    report.add_arguments(p)
    p = sub.add_parser("capacity", help="cores of each kind for the design's targets "
                                        "(docs/capacity.md)")
    from bench import capacity

    capacity.add_arguments(p)
    return ap


#: Benchmarks with their own option parsers: ``python -m bench NAME ...``
#: hands the rest of the command line to ``bench.NAME.main``.
STANDALONE = {"app_events": "bench.app_events"}


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] in STANDALONE:
        import importlib

        standalone: Callable[[list[str]], int] = importlib.import_module(
            STANDALONE[args_in[0]]).main
        return standalone(args_in[1:])
    ap = parser()
    args = ap.parse_args(args_in)
    if args.command not in ("report", "capacity"):
        try:
            server_settings(getattr(args, "server_settings", None) or ())
        except ValueError as exc:
            ap.error(str(exc))  # exit status 2 with the usage, like any bad option
    if args.command == "report":
        from bench import report

        return report.main(args)
    if args.command == "capacity":
        from bench import capacity

        return capacity.main(args)
    raise_nofile_limit()
    if args.command == "compare":
        from bench import compare

        return compare.main(args)
    _, _, runner, _ = SCENARIOS[args.command]
    opts = Options.from_args(args)
    result = runner(opts, args)
    path = result.save(opts.out)
    print_result(result, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
