"""The capacity model: the cores of each kind the design's targets take.

``python -m bench capacity [--update] [--write docs/capacity.md]``

Rules for this file:

* Pure functions over plain data: ``compute(inputs, targets, assumptions)``
  does arithmetic only, ``update_inputs(inputs, results_dir)`` only reads
  files; printing and writing live in ``bench/capacity_doc.py`` and
  ``main``.  So the model is tested on hand-checked numbers
  (tests/bench/test_capacity.py) and ``docs/capacity.md`` is a function of
  ``bench/capacity_inputs.json`` alone (a test regenerates it and compares).
* Every measured figure comes from ``bench/capacity_inputs.json`` with its
  provenance; every assumed one is a field of ``Assumptions`` or ``Targets``
  with a comment saying why.  Nothing measured is typed in here.
* CPU is in CPU-microseconds per unit of work on the machine that measured it
  (the project's 2-vCPU VM), so "cores" means cores of that machine.

Theory of operation
-------------------
A kind's CPU, in cores, is the sum over the loads it carries of load/s x
CPU-s per unit; the cores to provision are that divided by the utilisation
we allow (``Assumptions.utilisation``), rounded up.  Memory for idle
connections is sized the same way.  See docs/capacity.md, which this module
generates, for the formulas with the figures in them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import load_results
from gateway.protocol import HEARTBEAT_INTERVAL_MS

BENCH_DIR = Path(__file__).resolve().parent
INPUTS_PATH = BENCH_DIR / "capacity_inputs.json"
RESULTS_DIR = BENCH_DIR / "results"
DOC_PATH = BENCH_DIR.parent / "docs" / "capacity.md"
#: Version of capacity_inputs.json (bump when a field changes meaning).
INPUTS_SCHEMA = 1

US_PER_S = 1e6
BYTES_PER_GIB = 1024 ** 3
BYTES_PER_MIB = 1024 ** 2
SECONDS_PER_HOUR = 3600.0


# --------------------------------------------------------------------------- targets


#: The design's presence population: users whose clients heartbeat.
HEARTBEAT_USERS = 20_000_000


@dataclass(frozen=True)
class Targets:
    """The design's peak load (issue 21, docs/architecture.md)."""

    messages_per_s: float = 100_000.0  # durable messages/s at peak
    connections: int = 10_000_000  # concurrent WebSocket connections
    #: 20M users / the heartbeat interval the gateway announces (30 s,
    #: gateway.protocol.HEARTBEAT_INTERVAL_MS): 666,667/s.
    heartbeats_per_s: float = HEARTBEAT_USERS / (HEARTBEAT_INTERVAL_MS / 1000.0)
    presence_users: int = HEARTBEAT_USERS  # users whose presence changes reach Redis


@dataclass(frozen=True)
class Assumptions:
    """What is assumed, not measured; each one is a parameter of the model."""

    #: Online recipient sockets per message, the sender's own socket not
    #: counted.  No operator publishes this average; most messages go to DMs
    #: and small team channels (a few online members each), a few to big
    #: channels whose deliveries dominate the mean.  20 is our assumption;
    #: the sensitivity table shows 10 and 40.
    fanout: float = 20.0
    #: Share of a core we plan to use.  0.6 leaves 40% for two things: p99
    #: latency stays flat only well below saturation (the ingest runs: ack p99
    #: 40-90 ms at 40% of saturation, 400+ ms at saturation), and when one node
    #: of a tier is lost the survivors take its load (at 0.6, a tier of 3+
    #: nodes absorbs one loss and stays under 0.9).
    utilisation: float = 0.6
    #: Online recipients of one message on the same gateway process.  1:
    #: connections placed at random over hundreds of processes, so each
    #: recipient is on its own (the upper bound on hub traffic); more when a
    #: workspace's users are placed on the same gateways.
    recipients_per_gateway: float = 1.0
    #: Presence changes (connect, away, back, disconnect) per user per hour;
    #: each one is a store write and a hub publish.  Assumed.
    presence_changes_per_user_hour: float = 4.0
    #: Gateway processes subscribed to a user's presence topic (people who
    #: have the user on screen).  Assumed equal to the fan-out default.
    presence_watcher_nodes: float = 20.0
    #: Cores and memory of one machine of any kind (the issue's 16-core machine).
    node_cores: int = 16
    node_memory_gib: float = 64.0
    #: Kernel memory per idle TCP connection, which process RSS does not
    #: include: this kernel's slab objects for one socket (TCP, inode, file,
    #: dentry, epoll item: 3,712 B by /proc/slabinfo) rounded up to 4 KiB.
    kernel_bytes_per_connection: float = 4096.0

    def scaled(self, **factors: float) -> Assumptions:
        return dataclasses.replace(self, **{k: getattr(self, k) * v for k, v in factors.items()})


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Spec:
    """One measured input: where ``--update`` finds it."""

    unit: str
    what: str
    #: Result kind: a ``bench.common.Result`` scenario, or ``pg_cost`` /
    #: ``redis_cost`` (files ``<kind>-*.json``); None: from a docs table only.
    kind: str | None
    #: Which results qualify (newest qualifying one wins).
    select: Callable[[Mapping[str, Any]], bool] | None = None
    #: The figure inside the result: a path of keys.
    path: tuple[str, ...] = ()
    #: Multiplier from the result's unit to ``unit``.
    scale: float = 1.0


def _parley(r: Mapping[str, Any]) -> bool:
    return r.get("server") == "parley"


def _ingest(r: Mapping[str, Any]) -> bool:
    return _parley(r) and r.get("parameters", {}).get("text") == "realistic"


def _paced_fanout(r: Mapping[str, Any]) -> bool:
    # Open loop (``--rate``): deliveries leave one per write, as they do when
    # each socket gets a message now and then.  The closed loop coalesces
    # several messages per write and would understate the cost.
    return _parley(r) and float(r.get("parameters", {}).get("rate") or 0) > 0


def _presence(r: Mapping[str, Any]) -> bool:
    return _parley(r) and not r.get("parameters", {}).get("acked")


def _idle(r: Mapping[str, Any]) -> bool:
    return _parley(r) and not r.get("parameters", {}).get("transport_only")


def _pg_batch(size: int) -> Callable[[Mapping[str, Any]], bool]:
    """pg_cost runs of realistic text in batches of ``size``."""
    def select(r: Mapping[str, Any]) -> bool:
        p = r.get("parameters", {})
        return p.get("batch") == size and p.get("text", "realistic") == "realistic" \
            and p.get("size") is None
    return select


#: The group-commit batch of the standard pg_cost run (its default), and the
#: small batches a lightly loaded writer lane commits.
PG_BATCH = 300
PG_SMALL_BATCHES = (10, 2)


SPECS: dict[str, Spec] = {
    "gateway_us_per_message": Spec(
        "CPU-µs / durable message", "gateway: read, validate, commit, ack, the sender's own "
        "event (ingest, realistic text)", "ingest", _ingest,
        ("extra", "cpu_us_per_message", "gateway")),
    "postgresql_us_per_message_ingest": Spec(
        "CPU-µs / durable message", "every PostgreSQL process during ingest (commit, WAL, "
        "background, and the in-process indexer's backend)", "ingest", _ingest,
        ("extra", "cpu_us_per_message", "postgresql")),
    "gateway_us_per_delivery": Spec(
        "CPU-µs / delivery", "gateway: one message.created to one more socket (open-loop "
        "fanout, one write per delivery)", "fanout", _paced_fanout, ("cpu_s_per_million",)),
    "gateway_us_per_heartbeat": Spec(
        "CPU-µs / heartbeat", "gateway: one ref-less heartbeat, one read each", "presence",
        _presence, ("extra", "cpu_us_per_heartbeat")),
    "redis_commands_per_1000_heartbeats": Spec(
        "commands / 1,000 heartbeats", "Redis commands the heartbeats cause (lease renewals, "
        "flushes)", "presence", _presence, ("extra", "redis_commands_per_1000_heartbeats")),
    "gateway_bytes_per_connection": Spec(
        "bytes / connection", "gateway RSS per idle, authenticated, subscribed session",
        "idle", _idle, ("extra", "bytes_per_connection")),
    "gateway_base_rss_mib": Spec(
        "MiB / process", "gateway RSS before the idle run's connections (the process's own "
        "heap, code and pools)", "idle", _idle, ("extra", "rss_before_kib"), 1 / 1024),
    "postgresql_us_per_message_commit": Spec(
        "CPU-µs / durable message", f"PostgreSQL backend running parley_append_batch (batches "
        f"of {PG_BATCH}, realistic text)", "pg_cost", _pg_batch(PG_BATCH),
        ("after", "cpu_us_per_message")),
    **{f"postgresql_us_per_message_batch_{b}": Spec(
        "CPU-µs / durable message", f"the same in batches of {b}", "pg_cost", _pg_batch(b),
        ("after", "cpu_us_per_message")) for b in PG_SMALL_BATCHES},
    "indexer_us_per_message": Spec(
        "CPU-µs / message", "PostgreSQL backend applying the search queue (tsvector + GIN, "
        "batches of 500)", "pg_cost", _pg_batch(PG_BATCH), ("indexer", "cpu_us_per_message")),
    "redis_us_per_publish": Spec(
        "CPU-µs / PUBLISH", "Redis: one PUBLISH of a message publication, nobody subscribed "
        "(fit intercept)", "redis_cost", None, ("cpu_us_per_publish_base",)),
    "redis_us_per_delivery": Spec(
        "CPU-µs / subscriber", "Redis: each subscribed connection the publication goes to "
        "(fit slope)", "redis_cost", None, ("cpu_us_per_delivery",)),
    "redis_us_per_presence_change": Spec(
        "CPU-µs / changed user", "Redis: RedisPresenceStore.sync per changed user plus its "
        "p:<user> PUBLISH", "redis_cost", None, ("presence", "cpu_us_per_change")),
    "redis_us_per_command": Spec(
        "CPU-µs / command", "Redis: mean over the presence sync's commands", "redis_cost",
        None, ("presence", "cpu_us_per_command")),
    "gateway_us_per_hub_publish": Spec(
        "CPU-µs / payload", "gateway: RedisHub.publish_many per payload", "redis_cost", None,
        ("hub", "publisher_cpu_us_per_payload")),
    "gateway_us_per_hub_receive": Spec(
        "CPU-µs / payload", "gateway: RedisHub receiving one payload (RESP parse, dispatch)",
        "redis_cost", None, ("hub", "subscriber_cpu_us_per_payload")),
    "gateway_us_per_router_event": Spec(
        "CPU-µs / event", "gateway: the router's work per channel event at one local "
        "subscriber (bench/router_cpu.py, msgpack)", None),
}

