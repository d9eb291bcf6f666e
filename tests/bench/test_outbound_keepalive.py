"""Smoke test of bench/micro/outbound_keepalive.py: every mode runs end to
end and reports its row (the numbers are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.conftest import ROOT


def test_every_mode_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    cmd = [sys.executable, "-m", "bench.micro.outbound_keepalive", "--posts", "40",
           "--rounds", "1", "--concurrency", "2", "--modes",
           "close,reuse,close-name,reuse-name", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["mode"] for r in rows] == ["close", "reuse", "close-name", "reuse-name"]
    assert all(r["posts"] == 40 and r["posts_per_s"] > 0 for r in rows)
    assert "| reuse |" in proc.stdout
