"""bench/pg_cost.py smoke run: both schemas and the indexer, a few batches."""

from __future__ import annotations

import json
from pathlib import Path

from bench import pg_cost


def test_pg_cost_measures_both_schemas_and_the_indexer(pg_admin_dsn: str,
                                                       tmp_path: Path) -> None:
    assert pg_cost.main(["--admin-url", pg_admin_dsn, "--batches", "2", "--warmup", "1",
                         "--batch", "50", "--channels", "5", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("pg_cost-*.json")
    result = json.loads(path.read_text())
    for key in ("before", "after", "indexer"):
        assert result[key]["cpu_us_per_message"] > 0, key
    assert result["before"]["messages"] == result["after"]["messages"] == 100
    assert result["indexer"]["messages"] == 150, "every message stored, warm-up included"
    assert 100 < result["mean_text_bytes"] < 300, "realistic text by default"
