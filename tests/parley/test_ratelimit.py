"""parley.ratelimit: token buckets on an explicit clock."""

from __future__ import annotations

import pytest

from parley.ratelimit import Refill, TokenBucket, TokenBuckets


def test_burst_then_refill_at_the_rate() -> None:
    b = TokenBuckets(rate_per_s=2.0, burst=3)
    assert [b.take("u", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("u", 0.0) == pytest.approx(0.5)  # one token needs half a second
    assert b.take("u", 0.5) == 0.0
    assert b.take("u", 0.5) > 0
    assert b.take("other", 0.5) == 0.0, "keys are independent"


def test_a_refused_take_takes_nothing_and_the_bucket_never_overfills() -> None:
    b = TokenBuckets(rate_per_s=1.0, burst=2)
    b.take("u", 0.0)
    b.take("u", 0.0)
    for _ in range(5):
        assert b.take("u", 0.0) > 0
    assert b.take("u", 1.0) == 0.0
    assert [b.take("u", 1000.0) for _ in range(3)][-1] > 0, "burst caps the refill"


def test_keys_are_bounded() -> None:
    b = TokenBuckets(rate_per_s=1.0, burst=1, max_keys=10)
    for i in range(100):
        b.take(i, 0.0)
    assert b.take(99, 0.0) > 0, "recent keys are kept"
    assert b.take(0, 0.0) == 0.0, "old keys were dropped (and start full)"


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_bad_parameters_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBuckets(rate, burst)


class _Owner:
    """State kept by its owner, as a gateway Session keeps it in its slots."""

    __slots__ = ("at", "tokens")


def test_one_refill_policy_serves_many_owners_independently() -> None:
    rate = Refill(rate_per_s=2.0, burst=2)
    a, b = _Owner(), _Owner()
    rate.fill(a, 0.0)
    rate.fill(b, 0.0)
    assert [rate.take(a, 0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert rate.take(b, 0.0) == 0.0  # b's budget is its own
    assert rate.take(a, 0.5) == 0.0  # refilled one token in 0.5 s
    assert rate.take(a, 0.5) == 0.5
    assert rate.take(b, 100.0) == 0.0 and b.tokens == 1.0  # never above burst


def test_token_bucket_is_a_refill_with_its_own_state() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.25) == 0.75
    with pytest.raises(ValueError):
        Refill(0.0, 1)
