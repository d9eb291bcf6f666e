"""bench/capacity.py: the model on hand-checked numbers, ``--update`` from
result files, and docs/capacity.md as generated from the committed inputs.

No server: everything here is arithmetic over JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import capacity, capacity_doc
from bench.capacity import Assumptions, Targets, compute, provision, update_inputs

ROOT = Path(__file__).resolve().parents[2]

#: Round figures, so every expected value below can be checked by hand.
HAND = {
    "gateway_us_per_message": 10.0,
    "gateway_us_per_hub_publish": 1.0,
    "gateway_us_per_hub_receive": 2.0,
    "gateway_us_per_router_event": 1.0,
    "gateway_us_per_delivery": 5.0,
    "gateway_us_per_heartbeat": 6.0,
    "postgresql_us_per_message_commit": 20.0,
    "postgresql_us_per_message_ingest": 90.0,
    "indexer_us_per_message": 60.0,
    "redis_us_per_publish": 2.0,
    "redis_us_per_delivery": 0.5,
    "redis_us_per_presence_change": 10.0,
    "redis_us_per_command": 2.0,
    "redis_commands_per_1000_heartbeats": 1.0,
    "gateway_bytes_per_connection": 3000.0,
    "gateway_base_rss_mib": 100.0,
}
TARGETS = Targets(messages_per_s=100_000, connections=100_000, heartbeats_per_s=1_000_000,
                  presence_users=3_600_000)
ASSUME = Assumptions(fanout=4, utilisation=0.5, presence_changes_per_user_hour=1,
                     presence_watcher_nodes=2, node_cores=4, node_memory_gib=1,
                     kernel_bytes_per_connection=1096)


def inputs(figures: dict[str, float] | None = None) -> dict[str, Any]:
    return {"schema": 1, "figures": {k: {"value": v, "unit": "u", "source": {}}
                                     for k, v in (figures or HAND).items()}}


def test_the_model_on_hand_checked_figures() -> None:
    m = compute(inputs(), TARGETS, ASSUME)
    # Gateway, busy cores: ingest 1e5 x 10 us = 1.0; hub publish 1e5 x 1 = 0.1;
    # hub receive 1e5 x 4 processes x (2 + 1) = 1.2; deliveries 1e5 x 4 x 5 = 2.0;
    # heartbeats 1e6 x 6 = 6.0.  10.3 / 0.5 = 20.6 -> 21.
    assert m.busy_cores("gateway") == pytest.approx(10.3)
    assert m.cores("gateway") == 21
    assert m.nodes_per_message == 4
    # PostgreSQL: max(commit 20, ingest 90 - indexer 60 = 30) = 30 us; 3.0 busy -> 6.
    assert m.postgresql_us_per_message == 30
    assert m.postgresql_path.startswith("postgresql_us_per_message_ingest")
    assert m.cores("postgresql") == 6
    # Indexer: 1e5 x 60 = 6.0 -> 12.
    assert m.cores("indexer") == 12
    # Redis: PUBLISH 0.2, to 4 subscribers 1e5 x 4 x 0.5 = 0.2; presence
    # 3.6M users x 1/h = 1,000 changes/s x 10 us = 0.01, to 2 watchers 0.001;
    # heartbeats 1e6 / 1000 x 1 = 1,000 commands/s x 2 us = 0.002.  0.413 -> 1.
    assert m.busy_cores("redis") == pytest.approx(0.413)
    assert m.cores("redis") == 1
    assert m.total_cores == 21 + 6 + 12 + 1
    assert [m.machines(k) for k in capacity.KINDS] == [6, 2, 3, 1]
    # Memory: (1e5 x (3000 + 1096) B + 21 x 100 MiB) / 0.5 = 4.864 GiB -> 5 machines.
    assert m.memory_gib(inputs()) == pytest.approx(
        (100_000 * 4096 + 21 * 100 * 2**20) / 0.5 / 2**30)
    # Heartbeats alone: 6.0 busy -> 12 cores -> 3 machines of 4.
    assert m.gateway_machines(inputs()) == {"memory": 5, "heartbeats": 3, "cpu": 6}


def test_postgresql_takes_the_commit_probe_when_it_is_the_larger_path() -> None:
    figures = dict(HAND, postgresql_us_per_message_ingest=70.0)  # 70 - 60 = 10 < 20
    m = compute(inputs(figures), TARGETS, ASSUME)
    assert m.postgresql_us_per_message == 20
    assert m.postgresql_path == "postgresql_us_per_message_commit"


def test_fewer_processes_than_recipients_bound_the_hub_fan_out() -> None:
    # 1,000 messages/s and no heartbeats: the gateway fits in one core, so a
    # message reaches at most that one process through the hub, not four.
    t = Targets(messages_per_s=1000, connections=1000, heartbeats_per_s=0, presence_users=0)
    m = compute(inputs(), t, ASSUME)
    assert m.cores("gateway") == 1
    assert m.nodes_per_message == 1
    # 0.01 + 0.001 + 1000 x 1 x 3 us + 1000 x 4 x 5 us = 0.034 busy cores.
    assert m.busy_cores("gateway") == pytest.approx(0.034)


def test_sensitivity_scales_one_thing_at_a_time() -> None:
    rows = dict(capacity.sensitivity(inputs(), TARGETS, ASSUME))
    assert rows["as assumed"].total_cores == 40
    # Fan-out 8: gateway 1.0 + 0.1 + 2.4 + 4.0 + 6.0 = 13.5 -> 27; Redis
    # 0.2 + 0.4 + 0.013 = 0.613 -> 2; PostgreSQL and indexer unchanged.
    f2 = rows["fan-out x2"]
    assert (f2.cores("gateway"), f2.cores("redis"), f2.cores("postgresql")) == (27, 2, 6)
    # CPU per message x2 doubles ingest, hub publish, PostgreSQL, indexer and
    # PUBLISH only: gateway 2.0 + 0.2 + 1.2 + 2.0 + 6.0 = 11.4 -> 23.
    c2 = rows["CPU per message x2"]
    assert (c2.cores("gateway"), c2.cores("postgresql"), c2.cores("indexer")) == (23, 12, 24)
    # Half the messages: the heartbeats stay.  0.5 + 0.05 + 0.6 + 1.0 + 6.0 = 8.15 -> 17.
    assert rows["messages/s x0.5"].cores("gateway") == 17


def test_provision_rounds_up_without_buying_a_core_for_float_noise() -> None:
    busy = 0.6 * 7
    assert busy / 0.6 > 7  # 7.000000000000001
    assert provision(busy, 0.6) == 7
    assert provision(1.2, 0.1) == 12
    assert provision(1.21, 0.1) == 13
    assert provision(0.0, 0.6) == 0


def test_the_heartbeat_target_is_twenty_million_users_over_the_interval() -> None:
    from gateway.protocol import HEARTBEAT_INTERVAL_MS

    assert HEARTBEAT_INTERVAL_MS == 30_000
    assert Targets().heartbeats_per_s == pytest.approx(666_666.7, abs=0.1)


# --------------------------------------------------------------------------- --update


def result(scenario: str, stamp: str, *, parameters: dict[str, Any],
           **fields: Any) -> dict[str, Any]:
    base = {"scenario": scenario, "server": "parley", "parameters": parameters,
            "throughput": 1.0, "throughput_unit": "u", "latency": {}, "server_cpu_s": 1.0,
            "cpu_s_per_million": None, "server_peak_rss_mib": 90.0, "generator": {},
            "extra": {}, "notes": [], "machine": {"cpus": 2, "cpu_model": "Test CPU"},
            "revision": f"rev{stamp}", "started_at": f"2026-12-03T{stamp}+00:00", "schema": 1}
    base.update(fields)
    return base


def write(d: Path, name: str, obj: dict[str, Any]) -> None:
    (d / name).write_text(json.dumps(obj))


def test_update_takes_the_newest_qualifying_result_of_each_scenario(tmp_path: Path) -> None:
    d = tmp_path / "results"
    d.mkdir()
    write(d, "ingest-parley-1500-20261203T100000.json", result(
        "ingest", "10:00:00", parameters={"senders": 1500, "rate_per_socket": 3.4,
                                          "text": "realistic", "duration_s": 10.0},
        extra={"cpu_us_per_message": {"gateway": 50.0, "postgresql": 80.0}}))
    # Newer, but the old corpus: not what the model uses.
    write(d, "ingest-parley-1500-20261203T110000.json", result(
        "ingest", "11:00:00", parameters={"text": "fixed"},
        extra={"cpu_us_per_message": {"gateway": 1.0, "postgresql": 1.0}}))
    write(d, "fanout-parley-20261203T100000.json", result(
        "fanout", "10:00:00", parameters={"subscribers": 1000, "rate": 40.0, "window": 512},
        cpu_s_per_million=13.0))
    # Older, though its name sorts after the others (the parameters come first).
    write(d, "fanout-parley-900-1000-20261203T090000.json", result(
        "fanout", "09:00:00", parameters={"subscribers": 1000, "rate": 40.0, "window": 512},
        cpu_s_per_million=99.0))
    # Newer, closed loop (coalesced writes): skipped.
    write(d, "fanout-parley-20261203T110000.json", result(
        "fanout", "11:00:00", parameters={"subscribers": 1000, "rate": 0.0, "window": 8},
        cpu_s_per_million=2.5))
    write(d, "presence-parley-20261203T100000.json", result(
        "presence", "10:00:00", parameters={"connections": 4500, "pinned": True},
        extra={"cpu_us_per_heartbeat": 11.5, "redis_commands_per_1000_heartbeats": 0.3}))
    write(d, "idle-parley-20261203T100000.json", result(
        "idle", "10:00:00", parameters={"connections": 10000, "transport_only": False},
        extra={"bytes_per_connection": 3200, "rss_before_kib": 81920}))
    # Newer, but small batches: only the batch_10 figure, and never the indexer.
    write(d, "pg_cost-20261203T110000.json", {
        "parameters": {"batch": 10, "text": "realistic", "size": None},
        "after": {"cpu_us_per_message": 88.0}, "indexer": {"cpu_us_per_message": 1.0},
        "started_at": "2026-12-03T11:00:00+00:00"})
    write(d, "pg_cost-20261203T100000.json", {
        "parameters": {"batches": 40, "batch": 300, "text": "realistic", "size": None},
        "after": {"cpu_us_per_message": 25.0},
        "indexer": {"cpu_us_per_message": 75.0}, "started_at": "2026-12-03T10:00:00+00:00",
        "revision": "abc1234", "machine": {"cpus": 2, "cpu_model": "Test CPU"}})
    kept = {"value": 3.39, "unit": "CPU-µs / event", "source": {"doc": "docs/benchmarks.md"}}
    newer = {"value": 99.0, "unit": "x", "source": {"date": "2026-12-04T00:00:00+00:00"}}
    before = {"schema": 1, "figures": {"gateway_us_per_router_event": kept,
                                       "gateway_us_per_heartbeat": newer}}
    after, changed = update_inputs(before, d)
    f = after["figures"]
    assert f["gateway_us_per_message"]["value"] == 50.0
    assert f["postgresql_us_per_message_ingest"]["value"] == 80.0
    assert f["gateway_us_per_delivery"]["value"] == 13.0
    assert f["gateway_us_per_delivery"]["source"]["result"] == "fanout-parley-20261203T100000.json"
    assert "--rate 40" in f["gateway_us_per_delivery"]["source"]["command"]
    assert f["gateway_us_per_message"]["source"]["command"] == (
        "python -m bench ingest --senders 1500 --rate 3.4 --duration 10")
    assert f["gateway_us_per_message"]["source"]["revision"] == "rev10:00:00"
    assert f["gateway_us_per_message"]["source"]["machine"] == "2 vCPUs Test CPU"
    assert f["gateway_bytes_per_connection"]["value"] == 3200
    assert f["gateway_base_rss_mib"]["value"] == 80.0
    assert f["postgresql_us_per_message_commit"]["value"] == 25.0
    assert f["indexer_us_per_message"]["value"] == 75.0
    assert f["postgresql_us_per_message_batch_10"]["value"] == 88.0
    assert "postgresql_us_per_message_batch_2" not in f
    assert f["postgresql_us_per_message_commit"]["source"]["revision"] == "abc1234"
    assert f["redis_commands_per_1000_heartbeats"]["value"] == 0.3
    # A docs figure no result measures, and one newer than the results, stay.
    assert f["gateway_us_per_router_event"] == kept
    assert f["gateway_us_per_heartbeat"] == newer
    assert "gateway_us_per_heartbeat" not in changed
    assert "redis_us_per_publish" not in f, "no redis_cost result: nothing invented"
    assert before["figures"] == {"gateway_us_per_router_event": kept,
                                 "gateway_us_per_heartbeat": newer}, "input not mutated"
    # Idempotent: a second update from the same results changes nothing.
    again, changed_again = update_inputs(after, d)
    assert again == after and changed_again == []


def test_update_reads_a_redis_cost_result(tmp_path: Path) -> None:
    (tmp_path / "redis_cost-20261203T100000.json").write_text(json.dumps({
        "kind": "redis_cost", "parameters": {"seconds": 3.0}, "cpu_us_per_publish_base": 1.5,
        "cpu_us_per_delivery": 0.7, "presence": {"cpu_us_per_change": 6.0,
                                                 "cpu_us_per_command": 1.2},
        "hub": {"publisher_cpu_us_per_payload": 4.0, "subscriber_cpu_us_per_payload": 9.0},
        "started_at": "2026-12-03T10:00:00+00:00", "revision": "r1"}))
    after, changed = update_inputs({"figures": {}}, tmp_path)
    f = after["figures"]
    assert sorted(changed) == sorted([
        "redis_us_per_publish", "redis_us_per_delivery", "redis_us_per_presence_change",
        "redis_us_per_command", "gateway_us_per_hub_publish", "gateway_us_per_hub_receive"])
    assert (f["redis_us_per_publish"]["value"], f["redis_us_per_delivery"]["value"]) == (1.5, 0.7)
    assert f["gateway_us_per_hub_receive"]["value"] == 9.0
    assert f["redis_us_per_publish"]["source"]["command"].startswith("python -m bench.redis_cost")


# --------------------------------------------------------------------------- the doc


def test_the_committed_doc_is_what_the_committed_inputs_generate() -> None:
    committed = capacity.load_inputs()
    assert set(capacity.SPECS) <= set(committed["figures"]), "every input is measured"
    doc = capacity_doc.render_doc(committed)
    assert (ROOT / "docs" / "capacity.md").read_text() == doc, (
        "docs/capacity.md is stale: run `python -m bench capacity --write docs/capacity.md`")
    assert "has not been done" in doc and "stands in" in doc


def test_the_inputs_file_is_in_its_canonical_form() -> None:
    text = capacity.INPUTS_PATH.read_text()
    assert capacity.dump_inputs(json.loads(text)) == text, "write it with --update"


def test_the_command_prints_the_model_and_checks_the_doc(tmp_path: Path) -> None:
    doc = tmp_path / "capacity.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "capacity", "--write", str(doc)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "stands in" in proc.stdout and "gateway" in proc.stdout
    assert doc.read_text() == (ROOT / "docs" / "capacity.md").read_text()
    # Other assumptions change the printout, never the committed doc.
    args = argparse.Namespace()
    parser = argparse.ArgumentParser()
    capacity.add_arguments(parser)
    args = parser.parse_args(["--fanout", "40", "--check", str(doc)])
    assert capacity.main(args) == 1, "a doc for fan-out 20 is not the doc for 40"
