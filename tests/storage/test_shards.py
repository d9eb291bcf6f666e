from __future__ import annotations

from storage.shards import HashRing


def test_ring_spreads_workspaces_evenly_and_stably() -> None:
    ring = HashRing(["shard0", "shard1", "shard2"])
    counts = {"shard0": 0, "shard1": 0, "shard2": 0}
    for ws in range(30_000):
        counts[ring.shard_for(ws)] += 1
    assert all(8_000 < n < 12_000 for n in counts.values()), counts
    assert ring.shard_for(12345) == HashRing(["shard0", "shard1", "shard2"]).shard_for(12345)
    assert abs(sum(share for _, share in ring.describe()) - 1.0) < 1e-9


def test_adding_a_shard_moves_only_its_share() -> None:
    before = HashRing(["shard0", "shard1"])
    after = HashRing(["shard0", "shard1", "shard2"])
    moved = [ws for ws in range(10_000) if before.shard_for(ws) != after.shard_for(ws)]
    assert all(after.shard_for(ws) == "shard2" for ws in moved)
    assert 2_000 < len(moved) < 4_700
