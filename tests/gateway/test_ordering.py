"""ChannelStream: any arrival order in, strict seq order out, each seq once."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ordering import ChannelStream


def test_in_order_events_pass_straight_through() -> None:
    s: ChannelStream[str] = ChannelStream()
    assert s.start(1, 0.0) == []
    assert s.offer(1, "a", 0.0) == ["a"]
    assert s.offer(2, "b", 0.0) == ["b"]
    assert s.gap_since is None


def test_early_event_waits_and_gap_is_reported() -> None:
    s: ChannelStream[str] = ChannelStream()
    s.start(5, 0.0)
    assert s.offer(7, "g", 1.0) == []
    assert s.gap_since == 1.0
    assert s.missing_range() == (5, 6)
    assert s.offer(5, "e", 1.1) == ["e"]
    assert s.offer(6, "f", 1.2) == ["f", "g"]
    assert s.gap_since is None and s.next_seq == 8


def test_duplicates_and_old_events_are_dropped() -> None:
    s: ChannelStream[str] = ChannelStream()
    s.start(3, 0.0)
    assert s.offer(2, "old", 0.0) == []
    assert s.offer(3, "c", 0.0) == ["c"]
    assert s.offer(3, "c again", 0.0) == []


def test_events_before_start_are_buffered_then_trimmed() -> None:
    s: ChannelStream[int] = ChannelStream()
    assert s.offer(4, 4, 0.0) == []
    assert s.offer(6, 6, 0.0) == []
    assert s.start(5, 0.0) == []  # 4 is history for this gateway; 5 is missing
    assert s.offer(5, 5, 0.0) == [5, 6]


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=60), st.randoms(use_true_random=False),
       st.integers(min_value=0, max_value=3))
def test_any_arrival_order_with_duplicates_yields_each_seq_once_in_order(
        n: int, rnd: random.Random, dup_factor: int) -> None:
    arrivals = list(range(1, n + 1)) * (1 + dup_factor)
    rnd.shuffle(arrivals)
    s: ChannelStream[int] = ChannelStream()
    out = s.start(1, 0.0)
    for seq in arrivals:
        out += s.offer(seq, seq, 0.0)
    assert out == list(range(1, n + 1))
    assert s.buffered == 0 and s.gap_since is None
