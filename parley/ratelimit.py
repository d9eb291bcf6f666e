"""Token buckets (sans-IO: the clock is passed in), the one definition of
rate limiting in Parley.

``TokenBucket`` is one bucket: the gateway keeps one per connection for its
commands.  ``TokenBuckets`` keys buckets by caller: the REST API uses it for
mutations (per user) and for the unauthenticated account routes (per client
address).  Each process keeps its own buckets, so a fleet of N processes
allows up to N times the rate; the limit protects the servers from one
runaway client, it is not a billing quota.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

MAX_KEYS = 100_000  # buckets kept; the least recently used full ones go first


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate_per_s``; starts full.

    ``now`` is a monotonic clock in seconds, read by the caller (the
    gateway's heartbeat fast path passes the reading it also gives presence).
    """

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.at = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when allowed, else the seconds to wait until a
        token is available (nothing is taken then)."""
        # The same arithmetic as min(burst, ...), without a builtin call: the
        # gateway runs this once per command, heartbeats included.
        tokens = self.tokens
        if now > self.at:
            tokens += (now - self.at) * self.rate
            if tokens > self.burst:
                tokens = self.burst
        self.at = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def take(self, key: Hashable, now: float) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds to
        wait until a token is available (nothing is taken then)."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
        self._buckets[key] = bucket  # most recently used last
        wait = bucket.take(now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait
