"""docs/capacity.md and the printed table, from the capacity model.

Everything here is a function of ``bench/capacity_inputs.json`` through
``bench.capacity.compute``: no figure is typed in, so the doc cannot drift
from the inputs (tests/bench/test_capacity.py regenerates it and compares).
The prose says what each number means; the numbers come from the model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.capacity import (
    KINDS,
    PG_BATCH,
    PG_SMALL_BATCHES,
    SPECS,
    Assumptions,
    Model,
    Targets,
    compute,
    provision,
    sensitivity,
    value,
)
from parley.config import Settings

GENERATED_BY = "python -m bench capacity --write docs/capacity.md"

#: Why each assumption has its default (the doc's assumptions table).
WHY: dict[str, str] = {
    "fanout": "Online recipient sockets per message, the sender's own not counted. No "
              "operator publishes this average (we found none). Most messages go to DMs and "
              "small team channels with a few members online; a few go to big channels, whose "
              "deliveries dominate the mean. 20 is our assumption; the sensitivity table shows "
              "10 and 40.",
    "utilisation": "The share of a core we plan to use. 0.6 keeps 40% back for two things: "
                   "latency (the ingest runs' ack p99 is 40-90 ms at 40% of saturation and "
                   "400+ ms at saturation: queues grow steeply past ~70%), and losing one node "
                   "of a tier (its load spreads over the others: a tier of 3 or more nodes at "
                   "0.6 stays under 0.9 after one loss).",
    "recipients_per_gateway": "Online recipients of a message that share one gateway "
                              "process. 1 is the upper bound on hub traffic: connections "
                              "placed at random over hundreds of processes put each recipient "
                              "on its own. Placing a workspace's users on the same gateways "
                              "would raise it (not built).",
    "presence_changes_per_user_hour": "Connect, go away (10 min idle), come back, disconnect: "
                                      "each is a store write and a hub publish. Assumed.",
    "presence_watcher_nodes": "Gateway processes subscribed to a user's presence topic "
                              "(people with the user on screen). Assumed equal to the "
                              "fan-out.",
    "node_cores": "Cores per machine of any kind: the issue's 16-core machine.",
    "node_memory_gib": "Memory of a gateway machine (4 GiB per core). Assumed.",
    "kernel_bytes_per_connection": "Kernel memory per idle TCP connection, which process "
                                   "RSS does not show. Not measured by a run: the slab objects "
                                   "one accepted socket holds on this kernel (6.18, "
                                   "/proc/slabinfo object sizes: TCP 2,368 + sock_inode_cache "
                                   "832 + filp 192 + dentry 192 + eventpoll_epi 128 = 3,712 B), "
                                   "rounded up for the small allocations beside them; an idle "
                                   "socket's buffers are empty.",
}

KIND_NAMES = {"gateway": "gateway", "postgresql": "PostgreSQL (commit path)",
              "indexer": "search indexer (PostgreSQL backend)", "redis": "Redis"}


def n(x: float, digits: int = 0) -> str:
    """A number with thousands separators."""
    return f"{x:,.{digits}f}"


def sig(x: float) -> str:
    """A cost figure with about three significant digits."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return n(x, 0)
    if abs(x) >= 10:
        return n(x, 1)
    if abs(x) >= 1:
        return n(x, 2)
    return f"{x:.3g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def headline_rows(model: Model, bold: str = "**") -> list[list[str]]:
    rows = [[KIND_NAMES[kind], sig(model.busy_cores(kind)), n(model.cores(kind)),
             n(model.machines(kind))] for kind in KINDS]
    busy = sum(model.busy_cores(k) for k in KINDS)
    rows.append([f"{bold}total{bold}", sig(busy), f"{bold}{n(model.total_cores)}{bold}",
                 n(sum(model.machines(k) for k in KINDS))])
    return rows


