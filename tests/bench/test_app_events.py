"""Smoke run of ``python -m bench app_events`` (tiny numbers): every mode
runs end to end through the real server, receiver process and PostgreSQL,
the apps receive every event, and the result has what the docs table needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.app_events import summarize
from tests.bench.conftest import ROOT

PHASE_FIELDS = ("messages_sent_per_s", "people_delivery", "events_per_s", "events_offered_per_s",
                "event_latency_send_to_app", "event_latency_commit_to_app", "server_cpu_share",
                "server_cpu_s_per_1000_events", "dispatcher_cpu_share",
                "all_cpu_s_per_1000_events", "postgres_cpu_share", "drained")


def test_app_events_benchmark_runs_every_mode(results_dir: Path, pg_admin_dsn: str) -> None:
    out = results_dir / "app-events.json"
    cmd = [sys.executable, "-m", "bench", "app_events", "--apps", "3", "--people", "3",
           "--channels", "1", "--rate", "10", "--duration", "1", "--warmup", "0.3",
           "--drain", "5", "--sleep", "0.3", "--order", "no,fast,slow", "--quiet",
           "--out", str(out), "--pg-admin-url", pg_admin_dsn]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90,
                          check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    result = json.loads(out.read_text())
    phases = {p["mode"]: p for p in result["phases"]}
    assert set(phases) == {"no", "fast", "slow"}
    for p in phases.values():
        for name in PHASE_FIELDS:
            assert name in p, name
        assert p["messages_sent_per_s"] > 0 and not p["gateway_errors"], p
        assert p["people_delivery"]["p99_ms"] is not None, "people's deliveries were timed"
    assert phases["no"]["events_expected"] == 0 and phases["no"]["events_received"] == 0
    for mode in ("fast", "slow"):
        p = phases[mode]
        assert p["drained"] and p["events_received"] == p["events_expected"] > 0, p
        assert p["event_latency_send_to_app"]["p99_ms"] is not None
    assert phases["slow"]["slow_apps"] == 1
    # The events are sent by the dispatcher's own process (server/app_events_proc.py).
    assert phases["fast"]["dispatcher_cpu_share"] > 0
    assert set(result["summary"]) == {"no", "fast", "slow"}
    assert "people_p99_added_ms" in result["summary"]["slow"]
    assert "| mode" not in proc.stdout and "ppl p99" in proc.stdout, "the table is printed"


def _phase(mode: str, samples_ms: list[float], cpu: float,
           events_per_s: float) -> dict[str, object]:
    return {"mode": mode, "people_delivery_samples_ms": samples_ms, "events_per_s": events_per_s,
            "event_latency_send_to_app": {"p99_ms": None}, "server_cpu_share": cpu,
            "server_cpu_s_per_1000_events": None}


def test_summary_pools_people_samples_and_subtracts_the_no_apps_phases() -> None:
    s = summarize([_phase("no", [1.0] * 99 + [9.0], 0.1, 0.0),
                   _phase("fast", [2.0] * 50, 0.5, 400.0),
                   _phase("no", [1.0] * 100, 0.1, 0.0),
                   _phase("fast", [30.0] * 50, 0.5, 400.0)])
    assert s["no"]["people_samples"] == 200 and s["no"]["people_p99_ms"] == 1.0
    assert s["fast"]["people_p50_ms"] == 2.0 and s["fast"]["people_p99_ms"] == 30.0
    assert s["fast"]["people_p99_added_ms"] == 29.0
    # (0.5 - 0.1) cores over 400 events/s: 1 CPU-second per 1,000 events.
    assert s["fast"]["added_server_cpu_s_per_1000_events"] == 1.0