def value(inputs: Mapping[str, Any], name: str) -> float:
    """The measured value of input ``name`` (KeyError if it is missing)."""
    return float(inputs["figures"][name]["value"])


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _command(kind: str, r: Mapping[str, Any]) -> str:
    """The command line a result's parameters stand for (results do not store it)."""
    p = r.get("parameters", {})
    if kind in ("pg_cost", "redis_cost"):
        flags = {k.replace("_", "-"): v for k, v in p.items()
                 if v is not None and k not in ("size",)}
        return f"python -m bench.{kind} " + " ".join(f"--{k} {v}" for k, v in flags.items())
    names = {"senders": "--senders", "rate_per_socket": "--rate", "subscribers": "--subscribers",
             "size": "--size", "window": "--window", "rate": "--rate",
             "connections": "--connections", "duration_s": "--duration"}
    parts = [f"python -m bench {kind}"]
    for key, flag in names.items():
        if key in p and not (kind == "ingest" and key == "size"):
            parts.append(f"{flag} {p[key]:g}" if isinstance(p[key], float) else
                         f"{flag} {p[key]}")
    for key, flag in (("pinned", "--pin"), ("acked", "--ack"),
                      ("transport_only", "--transport-only")):
        if p.get(key):
            parts.append(flag)
    return " ".join(parts)


def _provenance(kind: str, r: Mapping[str, Any], file: Path) -> dict[str, Any]:
    machine = r.get("machine") or {}
    out = {"result": file.name, "command": _command(kind, r),
           "date": r.get("started_at"), "revision": r.get("revision"),
           "machine": (f"{machine.get('cpus')} vCPUs {machine.get('cpu_model')}"
                       if machine else None)}
    # How busy the rest of the machine was: a busy machine inflates CPU per unit.
    other = (r.get("extra") or {}).get("other_busy_cores")
    if other is not None:
        out["other_load_cores"] = other
    if r.get("loadavg_1m_start") is not None:
        out["loadavg_1m"] = [r.get("loadavg_1m_start"), r.get("loadavg_1m_end")]
    return out


