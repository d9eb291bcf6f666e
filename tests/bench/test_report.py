"""``python -m bench report``: tables between markers, charts as PNG files."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.common import Result, latency_summary, percentile


def _result(scenario: str, server: str, throughput: float, **params: Any) -> Result:
    return Result(scenario=scenario, server=server, parameters=params, throughput=throughput,
                  throughput_unit="deliveries/s",
                  latency=latency_summary([1000.0, 2000.0, 40_000.0]), server_cpu_s=1.5,
                  cpu_s_per_million=2.0, server_peak_rss_mib=80.0,
                  generator={"max_cpu_share": 0.5, "saturated": False},
                  extra={"bytes_per_connection": 5000, "connected": 100})


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="matplotlib is not installed (see docs/benchmarks.md, Set-up)")
def test_report_writes_tables_and_charts_and_keeps_prose(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for res in (_result("fanout", "parley", 400_000.0, subscribers=1000, size=100, window=32),
                _result("fanout", "picows", 200_000.0, subscribers=1000, size=100, window=32),
                _result("idle", "parley", 100, connections=100),
                _result("echo", "parley", 30_000, connections=64, size=256)):
        res.save(results)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose before\n\n{report.BEGIN}\nold\n{report.END}\n\n"
                   "prose after\n")
    args = argparse.Namespace(results=[results], output=doc, img_dir=tmp_path / "img",
                              no_charts=False)
    assert report.main(args) == 0
    text = doc.read_text()
    assert "prose before" in text and "prose after" in text and "\nold\n" not in text
    assert "| parley | 1,000 | 100 | closed loop, window 32 | 400,000.0 | 1.0 |" in text
    assert "| picows | 1,000 | 100 | closed loop, window 32 | 200,000.0 | 0.5 |" in text
    for name in ("fanout-throughput", "fanout-latency", "idle-memory", "echo"):
        png = tmp_path / "img" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(img/{name}.png)" in text


def test_result_json_has_the_documented_fields(tmp_path: Path) -> None:
    path = _result("fanout", "parley", 1.0, subscribers=1, size=100).save(tmp_path)
    obj = json.loads(path.read_text())
    for name in ("scenario", "parameters", "server", "machine", "throughput", "latency",
                 "cpu_s_per_million", "server_peak_rss_mib", "generator", "schema"):
        assert name in obj


def test_percentiles_are_nearest_rank() -> None:
    values = sorted(float(v) for v in range(1, 1001))
    assert percentile(values, 50) == 500.0
    assert percentile(values, 99) == 990.0
    assert percentile(values, 99.9) == 999.0
    assert percentile([], 50) is None


def test_runs_with_server_settings_are_rows_of_their_own() -> None:
    default = _result("fanout", "parley", 100_000.0, subscribers=100, size=100, window=32)
    raised = _result("fanout", "parley", 300_000.0, subscribers=100, size=100, window=32,
                     server_settings={"ws_commands_per_s": "100000"})
    ingest = _result("ingest", "parley", 15_000.0, senders=1500,
                     server_settings={"commit_lanes": "8"})
    text = report.tables([r.to_json() for r in (default, raised, ingest)])
    assert "| parley | 100 | 100 | closed loop, window 32 | 100,000.0 | 1.0 |" in text
    assert ("| parley | 100 | 100 | closed loop, window 32; server ws_commands_per_s=100000 "
            "| 300,000.0 | 1.0 |") in text
    assert "| 1,500 (server commit_lanes=8) | 15,000.0 |" in text
