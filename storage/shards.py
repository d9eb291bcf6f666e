"""Placement of workspaces on PostgreSQL shards by consistent hashing.

Invariants:

* A shard is named by its position in the configured DSN list (``shard0``,
  ``shard1`` ...).  The list may grow at its end; existing positions never
  change meaning.  The directory table records each workspace's shard when
  the workspace is created, so adding a shard never moves existing
  workspaces: it only receives new ones (about 1/N of them).
* The ring has ``VNODES_PER_SHARD`` virtual nodes per shard so that the
  share of each shard stays within a few percent of 1/N.
* Pure computation: no I/O, imports nothing of ours.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

VNODES_PER_SHARD = 160  # virtual nodes; ~2-3% spread between shards at 160


def shard_name(index: int) -> str:
    return f"shard{index}"


def _point(key: str) -> int:
    # blake2b is fast and stable across processes (unlike hash()).
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Maps a workspace id to a shard name."""

    __slots__ = ("_owners", "_points", "shards")

    def __init__(self, shards: Sequence[str], vnodes: int = VNODES_PER_SHARD) -> None:
        if not shards:
            raise ValueError("a ring needs at least one shard")
        self.shards = tuple(shards)
        pairs = sorted((_point(f"{s}#{v}"), s) for s in self.shards for v in range(vnodes))
        self._points = [p for p, _ in pairs]
        self._owners = [s for _, s in pairs]

    def shard_for(self, workspace_id: int) -> str:
        i = bisect.bisect_right(self._points, _point(f"ws:{workspace_id}"))
        return self._owners[i % len(self._owners)]

    def describe(self) -> list[tuple[str, float]]:
        """(shard, share of the hash space) for each shard, for `parley shards`."""
        space = 1 << 64
        share = dict.fromkeys(self.shards, 0)
        prev = self._points[-1] - space
        for p, owner in zip(self._points, self._owners, strict=True):
            share[owner] += p - prev
            prev = p
        return [(s, share[s] / space) for s in self.shards]