def text_report(inputs: Mapping[str, Any], targets: Targets | None = None,
                assumptions: Assumptions | None = None) -> str:
    """What ``python -m bench capacity`` prints."""
    from bench.common import table

    model = compute(inputs, targets, assumptions)
    t, a = model.targets, model.assumptions
    out = [f"Capacity for {n(t.messages_per_s)} messages/s, {n(t.connections)} connections, "
           f"{n(t.heartbeats_per_s)} heartbeats/s (fan-out {a.fanout:g}, utilisation "
           f"{a.utilisation:g}; cores of the measuring machine, see docs/capacity.md)", ""]
    out.append(table(["load", "kind", "units/s", "CPU-us/unit", "busy cores"],
                     [[x.what, x.kind, n(x.per_s), sig(x.us_per_unit), sig(x.cores)]
                      for x in model.loads]))
    out.append("")
    out.append(table(["kind", "busy cores", f"cores at {a.utilisation:g}",
                      f"{a.node_cores}-core machines"], headline_rows(model, bold="")))
    gm = model.gateway_machines(inputs)
    out.append("")
    out.append(f"gateway machines: {gm['cpu']} by CPU, {gm['memory']} by memory of the "
               f"connections ({sig(model.memory_gib(inputs))} GiB), {gm['heartbeats']} by "
               "heartbeat CPU alone")
    out.append("")
    out.append(table(["case", *KINDS, "total"], [
        [label, *(m.cores(k) for k in KINDS), m.total_cores]
        for label, m in sensitivity(inputs, targets, assumptions)]))
    out.append("")
    out.append("Not measured on 16 cores: the 16-core run (issue 21) has not been done; "
               "this model stands in for it.")
    return "\n".join(out)


def _source(entry: Mapping[str, Any]) -> str:
    s = entry.get("source") or {}
    parts = []
    if s.get("command"):
        parts.append(f"`{s['command']}`")
    if s.get("table"):
        parts.append(f"{s.get('doc', 'docs/benchmarks.md')}, {s['table']}")
    if s.get("date"):
        parts.append(str(s["date"])[:16].replace("T", " "))
    if s.get("revision"):
        parts.append(f"rev {s['revision']}")
    if s.get("result"):
        parts.append(f"`{s['result']}`")
    if s.get("other_load_cores") is not None:
        parts.append(f"other load {s['other_load_cores']:g} cores")
    if s.get("loadavg_1m"):
        parts.append("load average " + " -> ".join(f"{x:g}" for x in s["loadavg_1m"]
                                                  if x is not None))
    if s.get("note"):
        parts.append(str(s["note"]))
    return "; ".join(parts)


