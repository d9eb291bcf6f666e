"""Smoke run of ``python -m bench.webapi`` (tiny timings): both phases run
end to end, every request succeeds, and the result carries what the docs
table needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.conftest import ROOT


def test_webapi_benchmark_compares_both_posts(results_dir: Path, pg_admin_dsn: str) -> None:
    out = results_dir / "webapi.json"
    cmd = [sys.executable, "-m", "bench.webapi", "--clients", "2", "--procs", "1",
           "--duration", "1.0", "--warmup", "0.3", "--out", str(out),
           "--pg-admin-url", pg_admin_dsn]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    result = json.loads(out.read_text())
    phases = {p["mode"]: p for p in result["phases"]}
    assert set(phases) == {"native", "webapi"}
    for p in phases.values():
        assert p["requests"] > 0 and p["errors"] == 0
        assert p["latency"]["p99_ms"] is not None and p["server_cpu_ms_per_request"] > 0