def newest_results(results_dir: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """For each input, the newest result file that qualifies, and its object."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    scenario_results = load_results([results_dir]) if results_dir.is_dir() else []
    by_kind: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for r in scenario_results:
        by_kind.setdefault(str(r["scenario"]), []).append((Path(r["_file"]), r))
    for kind in ("pg_cost", "redis_cost"):
        for f in sorted(results_dir.glob(f"{kind}-*.json")) if results_dir.is_dir() else []:
            try:
                obj = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(obj, dict):
                by_kind.setdefault(kind, []).append((f, obj))
    for name, spec in SPECS.items():
        if spec.kind is None:
            continue
        # Newest first, by the time stamp every result file's name ends in
        # (the parameters before it differ between runs of one scenario).
        candidates = sorted(by_kind.get(spec.kind, []), key=lambda fr: _stamp(fr[0]),
                            reverse=True)
        for f, r in candidates:
            if spec.select is not None and not spec.select(r):
                continue
            if _has(r, spec.path):
                found[name] = (f, r)
                break
    return found


_STAMP = re.compile(r"(\d{8}T\d{6}\d*)\.json$")


def _stamp(f: Path) -> tuple[str, str]:
    """Sort key of a result file: the time stamp ending its name, then the name."""
    m = _STAMP.search(f.name)
    return (m.group(1).ljust(21, "0") if m else "", f.name)


def _has(r: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    try:
        v = _dig(r, path)
    except (KeyError, TypeError, IndexError):
        return False
    return isinstance(v, int | float) and not isinstance(v, bool)


def update_inputs(inputs: Mapping[str, Any], results_dir: Path) -> tuple[dict[str, Any],
                                                                           list[str]]:
    """A copy of ``inputs`` with every figure that a newer result in
    ``results_dir`` measures replaced (value and provenance); the names changed.

    A figure no result measures (or one from a docs table) keeps its entry.
    A result older than the entry's own date does not replace it.
    """
    out = json.loads(json.dumps(inputs))
    out.setdefault("schema", INPUTS_SCHEMA)
    figures = out.setdefault("figures", {})
    changed = []
    for name, (f, r) in newest_results(results_dir).items():
        spec = SPECS[name]
        assert spec.kind is not None
        old = figures.get(name, {})
        old_date = (old.get("source") or {}).get("date")
        new_date = r.get("started_at")
        if old_date and new_date and str(new_date) < str(old_date):
            continue
        v = float(_dig(r, spec.path)) * spec.scale
        entry = {"value": round(v, 3), "unit": spec.unit, "what": spec.what,
                 "source": _provenance(spec.kind, r, f)}
        if entry != old:
            figures[name] = entry
            changed.append(name)
    return out, changed


def load_inputs(path: Path = INPUTS_PATH) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(path.read_text())
    return obj


def dump_inputs(inputs: Mapping[str, Any]) -> str:
    return json.dumps(inputs, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Load:
    """One load a kind carries: units/s x CPU-µs per unit."""

    kind: str  # gateway, postgresql, indexer, redis
    what: str
    per_s: float
    us_per_unit: float
    figure: str  # the input (or derivation) the cost comes from

    @property
    def cores(self) -> float:
        """CPU in use, in cores (before headroom)."""
        return self.per_s * self.us_per_unit / US_PER_S


KINDS = ("gateway", "postgresql", "indexer", "redis")


@dataclass(frozen=True)
class Model:
    """What ``compute`` returns: the loads, and cores per kind with headroom."""

    targets: Targets
    assumptions: Assumptions
    loads: tuple[Load, ...]
    #: PostgreSQL's commit path, CPU-µs per message: the larger of the paths.
    postgresql_us_per_message: float
    postgresql_path: str
    #: Distinct gateway processes one message is published to through Redis.
    nodes_per_message: float

    def busy_cores(self, kind: str) -> float:
        return sum(x.cores for x in self.loads if x.kind == kind)

    def cores(self, kind: str) -> int:
        """Cores to provision: busy cores / utilisation, rounded up."""
        return provision(self.busy_cores(kind), self.assumptions.utilisation)

    @property
    def total_cores(self) -> int:
        return sum(self.cores(k) for k in KINDS)

    @property
    def gateway_processes(self) -> int:
        """One gateway process per core (``--workers`` defaults to the cores)."""
        return self.cores("gateway")

    def memory_gib(self, inputs: Mapping[str, Any]) -> float:
        """Gateway memory for the connections, with headroom."""
        a = self.assumptions
        per_conn = value(inputs, "gateway_bytes_per_connection") + a.kernel_bytes_per_connection
        base = value(inputs, "gateway_base_rss_mib") * BYTES_PER_MIB * self.gateway_processes
        return (self.targets.connections * per_conn + base) / a.utilisation / BYTES_PER_GIB

    def machines(self, kind: str) -> int:
        return math.ceil(self.cores(kind) / self.assumptions.node_cores)

    def gateway_machines(self, inputs: Mapping[str, Any]) -> dict[str, int]:
        """Gateway machines by memory, by heartbeat CPU alone, by all CPU."""
        a = self.assumptions
        hb = sum(x.cores for x in self.loads if x.kind == "gateway" and x.figure ==
                 "gateway_us_per_heartbeat")
        return {"memory": math.ceil(self.memory_gib(inputs) / a.node_memory_gib),
                "heartbeats": math.ceil(provision(hb, a.utilisation) / a.node_cores),
                "cpu": self.machines("gateway")}


def provision(busy_cores: float, utilisation: float) -> int:
    """Cores to provision for ``busy_cores`` of work at ``utilisation``.

    Rounded up after a relative 1e-9, so float noise (3.0000000001) does not
    buy a core.
    """
    return math.ceil(busy_cores / utilisation * (1 - 1e-9)) if busy_cores > 0 else 0


def postgresql_path(inputs: Mapping[str, Any]) -> tuple[float, str]:
    """PostgreSQL CPU-µs per message on the commit path: the max over the paths
    measured.  ``bench.pg_cost`` times the one backend running the batch;
    the ingest run counts every postgres process (WAL writer, checkpointer,
    statistics) and, since ``parley serve`` runs the indexer, the indexer's
    backend too, so its figure less the indexer's is the commit path with
    the background processes."""
    commit = value(inputs, "postgresql_us_per_message_commit")
    figures = inputs["figures"]
    if "postgresql_us_per_message_ingest" not in figures:
        return commit, "postgresql_us_per_message_commit"
    ingest = value(inputs, "postgresql_us_per_message_ingest") - value(
        inputs, "indexer_us_per_message")
    if ingest > commit:
        return ingest, "postgresql_us_per_message_ingest - indexer_us_per_message"
    return commit, "postgresql_us_per_message_commit"


def compute(inputs: Mapping[str, Any], targets: Targets | None = None,
            assumptions: Assumptions | None = None, *,
            message_cost_factor: float = 1.0) -> Model:
    """The model for ``targets`` under ``assumptions`` (defaults: the design's).

    ``message_cost_factor`` scales every per-message CPU figure (gateway,
    PostgreSQL, indexer, Redis publish), for the sensitivity table.
    """
    t = targets or Targets()
    a = assumptions or Assumptions()
    k = message_cost_factor

    def v(name: str) -> float:
        return value(inputs, name)

    pg_us, pg_path = postgresql_path(inputs)
    m = t.messages_per_s
    # Gateway processes a message reaches through the hub: its recipients over
    # how many of them share a process (Assumptions.recipients_per_gateway),
    # at most the processes there are (the second pass below).
    nodes = a.fanout / a.recipients_per_gateway
    changes = t.presence_users * a.presence_changes_per_user_hour / SECONDS_PER_HOUR
    gateway_hub_per_payload = v("gateway_us_per_hub_receive") + v("gateway_us_per_router_event")
    for _ in range(2):  # the second pass only when processes turn out fewer than recipients
        loads = (
            Load("gateway", "durable messages in (ingest path)", m,
                 k * v("gateway_us_per_message"), "gateway_us_per_message"),
            Load("gateway", "messages published to the hub", m,
                 k * v("gateway_us_per_hub_publish"), "gateway_us_per_hub_publish"),
            Load("gateway", "hub payloads received (messages x processes)", m * nodes,
                 gateway_hub_per_payload,
                 "gateway_us_per_hub_receive + gateway_us_per_router_event"),
            Load("gateway", "deliveries (messages x fan-out)", m * a.fanout,
                 v("gateway_us_per_delivery"), "gateway_us_per_delivery"),
            Load("gateway", "heartbeats", t.heartbeats_per_s, v("gateway_us_per_heartbeat"),
                 "gateway_us_per_heartbeat"),
            Load("postgresql", "durable messages (commit path)", m, k * pg_us, pg_path),
            Load("indexer", "messages indexed for search", m, k * v("indexer_us_per_message"),
                 "indexer_us_per_message"),
            Load("redis", "PUBLISH of messages", m, k * v("redis_us_per_publish"),
                 "redis_us_per_publish"),
            Load("redis", "publications to subscribed gateways", m * nodes,
                 v("redis_us_per_delivery"), "redis_us_per_delivery"),
            Load("redis", "presence changes (store + PUBLISH)", changes,
                 v("redis_us_per_presence_change"), "redis_us_per_presence_change"),
            Load("redis", "presence changes to watching gateways", changes *
                 a.presence_watcher_nodes, v("redis_us_per_delivery"),
                 "redis_us_per_delivery"),
            Load("redis", "commands caused by heartbeats",
                 t.heartbeats_per_s * v("redis_commands_per_1000_heartbeats") / 1000.0,
                 v("redis_us_per_command"), "redis_us_per_command"),
        )
        model = Model(t, a, loads, k * pg_us, pg_path, nodes)
        if model.gateway_processes >= nodes:
            return model
        nodes = float(max(1, model.gateway_processes))
    return model


#: Sensitivity rows: (label, assumption factors, target factor, message cost factor).
SENSITIVITY: tuple[tuple[str, dict[str, float], float, float], ...] = (
    ("as assumed", {}, 1.0, 1.0),
    ("fan-out x0.5", {"fanout": 0.5}, 1.0, 1.0),
    ("fan-out x2", {"fanout": 2.0}, 1.0, 1.0),
    ("messages/s x0.5", {}, 0.5, 1.0),
    ("messages/s x2", {}, 2.0, 1.0),
    ("CPU per message x0.5", {}, 1.0, 0.5),
    ("CPU per message x2", {}, 1.0, 2.0),
)


def sensitivity(inputs: Mapping[str, Any], targets: Targets | None = None,
                assumptions: Assumptions | None = None) -> list[tuple[str, Model]]:
    """The model with fan-out, message rate or CPU per message at 0.5x and 2x."""
    t = targets or Targets()
    a = assumptions or Assumptions()
    rows = []
    for label, factors, rate, cost in SENSITIVITY:
        tt = dataclasses.replace(t, messages_per_s=t.messages_per_s * rate)
        rows.append((label, compute(inputs, tt, a.scaled(**factors), message_cost_factor=cost)))
    return rows


# --------------------------------------------------------------------------- command line


def add_arguments(p: Any) -> None:
    """Options of ``python -m bench capacity`` (an ``argparse`` parser)."""
    d, t = Assumptions(), Targets()
    p.add_argument("--inputs", type=Path, default=INPUTS_PATH,
                   help="measured figures (default: bench/capacity_inputs.json)")
    p.add_argument("--results", type=Path, default=RESULTS_DIR,
                   help="result files --update reads (default: bench/results/)")
    p.add_argument("--update", action="store_true",
                   help="refresh the inputs from the newest results, write them back")
    p.add_argument("--write", type=Path, metavar="PATH",
                   help="regenerate the doc (docs/capacity.md) at PATH")
    p.add_argument("--check", type=Path, metavar="PATH",
                   help="exit 1 if PATH differs from what --write would generate")
    p.add_argument("--messages-per-s", type=float, default=t.messages_per_s)
    p.add_argument("--connections", type=int, default=t.connections)
    p.add_argument("--heartbeats-per-s", type=float, default=t.heartbeats_per_s)
    for f in dataclasses.fields(Assumptions):
        default = getattr(d, f.name)
        p.add_argument("--" + f.name.replace("_", "-"), type=type(default), default=default,
                       help=f"assumption (default {default:g})")


def main(args: Any) -> int:
    """Run the ``capacity`` subcommand; returns the exit status."""
    from bench import capacity_doc

    inputs = load_inputs(args.inputs)
    if args.update:
        inputs, changed = update_inputs(inputs, args.results)
        args.inputs.write_text(dump_inputs(inputs))
        print(f"{args.inputs}: {len(changed)} figure(s) updated"
              + (f": {', '.join(changed)}" if changed else ""))
    targets = Targets(messages_per_s=args.messages_per_s, connections=args.connections,
                      heartbeats_per_s=args.heartbeats_per_s)
    assumptions = Assumptions(**{f.name: getattr(args, f.name)
                                 for f in dataclasses.fields(Assumptions)})
    missing = [name for name in SPECS if name not in inputs.get("figures", {})]
    if missing:
        print(f"missing inputs: {', '.join(missing)} (run the benchmarks, then --update)")
        return 1
    print(capacity_doc.text_report(inputs, targets, assumptions))
    doc = capacity_doc.render_doc(inputs, targets, assumptions)
    if args.write:
        args.write.write_text(doc)
        print(f"wrote {args.write}")
    if args.check:
        same = args.check.is_file() and args.check.read_text() == doc
        print(f"{args.check}: {'up to date' if same else 'differs from the inputs; regenerate'}")
        return 0 if same else 1
    return 0