def render_doc(inputs: Mapping[str, Any], targets: Targets | None = None,
               assumptions: Assumptions | None = None) -> str:
    """docs/capacity.md."""
    model = compute(inputs, targets, assumptions)
    t, a = model.targets, model.assumptions
    figures = inputs["figures"]
    gm = model.gateway_machines(inputs)
    u = a.utilisation
    hb_load = next(x for x in model.loads if x.figure == "gateway_us_per_heartbeat")
    gw_rows = [x for x in model.loads if x.kind == "gateway"]
    gw_busy = model.busy_cores("gateway")
    delivery = next(x for x in model.loads if x.figure == "gateway_us_per_delivery")
    hub = next(x for x in model.loads if x.figure.startswith("gateway_us_per_hub_receive"))
    hub_pub = next(x for x in model.loads if x.figure == "gateway_us_per_hub_publish")
    per_conn = figures["gateway_bytes_per_connection"]["value"]
    machine = next((f["source"].get("machine") for f in figures.values()
                    if (f.get("source") or {}).get("machine")), "the project's VM")
    parts: list[str] = []
    add = parts.append
    add(f"<!-- Generated by `{GENERATED_BY}` from bench/capacity_inputs.json "
        "(bench/capacity.py, bench/capacity_doc.py). Do not edit by hand: refresh the "
        "inputs with `python -m bench capacity --update` after new runs, or change the "
        "model, then regenerate. -->")
    add("# Capacity model")
    add(f"_Generated by `{GENERATED_BY}` from `bench/capacity_inputs.json`; do not edit by "
        "hand._")
    add("**Status: a model, not a measurement.** Issue 21 asks for the fleet to be run on a "
        "16-core machine (PostgreSQL, `--workers` gateways and the generator on separate "
        "cores) to show 100,000 durable messages/s with p99 ack under 50 ms. That run has "
        "not been done: no session so far had such a machine. Until it is, this model "
        "stands in for it: from CPU costs per unit of work measured on the project's "
        f"machine ({machine}), it says how many cores of each kind the design's peak "
        "would take, with headroom. Every measured figure carries its command, date, "
        "revision and result file (*Measured inputs*); every assumed one is named and "
        "argued (*Assumptions*).")
    add("## The answer")
    add(f"For **{n(t.messages_per_s)} durable messages/s**, **{n(t.connections)} "
        f"connections** and **{n(t.heartbeats_per_s)} heartbeats/s**, at a fan-out of "
        f"{a.fanout:g} online recipients per message and {u:.0%} planned utilisation "
        f"(cores of the measuring machine):")
    add(md_table(["kind", "busy cores", f"cores to provision (busy / {u:g}, rounded up)",
                  f"{a.node_cores}-core machines"], headline_rows(model)))
    top = sorted(gw_rows, key=lambda x: x.cores, reverse=True)
    placed = compute(inputs, t, dataclasses.replace(a, recipients_per_gateway=4.0))
    idx = next(x for x in model.loads if x.kind == "indexer")
    db_cores = model.cores("postgresql") + model.cores("indexer")
    redis_top = max((x for x in model.loads if x.kind == "redis"), key=lambda x: x.cores)
    add(f"Gateway machines: **{gm['cpu']}** by CPU, the binding constraint; "
        f"{gm['memory']} would hold the connections' memory "
        f"({sig(model.memory_gib(inputs))} GiB with headroom) and {gm['heartbeats']} "
        "would absorb the heartbeats alone. Of the gateway's "
        f"{sig(gw_busy)} busy cores, the largest loads are "
        + "; ".join(f"{x.what}: {sig(x.cores)} cores ({x.cores / gw_busy:.0%})"
                    for x in top[:3]) + ".")
    add("What that says about the design:")
    add("\n".join([
        f"* **The hub's receive side is {hub.cores / gw_busy:.0%} of the gateway's "
        "CPU.** A message with "
        f"{a.fanout:g} online recipients reaches up to {model.nodes_per_message:g} gateway "
        "processes, and each pays "
        f"{sig(hub.us_per_unit)} CPU-µs to take it from Redis and route it: redis-py's "
        "RESP parser (hiredis, in C, since 2026-12-04: 8.1-12.7 µs per payload received "
        "against 17.5-27.4 with the pure-Python parser, alternated) and the hub's "
        "dispatch, then the router (docs/benchmarks.md, *Hub throughput*). Each "
        f"process receives {n(hub.per_s / max(1, model.gateway_processes))} payloads/s; "
        "check that the hub phase's `--hub-rate` (in its command under *Measured "
        "inputs*) is of that order. Placing "
        "a workspace's users on the same gateways so that 4 recipients share a process "
        f"would take the gateway from {n(model.cores('gateway'))} to "
        f"{n(placed.cores('gateway'))} cores; that placement is not built.",
        f"* **Deliveries** cost {sig(delivery.us_per_unit)} CPU-µs each: a write syscall per "
        "socket on this VM's loopback, which also does the receiver's TCP work, so on a "
        "real NIC they are likely cheaper.",
        f"* **PostgreSQL's commit path** costs {sig(model.postgresql_us_per_message)} µs "
        f"per message ({n(model.cores('postgresql'))} cores), the **indexer** "
        f"{sig(idx.us_per_unit)} µs ({n(model.cores('indexer'))} cores): both run on the "
        f"shards' primaries, {n(db_cores)} cores together "
        f"({n(math.ceil(db_cores / a.node_cores))} machines of {a.node_cores} cores before "
        "replicas). The indexer can lag without delaying an ack.",
        f"* **Redis** needs {n(model.cores('redis'))} cores, i.e. as many single-threaded "
        f"shards; its largest load is {redis_top.what} ({sig(redis_top.cores)} of "
        f"{sig(model.busy_cores('redis'))} busy cores).",
    ]))
    add("## Targets")
    add(md_table(["target", "value", "where it comes from"], [
        ["durable messages/s at peak", n(t.messages_per_s), "the design (issue 21)"],
        ["concurrent connections", n(t.connections), "the design: 10M concurrent users, "
         "one socket each"],
        ["heartbeats/s", n(t.heartbeats_per_s),
         f"{n(t.presence_users)} users / the {t.presence_users / t.heartbeats_per_s:g} s "
         "heartbeat interval the gateway announces (`HEARTBEAT_INTERVAL_MS`, "
         "gateway/protocol)"],
    ]))
    add("The heartbeat target counts 20M heartbeating users while the connection target "
        "counts 10M: the model takes each as given (so the heartbeat load is that of twice "
        "the connections), which errs on the side of more gateway CPU.")
    add("## Measured inputs")
    add("`bench/capacity_inputs.json`, one entry per figure. `python -m bench capacity "
        "--update` refreshes each from the newest qualifying result under `bench/results/` "
        "(gitignored) and keeps the rest; figures from a docs table have no result file and "
        "are edited in the inputs with their source.")
    add(md_table(["figure", "value", "unit", "what", "source"], [
        [f"`{name}`", sig(float(figures[name]["value"])), figures[name]["unit"],
         figures[name].get("what") or SPECS[name].what, _source(figures[name])]
        for name in SPECS if name in figures]))
    notes = inputs.get("notes") or []
    if notes:
        add("Notes kept with the inputs:")
        add("\n".join(f"* {note}" for note in notes))
    add("## Assumptions")
    add(md_table(["assumption", "value", "why"], [
        [f"`{f.name}`", f"{getattr(a, f.name):g}", WHY.get(f.name, "")]
        for f in dataclasses.fields(a)]))
    add("## How the cores are computed")
    add(f"cores(kind) = Σ load/s × CPU-s per unit / {u:g}, rounded up, for these loads:")
    add(md_table(["kind", "load", "units/s", "CPU-µs / unit", "busy cores", "cost from"], [
        [x.kind, x.what, n(x.per_s), sig(x.us_per_unit), sig(x.cores), f"`{x.figure}`"]
        for x in model.loads]))
    add("Rules behind the rows:")
    add("\n".join([
        "* **Gateway.** A message costs its sender's gateway the ingest path (read, "
        "validate, group commit, ack and the sender's own event, measured by `ingest` "
        "with realistic text) plus one hub publish; then every gateway process with a "
        "recipient receives it from the hub once and routes it "
        f"({model.nodes_per_message:g} processes per message: fan-out / "
        "`recipients_per_gateway`, at most the processes there are), and each "
        "recipient socket costs one delivery. Deliveries are costed from the open-loop "
        "fan-out run, where each delivery is its own write: at the design's load a socket "
        f"receives {sig(t.messages_per_s * a.fanout / t.connections)} messages/s, so "
        "nothing coalesces; the closed-loop runs, which batch several messages per write, "
        "cost 4-5x less per delivery and would flatter the model. The ingest figure is "
        "from `parley serve` with the in-memory hub (so the hub publish is costed apart, "
        "from `bench.redis_cost`'s RedisHub run) and includes the in-process search "
        "indexer's client side (one call per 500 messages). One gateway process per core "
        "(`--workers` defaults to the cores).",
        f"* **PostgreSQL** is the larger of the measured commit paths "
        f"({sig(model.postgresql_us_per_message)} µs, `{model.postgresql_path}`): "
        "`bench.pg_cost` times the one backend that runs `parley_append_batch`; the ingest "
        "run counts every postgres process (WAL writer, checkpointer, statistics) and, "
        "since `parley serve` runs the search indexer, the indexer's backend too, so its "
        "figure less the indexer's is the commit path with the background work.",
        "* **Indexer** is the PostgreSQL backend applying the search queue (tsvector and "
        "GIN maintenance, off the commit path since issue 21): cores of the shard's "
        "primary, shown apart because they can be scheduled apart (they lag, not block; "
        "see docs/benchmarks.md, *Issue 21: search off the commit path*).",
        "* **Redis** (the hub and the presence store). Each message is PUBLISHed once and "
        "Redis writes it to every subscribed gateway process (with sharded pub/sub, to the "
        "processes subscribed to its channel's shard channel), so its cost is a per-PUBLISH "
        "part plus a per-subscriber part, split by a least-squares line over runs with 0, "
        "1 and 4 subscribers (`bench.redis_cost`). Presence writes only on change "
        "(`storage/presence_redis.py`: three commands per changed user plus a lease "
        "renewal and an MGET per sync, then a PUBLISH on `p:<user>`); heartbeats cause "
        "the measured handful of commands per thousand. Redis runs commands on one "
        "thread, so its cores are its shards: each primary under "
        f"{u:.0%} of a core. Replicas are not counted.",
    ]))
    add("### PostgreSQL and the size of a commit")
    settings = Settings()
    lanes = settings.commit_lanes
    per_lane = t.messages_per_s / max(1, model.gateway_processes * lanes)
    batches = [(PG_BATCH, value(inputs, "postgresql_us_per_message_commit"))] + [
        (b, value(inputs, f"postgresql_us_per_message_batch_{b}"))
        for b in PG_SMALL_BATCHES if f"postgresql_us_per_message_batch_{b}" in figures]
    add("PostgreSQL's CPU per message depends most on how many messages one group "
        "commit carries (each `parley_append_batch` call is a transaction, and its fixed "
        "cost is shared by the batch). `bench.pg_cost`, the same backend and text:")
    add(md_table(["messages per commit", "CPU-µs / message",
                  f"PostgreSQL cores for {n(t.messages_per_s)}/s at {u:g}"],
                 [[n(b), sig(us), n(provision(t.messages_per_s * us / 1e6, u))]
                  for b, us in batches]))
    add(f"The model takes {sig(model.postgresql_us_per_message)} µs "
        f"(`{model.postgresql_path}`). At the model's size each of the "
        f"{n(model.gateway_processes)} gateway processes commits through {lanes} lanes "
        f"(`commit_lanes`), i.e. {n(per_lane)} messages/s per lane; with a "
        f"{settings.commit_window_ms:g} ms window (`commit_window_ms`) and a commit "
        "that takes a few ms, a lane commits a handful of messages at a time, so the "
        "small-batch rows are the likelier cost unless writes are gathered into fewer, "
        "fuller commits (fewer lanes per shard at low rates, or a writer per shard rather "
        "than per gateway process). Not measured at the fleet's shape: only the 16-core "
        "run can show the batches it forms.")
    add("Where the model goes beyond the plan it was built to (issue 21, item 6), and why:")
    add("\n".join([
        "* It costs the **hub on the gateway side** (RedisHub publish and receive, and the "
        "router per event), which the plan did not list: every message crosses Redis to "
        f"each gateway with a recipient, and measured, that crossing is "
        f"{(hub.cores + hub_pub.cores) / gw_busy:.0%} of the gateway's CPU.",
        "* **Deliveries** come from an open-loop `fanout --rate` run, not the closed loop "
        "the fan-out targets use, for the reason above (no coalescing at the design's "
        "per-socket rates).",
        "* The **indexer**'s cost is `bench.pg_cost`'s indexer backend (CPU per message); "
        "`bench.search_lag` measures lag and rates, not CPU, so it checks the indexer "
        "keeps up but does not size it.",
    ]))
    add("## Gateway: memory and heartbeats")
    base = figures["gateway_base_rss_mib"]["value"]
    add(md_table(["gateway machines by", "sizing", "machines"], [
        ["memory of the connections",
         f"({n(t.connections)} × ({n(per_conn)} B measured + "
         f"{n(a.kernel_bytes_per_connection)} B kernel, assumed) + {model.gateway_processes} "
         f"processes × {sig(base)} MiB) / {u:g} = {sig(model.memory_gib(inputs))} GiB over "
         f"{a.node_memory_gib:g} GiB machines", n(gm["memory"])],
        ["CPU of the heartbeats alone",
         f"{n(t.heartbeats_per_s)}/s × {sig(hb_load.us_per_unit)} µs = "
         f"{sig(hb_load.cores)} busy cores, {provision(hb_load.cores, u)} at {u:g}",
         n(gm["heartbeats"])],
        ["all gateway CPU", f"{sig(gw_busy)} busy cores, {model.cores('gateway')} at {u:g}",
         n(gm["cpu"])],
    ]))
    add(f"Connections per gateway process at that size: "
        f"{n(t.connections / max(1, model.gateway_processes))}.")
    add("Gateway CPU by load:")
    add(md_table(["load", "busy cores", "share"], [
        [x.what, sig(x.cores), f"{x.cores / gw_busy:.0%}"] for x in gw_rows]))
    add("## Sensitivity")
    add("Cores to provision per kind when one input moves (the others as assumed). "
        "*CPU per message* scales every per-message figure (gateway ingest and hub "
        "publish, PostgreSQL, indexer, Redis PUBLISH), not deliveries or heartbeats.")
    add(md_table(["case", *(KIND_NAMES[k] for k in KINDS), "total"], [
        [label, *(n(m.cores(k)) for k in KINDS), n(m.total_cores)]
        for label, m in sensitivity(inputs, targets, assumptions)]))
    add("## What is measured, what is assumed, what is left out")
    add("\n".join([
        "* **Measured** (on this machine, the figures above): CPU per unit of work of the "
        "gateway (ingest, delivery, heartbeat, hub publish and receive), PostgreSQL (commit "
        "path, indexer), Redis (PUBLISH, per-subscriber delivery, presence writes), memory "
        "per idle connection and per process.",
        "* **Assumed**: the fan-out, presence churn and watchers, the utilisation, machine "
        "size, and kernel memory per connection (*Assumptions*).",
        "* **Not done**: the 16-core run. Costs measured on 2 shared vCPUs carry over only "
        "as CPU per unit of work; they do not show contention between processes, memory "
        "bandwidth, NIC interrupts or cross-machine latency. This VM's loopback syscalls "
        "are slow (a small write costs 5-16 µs of CPU here, see docs/benchmarks.md) and "
        "include the peer's TCP work, so on real NICs delivery and heartbeat costs are "
        "likely lower; the machine's speed has also moved by 2x between sessions, so "
        "refresh every input in one session.",
        "* **Left out of the loads**: the REST API and the Events API dispatcher, file "
        "uploads, search queries, edits, reactions and typing, reconnect storms, "
        "PostgreSQL and Redis replicas, and the 200 ms end-to-end delivery target (a "
        "latency, which only the fleet run can show).",
    ]))
    add("## Regenerating")
    add("```sh\n"
        "python -m bench.pg_cost && python -m bench.redis_cost   # and the scenarios: "
        "ingest, fanout --rate, presence, idle\n"
        "python -m bench capacity --update                      # results -> "
        "bench/capacity_inputs.json\n"
        f"{GENERATED_BY}         # inputs -> this page\n"
        "```")
    add("`python -m bench capacity` alone prints the same model as tables; "
        "`--fanout`, `--utilisation`, `--messages-per-s` and the other options run it "
        "under other assumptions without touching the doc.")
    return "\n\n".join(parts) + "\n"
