"""``python -m bench report``: JSON results -> Markdown tables and PNG charts.

The tables replace the block between ``<!-- bench-report:begin -->`` and
``<!-- bench-report:end -->`` in docs/benchmarks.md (appended when absent),
so the hand-written text around them survives a regeneration.  For each
scenario and parameter set the newest result per server is shown.  Charts
(matplotlib, Agg backend, no display needed) go to docs/img/:

* ``fanout-throughput.png``: deliveries/s against subscribers, per server and size;
* ``fanout-latency.png``: p50/p99/p99.9 at each subscriber count, per server;
* ``idle-memory.png``: server bytes per idle connection, per server;
* ``echo.png``: round trips/s per server and configuration.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, fmt, load_results

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- bench-report:begin -->"
END = "<!-- bench-report:end -->"
SERVER_ORDER = ("parley", "picows", "websockets", "aiohttp", "node-ws")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="*", type=Path,
                   help="result files or directories (default bench/results/)")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--no-charts", action="store_true", help="tables only")


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    p = r["parameters"]
    return (r["scenario"], r["server"], p.get("subscribers"), p.get("size"),
            p.get("connections"), p.get("senders"), p.get("rate") or 0,
            p.get("window") if r["scenario"] in ("fanout", "crossnode") else None,
            bool(p.get("transport_only")), _settings(r))


def _settings(r: dict[str, Any]) -> str:
    """The ``--server-setting`` values of a run ("" for the defaults)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(r["parameters"].get("server_settings",
                                                                        {}).items()))


