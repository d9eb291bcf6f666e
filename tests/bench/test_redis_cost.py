"""bench/redis_cost.py smoke run: a private valkey, every phase, a fraction of a second each."""

from __future__ import annotations

import json
from pathlib import Path

from bench import redis_cost


def test_redis_cost_measures_publish_presence_and_the_hub(tmp_path: Path) -> None:
    assert redis_cost.main(["--seconds", "0.3", "--subscribers", "0,1", "--topics", "20",
                            "--payloads", "100", "--presence-batch", "20",
                            "--hub-rate", "500", "--hub-topics", "10",
                            "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("redis_cost-*.json")
    r = json.loads(path.read_text())
    none, one = r["publish"]
    assert none["subscribers"] == 0 and none["deliveries"] == 0
    assert one["deliveries"] == one["publishes"], "every publish reached the one subscriber"
    assert one["commands"]["publish"] == one["publishes"]
    assert none["cpu_us_per_publish"] > 0 and one["cpu_us_per_publish"] > 0
    assert 200 < r["mean_payload_bytes"] < 600, "message.created publications, realistic text"
    p = r["presence"]
    assert p["changes"] == p["syncs"] * 20 and p["cpu_us_per_change"] > 0
    # Per changed user: HSET, HINCRBY, HGETALL and the PUBLISH, plus the shared ones.
    assert 4 <= p["commands_per_change"] < 5
    h = r["hub"]
    assert h["received"] == h["published"] > 0
    assert h["publisher_cpu_us_per_payload"] > 0 and h["subscriber_cpu_us_per_payload"] > 0
    assert r["revision"] and r["started_at"]
