"""Token buckets keyed by caller (sans-IO: the clock is passed in).

Used by the REST API for mutations (per user) and for the unauthenticated
account routes (per client address).  Each process keeps its own buckets, so
a fleet of N API processes allows up to N times the rate; the limit protects
the database from one runaway client, it is not a billing quota.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

MAX_KEYS = 100_000  # buckets kept; the least recently used full ones go first


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, key: Hashable, now: float) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds to
        wait until a token is available (nothing is taken then)."""
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait
