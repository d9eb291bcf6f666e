"""Token buckets (sans-IO: the clock is passed in), the one definition of
rate limiting in Parley.

``Refill`` is the policy of many buckets whose state their owners keep: the
gateway's per-connection command budget.  ``TokenBucket`` is one bucket with
its own state.  ``TokenBuckets`` keys buckets by caller: the REST API uses it for
mutations (per user) and for the unauthenticated account routes (per client
address).  Each process keeps its own buckets, so a fleet of N processes
allows up to N times the rate; the limit protects the servers from one
runaway client, it is not a billing quota.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

MAX_KEYS = 100_000  # buckets kept; the least recently used full ones go first


class BucketState(Protocol):
    """Where one bucket's two numbers live: ``tokens`` left and ``at``, the
    clock reading they were computed at."""

    tokens: float
    at: float


class Refill:
    """The policy of many buckets: ``burst`` tokens at most, refilled at
    ``rate_per_s``.  The state of each bucket lives in its owner
    (``BucketState``), so a gateway session carries two floats in its own
    slots instead of a bucket object of its own (about 70 bytes per
    connection, 2% of an idle one, measured with ``bench idle``).

    ``now`` is a monotonic clock in seconds, read by the caller (the
    gateway's heartbeat fast path passes the reading it also gives presence).
    """

    __slots__ = ("burst", "rate")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = burst

    def fill(self, state: BucketState, now: float) -> None:
        """Start ``state`` as a full bucket at ``now``."""
        state.tokens = self.burst
        state.at = now

    def take(self, state: BucketState, now: float) -> float:
        """Take one token from ``state``: 0.0 when allowed, else the seconds
        to wait until a token is available (nothing is taken then)."""
        # The same arithmetic as min(burst, ...), without a builtin call: the
        # gateway runs this once per command, heartbeats included.
        tokens = state.tokens
        if now > state.at:
            tokens += (now - state.at) * self.rate
            if tokens > self.burst:
                tokens = self.burst
        state.at = now
        if tokens >= 1.0:
            state.tokens = tokens - 1.0
            return 0.0
        state.tokens = tokens
        return (1.0 - tokens) / self.rate


class TokenBucket:
    """One bucket that holds its own state (``Refill`` for many that share a
    policy); starts full."""

    __slots__ = ("at", "refill", "tokens")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.refill = Refill(rate_per_s, burst)
        self.tokens = burst
        self.at = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when allowed, else the seconds to wait."""
        return self.refill.take(self, now)


class _State:
    """One key's bucket in ``TokenBuckets`` (the policy is the shared Refill)."""

    __slots__ = ("at", "tokens")

    def __init__(self, refill: Refill, now: float) -> None:
        self.tokens = 0.0
        self.at = 0.0
        refill.fill(self, now)


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        self._refill = Refill(rate_per_s, burst)  # refuses bad parameters
        self.rate = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, _State] = OrderedDict()

    def take(self, key: Hashable, now: float) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds to
        wait until a token is available (nothing is taken then)."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _State(self._refill, now)
        self._buckets[key] = bucket  # most recently used last
        wait = self._refill.take(bucket, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait
