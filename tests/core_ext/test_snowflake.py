"""Snowflake id generation, on both implementations."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core_ext
from core_ext import MAX_BACKWARDS_WAIT_MS, PARLEY_EPOCH_MS, ClockMovedBackwards

T0 = PARLEY_EPOCH_MS + 86_400_000  # one day after the epoch


def scripted(times: Iterable[int]) -> Callable[[], int]:
    """A clock returning ``times`` in order, then repeating the last one + 1 forever."""
    it = iter(times)
    last = [0]

    def clock() -> int:
        try:
            last[0] = next(it)
        except StopIteration:
            last[0] += 1
        return last[0]

    return clock


def test_epoch_is_2026_01_01_utc() -> None:
    import datetime

    epoch = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert int(epoch.timestamp() * 1000) == PARLEY_EPOCH_MS


def test_layout_is_41_10_12_bits(impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(513, clock_ms=lambda: T0)
    first = gen.next_id()
    assert first == ((T0 - PARLEY_EPOCH_MS) << 22) | (513 << 12) | 0
    assert gen.next_id() == first + 1
    assert impl.snowflake_parts(first) == (T0, 513, 0)
    assert gen.worker_id == 513


def test_parts_with_custom_epoch(impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(7, epoch_ms=1_000, clock_ms=lambda: 5_000)
    assert impl.snowflake_parts(gen.next_id(), 1_000) == (5_000, 7, 0)


def test_system_clock_ids_strictly_increase(impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(1)
    ids = [gen.next_id() for _ in range(20_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    ts, worker, _ = impl.snowflake_parts(ids[-1])
    assert worker == 1
    assert ts > PARLEY_EPOCH_MS


def test_4096_ids_per_ms_then_waits_for_next_ms(impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(0, clock_ms=scripted([T0] * 4100 + [T0 + 1]))
    ids = [gen.next_id() for _ in range(4097)]
    assert [impl.snowflake_parts(i)[2] for i in ids[:4096]] == list(range(4096))
    assert impl.snowflake_parts(ids[4096]) == (T0 + 1, 0, 0)
    assert all(a < b for a, b in itertools.pairwise(ids))


def test_small_backwards_step_is_waited_out(impl: core_ext.Kernels) -> None:
    clock = scripted([T0, T0 - 10, T0 - 5, T0 - 1, T0, T0 + 1])
    gen = impl.SnowflakeGenerator(3, clock_ms=clock)
    first = gen.next_id()
    second = gen.next_id()  # reads T0-10, waits through T0-5, T0-1 until T0
    assert second > first
    assert impl.snowflake_parts(second) == (T0, 3, 1)


def test_large_backwards_step_raises_and_issues_nothing(impl: core_ext.Kernels) -> None:
    step = MAX_BACKWARDS_WAIT_MS + 1
    gen = impl.SnowflakeGenerator(3, clock_ms=scripted([T0, T0 - step, T0 + 1]))
    first = gen.next_id()
    with pytest.raises(ClockMovedBackwards) as info:
        gen.next_id()
    assert info.value.by_ms == step
    assert gen.next_id() > first  # recovers once the clock is past the last id


def test_backwards_beyond_limit_while_waiting_raises(impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(3, clock_ms=scripted([T0, T0 - 10, T0 - 500]))
    gen.next_id()
    with pytest.raises(ClockMovedBackwards):
        gen.next_id()


@pytest.mark.parametrize("worker", [-1, 1024, 10**6])
def test_worker_id_out_of_range(impl: core_ext.Kernels, worker: int) -> None:
    with pytest.raises(ValueError, match="worker_id"):
        impl.SnowflakeGenerator(worker)


def test_clock_before_epoch_is_rejected(impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(0, clock_ms=lambda: PARLEY_EPOCH_MS - 1)
    with pytest.raises(ValueError, match="41-bit"):
        gen.next_id()


def test_clock_past_41_bits_is_rejected(impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(0, clock_ms=lambda: PARLEY_EPOCH_MS + (1 << 41))
    with pytest.raises(ValueError, match="41-bit"):
        gen.next_id()


@pytest.mark.parametrize("bad", [-1, 1 << 63])
def test_parts_rejects_out_of_range_ids(impl: core_ext.Kernels, bad: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*63"):
        impl.snowflake_parts(bad)


@given(
    worker=st.integers(0, 1023),
    steps=st.lists(st.integers(-MAX_BACKWARDS_WAIT_MS, 3), min_size=1, max_size=300),
)
def test_compiled_and_python_generators_agree(
    both: tuple[core_ext.Kernels, core_ext.Kernels], worker: int, steps: list[int]
) -> None:
    times = [T0]
    for step in steps:
        times.append(times[-1] + step)
    results = []
    for impl in both:
        gen = impl.SnowflakeGenerator(worker, clock_ms=scripted(times))
        out: list[object] = []
        for _ in range(len(times)):
            try:
                out.append(gen.next_id())
            except ClockMovedBackwards as exc:
                out.append(("backwards", exc.by_ms))
        results.append(out)
        ids = [i for i in out if isinstance(i, int)]
        assert all(a < b for a, b in itertools.pairwise(ids))
    assert results[0] == results[1]
