"""bench/search_lag.py smoke run: one short, slow rate."""

from __future__ import annotations

import json
from pathlib import Path

from bench import search_lag


def test_search_lag_follows_acked_messages_into_the_index(pg_admin_dsn: str,
                                                          tmp_path: Path) -> None:
    assert search_lag.main(["--admin-url", pg_admin_dsn, "--rates", "200", "--duration", "0.5",
                            "--channels", "5", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("search_lag-*.json")
    (run,) = json.loads(path.read_text())["runs"]
    assert run["errors"] == 0 and run["sent"] > 50
    assert run["measured"] > 0, "sampled messages were seen in the index"
    assert 0 < run["lag_ms_p50"] <= run["lag_ms_p99"] <= run["lag_ms_max"]
