"""Every end-to-end scenario runs at a tiny size and writes a complete result.

These are smoke tests (a second or two of load each), not measurements:
they keep ``python -m bench`` from rotting.  The servers, the database
(a fresh one per run, via --pg-admin-url) and Redis are real.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench.scenarios.base import Options, server_settings, server_settings_env
from bench.scenarios.fanout import publisher_budget
from bench.servers import PEERS_DIR
from tests.bench.conftest import run_bench

FIELDS = ("scenario", "server", "parameters", "machine", "throughput", "throughput_unit",
          "latency", "server_cpu_s", "cpu_s_per_million", "server_peak_rss_mib", "generator")


def _complete(result: dict[str, Any], scenario: str, server: str = "parley") -> None:
    for name in FIELDS:
        assert name in result, name
    assert result["scenario"] == scenario
    assert result["server"] == server
    assert result["machine"]["cpus"] >= 1
    for q in ("p50_ms", "p99_ms", "p999_ms"):
        assert q in result["latency"]
    assert result["generator"]["processes"], "each generator process reports its CPU"
    assert not result["generator"]["errors"], result["generator"]["errors"]


def test_fanout_on_parley_times_every_delivery(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["fanout", "--subscribers", "5", "--publishers", "2", "--window", "4"],
                  results_dir, pg_admin_dsn)
    _complete(r, "fanout")
    assert r["throughput"] > 0
    assert r["latency"]["samples"] > 0
    assert r["extra"]["delivery_ratio"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.skipif(importlib.util.find_spec("picows") is None,
                    reason="picows is not installed (see docs/benchmarks.md, Set-up)")
def test_fanout_on_the_picows_peer(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["fanout", "--server", "picows", "--subscribers", "5"], results_dir,
                  pg_admin_dsn)
    _complete(r, "fanout", "picows")
    assert r["throughput"] > 0


@pytest.mark.skipif(shutil.which("node") is None or not (PEERS_DIR / "node_modules").is_dir(),
                    reason="needs node and `npm install` in bench/peers/")
def test_echo_on_the_node_peer(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["echo", "--server", "node-ws", "--connections", "2"], results_dir,
                  pg_admin_dsn)
    _complete(r, "echo", "node-ws")
    assert r["throughput"] > 0


def test_echo_on_parley(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["echo", "--connections", "2", "--size", "8192"], results_dir, pg_admin_dsn)
    _complete(r, "echo")
    assert r["throughput"] > 0


def test_idle_reports_memory_per_connection(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["idle", "--connections", "40", "--settle", "0.5"], results_dir,
                  pg_admin_dsn)
    _complete(r, "idle")
    assert r["extra"]["connected"] == 40
    assert r["extra"]["bytes_per_connection"] is not None


def test_ingest_counts_durable_acks(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["ingest", "--senders", "4", "--server-setting", "commit_lanes=2"],
                  results_dir, pg_admin_dsn)
    _complete(r, "ingest")
    assert r["parameters"]["server_settings"] == {"commit_lanes": "2"}
    assert r["parameters"]["text"] == "realistic", "realistic chat text by default"
    assert r["throughput"] > 0
    assert r["throughput_unit"] == "messages/s"
    costs = r["extra"]["cpu_us_per_message"]
    assert costs["gateway"] > 0 and costs["postgresql"] > 0 and costs["generator"] > 0
    capacity = r["extra"]["capacity_messages_per_core_s"]["gateway"]
    assert abs(capacity - 1e6 / costs["gateway"]) / capacity < 0.01  # costs are rounded
    assert r["extra"]["cores_for_target"]["target_per_s"] == 50_000


def test_ingest_keeps_the_old_fixed_corpus_as_an_option(results_dir: Path,
                                                        pg_admin_dsn: str) -> None:
    r = run_bench(["ingest", "--senders", "2", "--text", "fixed", "--size", "64"],
                  results_dir, pg_admin_dsn)
    _complete(r, "ingest")
    assert (r["parameters"]["text"], r["parameters"]["size"]) == ("fixed", 64)
    assert r["throughput"] > 0


def test_crossnode_delivers_through_redis(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["crossnode", "--subscribers", "4", "--publishers", "1", "--window", "2"],
                  results_dir, pg_admin_dsn)
    _complete(r, "crossnode")
    assert r["throughput"] > 0
    assert set(r["extra"]["server_cpu_s_by_process"]) >= {"parley-a", "parley-b"}


def test_presence_reads_redis_command_stats(results_dir: Path, pg_admin_dsn: str) -> None:
    r = run_bench(["presence", "--connections", "4"], results_dir, pg_admin_dsn)
    _complete(r, "presence")
    assert r["throughput"] > 0
    assert r["extra"]["redis_commands_per_1000_heartbeats"] is not None
    assert r["extra"]["presence_figure"] in ("measured", "pending")
    # Ref-less heartbeats, each socket's confirmed by its final heartbeat_ack.
    assert r["parameters"]["acked"] is False
    assert r["extra"]["sockets_confirmed"] == 4
    assert r["extra"]["heartbeats_unconfirmed"] == 0
    assert r["extra"]["heartbeats_sent_in_window"] == r["throughput"] * 1.0  # a 1 s window
    # None only if the gateway's CPU over a 1 s window rounds to 0 (10 ms ticks).
    cpu_us = r["extra"]["cpu_us_per_heartbeat"]
    assert cpu_us is None or r["extra"]["capacity_heartbeats_per_core_s"] == round(1e6 / cpu_us)
    assert r["latency"]["samples"] == 4  # the final heartbeats' round trips


def test_server_settings_become_parley_variables_and_typos_fail_early() -> None:
    """The servers' environment is built from scratch (a caller's PARLEY_*
    never reaches them), so ``--server-setting`` is the way in; a name Parley
    does not know, or a value it refuses, must fail before any set-up instead
    of being ignored by the server."""
    assert server_settings_env(server_settings(("commit_lanes=8", "GC_GEN0_THRESHOLD=0"))) == {
        "PARLEY_COMMIT_LANES": "8", "PARLEY_GC_GEN0_THRESHOLD": "0"}
    for bad in ("commit_lane=8", "commit_lanes", "commit_lanes=0", "commit_lanes=many"):
        with pytest.raises(ValueError, match="--server-setting"):
            server_settings((bad,))


def test_the_fanout_publisher_paces_to_the_servers_command_budget() -> None:
    # Just under the defaults (50/s, burst 200), and under a raised budget too:
    # a publisher paced to the default would cap a server run with more.
    rate, burst = publisher_budget(Options())
    assert 45 < rate < 50 and 100 < burst < 200
    rate, burst = publisher_budget(Options(server_settings=(
        "ws_commands_per_s=10000", "ws_command_burst=20000")))
    assert 9_000 < rate < 10_000 and 10_000 < burst < 20_000