def latest(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest result for each (scenario, server, parameters)."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in results:
        k = _key(r)
        if k not in best or r.get("started_at", "") >= best[k].get("started_at", ""):
            best[k] = r
    return sorted(best.values(), key=lambda r: (
        r["scenario"], r["parameters"].get("subscribers") or 0, r["parameters"].get("size") or 0,
        r["parameters"].get("connections") or 0, r["parameters"].get("rate") or 0,
        -(r["parameters"].get("window") or 0), _server_rank(r["server"])))


def _server_rank(server: str) -> int:
    return SERVER_ORDER.index(server) if server in SERVER_ORDER else len(SERVER_ORDER)


def _md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _gen(r: dict[str, Any]) -> str:
    g = r.get("generator", {})
    share = g.get("max_cpu_share")
    return f"{share:.2f}{' (saturated)' if g.get('saturated') else ''}" if share else "-"


def _other(r: dict[str, Any]) -> float | None:
    """Cores other processes used during the window (a busy machine's mark)."""
    v = r.get("extra", {}).get("other_busy_cores")
    return round(float(v), 2) if v is not None else None


#: Notes that every row of a busy machine carries; the "other load" column says it.
_ROUTINE_NOTES = ("other processes on the machine", "the machine was")


def _label(r: dict[str, Any]) -> str:
    """The parameters that tell a row apart, for the notes under a table."""
    p = r["parameters"]
    keys = ("subscribers", "size", "connections", "senders", "rate", "window", "transport_only",
            "text")
    return ", ".join([f"{k} {p[k]}" for k in keys if p.get(k)]
                     + ([f"server {_settings(r)}"] if _settings(r) else []))


def _ratio_to_parley(r: dict[str, Any], group: list[dict[str, Any]]) -> float | None:
    base = next((x for x in group if x["server"] == "parley"), None)
    if base is None or not base["throughput"]:
        return None
    return round(float(r["throughput"]) / float(base["throughput"]), 2)


def tables(results: list[dict[str, Any]]) -> str:
    """Markdown for every scenario present in ``results``."""
    out: list[str] = []
    by: dict[str, list[dict[str, Any]]] = {}
    for r in latest(results):
        by.setdefault(r["scenario"], []).append(r)
    for scenario in ("fanout", "crossnode", "ingest", "echo", "idle", "presence"):
        rows_in = by.get(scenario)
        if not rows_in:
            continue
        out.append(f"### {scenario}\n")
        if scenario in ("fanout", "crossnode"):
            rows = []
            for r in rows_in:
                p = r["parameters"]
                group = [x for x in rows_in
                         if all(x["parameters"].get(k) == p.get(k)
                                for k in ("subscribers", "size", "window"))
                         and not x["parameters"].get("rate") and _settings(x) == _settings(r)]
                lat = r["latency"]
                offered = (f"{p['rate']:,.0f} msg/s" if p.get("rate")
                           else f"closed loop, window {p.get('window')}")
                if _settings(r):
                    offered += f"; server {_settings(r)}"
                rows.append([r["server"], p.get("subscribers"), p.get("size"), offered,
                             r["throughput"],
                             None if p.get("rate") else _ratio_to_parley(r, group),
                             lat.get("p50_ms"), lat.get("p99_ms"),
                             lat.get("p999_ms"), r["server_cpu_s"], r["cpu_s_per_million"],
                             r["server_peak_rss_mib"], _gen(r), _other(r)])
            out.append(_md(["server", "subscribers", "size B", "load", "deliveries/s", "x parley",
                            "p50 ms", "p99 ms", "p99.9 ms", "server CPU s",
                            "CPU s / M deliveries", "peak RSS MiB", "generator max core",
                            "other load (cores)"], rows))
        elif scenario == "idle":
            rows = [[r["server"] + (" (transport only)" if r["parameters"].get("transport_only")
                                    else ""), r["extra"].get("connected"),
                     r["extra"].get("bytes_per_connection"),
                     round(r["extra"].get("bytes_per_connection", 0) / 1000, 1)
                     if r["extra"].get("bytes_per_connection") else None,
                     r["server_peak_rss_mib"]] for r in rows_in]
            out.append(_md(["server", "connections", "bytes / connection", "KB / connection",
                            "peak RSS MiB"], rows))
        elif scenario == "echo":
            rows = []
            for r in rows_in:
                p = r["parameters"]
                group = [x for x in rows_in if x["parameters"].get("connections")
                         == p.get("connections") and x["parameters"].get("size") == p.get("size")]
                rows.append([r["server"], p.get("connections"), p.get("size"), r["throughput"],
                             _ratio_to_parley(r, group), r["latency"].get("p50_ms"),
                             r["latency"].get("p99_ms"), r["server_cpu_s"],
                             r["cpu_s_per_million"], _gen(r), _other(r)])
            out.append(_md(["server", "connections", "size B", "round trips/s", "x parley",
                            "p50 ms", "p99 ms", "server CPU s", "CPU s / M",
                            "generator max core", "other load (cores)"], rows))
        else:
            unit = rows_in[0]["throughput_unit"]
            rows = []
            for r in rows_in:
                p = r["parameters"]
                size = p.get("senders") or p.get("connections")
                if _settings(r):
                    size = f"{size:,} (server {_settings(r)})"
                redis = r["extra"].get("redis_commands_per_1000_heartbeats")
                if scenario == "presence" and r["extra"].get("presence_figure") == "pending":
                    redis = f"{redis} (pending)"
                rows.append([size, r["throughput"], r["latency"].get("p50_ms"),
                             r["latency"].get("p99_ms"), r["latency"].get("p999_ms"),
                             r["server_cpu_s"], r["cpu_s_per_million"],
                             r["extra"].get("db_cpu_s"), redis if scenario == "presence" else "-",
                             _gen(r), _other(r)])
            out.append(_md(["sockets", unit, "p50 ms", "p99 ms", "p99.9 ms", "server CPU s",
                            "CPU s / M", "PostgreSQL CPU s", "Redis cmds / 1000",
                            "generator max core", "other load (cores)"], rows))
        notes = sorted({f"{r['server']} ({_label(r)}): {n}" for r in rows_in
                        for n in r.get("notes", []) if not n.startswith(_ROUTINE_NOTES)})
        if notes:
            out.append("\nNotes recorded with these runs:\n")
            out += [f"- {n}" for n in notes]
        out.append("")
    return "\n".join(out)


def charts(results: list[dict[str, Any]], img_dir: Path) -> list[Path]:
    """Write the PNG charts; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows = latest(results)
    fan = [r for r in rows if r["scenario"] == "fanout"]
    if fan:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for server in sorted({r["server"] for r in fan}, key=_server_rank):
            for size in sorted({r["parameters"]["size"] for r in fan}):
                pts = sorted((r["parameters"]["subscribers"], r["throughput"]) for r in fan
                             if r["server"] == server and r["parameters"]["size"] == size
                             and not r["parameters"].get("rate")
                             and r["parameters"].get("window", 32) == 32)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                            label=f"{server} {size} B")
        ax.set_xscale("log")
        ax.set_xlabel("subscribers (closed loop, window 32)")
        ax.set_ylabel("deliveries / s")
        ax.set_title("fan-out throughput (2-core machine, generator on the same host)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        path = img_dir / "fanout-throughput.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fan = [r for r in fan if r["parameters"]["subscribers"] == 1000] or fan
        fig, ax = plt.subplots(figsize=(9, 4.5))
        labels = [f"{r['server']}\n{r['parameters']['subscribers']}/{r['parameters']['size']}B"
                  + (f"\n@{r['parameters']['rate']:.0f}/s" if r["parameters"].get("rate")
                     else f"\nw{r['parameters'].get('window')}")
                  for r in fan]
        xs = range(len(fan))
        width = 0.27
        for j, (q, name) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"),
                                       ("p999_ms", "p99.9"))):
            ax.bar([x + (j - 1) * width for x in xs], [r["latency"].get(q) or 0 for r in fan],
                   width, label=name)
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_ylabel("ms (publisher send to delivery)")
        ax.set_yscale("log")
        ax.set_title("fan-out latency percentiles, 1,000 subscribers")
        ax.legend()
        fig.tight_layout()
        path = img_dir / "fanout-latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    idle = [r for r in rows if r["scenario"] == "idle" and r["extra"].get("bytes_per_connection")]
    if idle:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar([f"{r['server']}\n{r['extra'].get('connected')}" for r in idle],
               [r["extra"]["bytes_per_connection"] / 1000 for r in idle])
        ax.axhline(6.0, color="red", linestyle="--", label="target 6 KB")
        ax.set_ylabel("KB per idle connection (server RSS)")
        ax.set_title("memory per idle connection")
        ax.legend()
        fig.tight_layout()
        path = img_dir / "idle-memory.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    echo = [r for r in rows if r["scenario"] == "echo"]
    if echo:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar([f"{r['server']}\n{r['parameters']['connections']}c/{r['parameters']['size']}B"
                for r in echo], [r["throughput"] for r in echo])
        ax.set_ylabel("round trips / s")
        ax.set_title("echo")
        ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        path = img_dir / "echo.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def render(results: list[dict[str, Any]], images: list[Path], doc: Path) -> str:
    """The generated block (between the markers)."""
    parts = [BEGIN, "",
             "_Generated by `python -m bench report` from "
             f"{len(results)} result files; do not edit by hand._", ""]
    for img in images:
        rel = img.relative_to(doc.parent) if img.is_relative_to(doc.parent) else img
        parts.append(f"![{img.stem}]({rel.as_posix()})")
    if images:
        parts.append("")
    parts.append(tables(results))
    parts.append(END)
    return "\n".join(parts)


def splice(existing: str, block: str) -> str:
    """Replace the marked block in ``existing`` (or append it)."""
    if BEGIN in existing and END in existing:
        head, _, rest = existing.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + block + tail
    return existing.rstrip("\n") + "\n\n## Results\n\n" + block + "\n"


def main(args: argparse.Namespace) -> int:
    results = load_results(args.results or [RESULTS_DIR])
    if not results:
        print("no results found (run a scenario first: python -m bench fanout ...)")
        return 1
    images = [] if args.no_charts else charts(results, args.img_dir)
    doc: Path = args.output
    existing = doc.read_text() if doc.exists() else "# Benchmarks\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(splice(existing, render(results, images, doc)))
    print(f"wrote {doc} ({len(results)} results) and {len(images)} charts in {args.img_dir}")
    return 0
