"""A 10-second headless Locust run against a real Parley, as a subprocess.

Locust is never imported here: gevent's monkey-patching breaks ssl once
boto3/urllib3 are loaded in this process.
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from bench.servers import Databases, ParleyProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("locust") is None,  # looked up, not imported
                    reason="locust is not installed (see docs/benchmarks.md, Set-up)")
def test_locust_headless_reports_websocket_request_types(tmp_path: Path,
                                                          pg_admin_dsn: str) -> None:
    dbs = Databases(admin_url=pg_admin_dsn)
    srv = ParleyProcess("serve", workdir=tmp_path, database_url=dbs.url)
    try:
        prefix = tmp_path / "locust"
        cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
               "--headless", "-u", "6", "-r", "6", "-t", "10s", "--only-summary",
               "--host", srv.api_url, "--gateway-url", f"ws://127.0.0.1:{srv.gateway_port}",
               "--csv", str(prefix), "ChatUser", "RestUser", "PresenceUser", "StormUser",
               "JitteredStormUser"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                              check=False)
        failures = tmp_path / "locust_failures.csv"
        detail = failures.read_text() if failures.exists() else ""
        assert proc.returncode == 0, f"{detail}\n{proc.stderr[-3000:]}"
    finally:
        srv.stop()
        dbs.close()
    with (tmp_path / "locust_stats.csv").open() as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    for name in ("connect", "send-to-ack", "send-to-deliver", "heartbeat", "storm-connect"):
        row = rows[("WS", name)]
        assert int(row["Request Count"]) > 0, name
        assert int(row["Failure Count"]) == 0, (name, row)
    rest = sum(int(r["Request Count"]) for (kind, _), r in rows.items() if kind in ("GET", "POST"))
    assert rest > 0, "the REST user made requests"
    assert "locust" not in sys.modules
