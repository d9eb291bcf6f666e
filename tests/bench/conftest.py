"""Fixtures of the benchmark smoke tests: where results go, which database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Tiny timings: the point is that every scenario runs end to end, not the numbers.
TINY = ["--duration", "1.0", "--warmup", "0.3", "--drain", "0.5", "--procs", "1", "--quiet"]


def run_bench(args: list[str], out: Path, admin_dsn: str, timeout: float = 90) -> dict[str, Any]:
    """Run ``python -m bench ARGS`` as a subprocess; return its JSON result."""
    cmd = [sys.executable, "-m", "bench", *args, *TINY, "--out", str(out),
           "--pg-admin-url", admin_dsn]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    files = sorted(out.glob("*.json"))
    assert len(files) == 1, (files, proc.stdout)
    result: dict[str, Any] = json.loads(files[0].read_text())
    return result


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    out.mkdir()
    return out
