"""Kernel micro-benchmarks, fixed seeds and sizes.

Run: ``make bench`` (or ``pytest bench/micro --benchmark-only``).  Each
benchmark runs for both implementations; compare within a group.
``test_speedup_targets`` checks the compiled/Python ratios we promise:
>= 10x for unmasking 64 KiB and >= 3x for parsing small frames.

Inputs:
* mask: 64 KiB (65,536 bytes) of random data, one 4-byte key.
* parse: 1,000 masked binary frames of 50-byte payloads (56 bytes each on
  the wire), fed to a fresh parser as one 56,000-byte chunk.
* snowflake: ``next_id`` on the system clock.
"""

from __future__ import annotations

import random
import timeit
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import core_ext

SEED = 6455
MASK_BYTES = 64 * 1024
SMALL_FRAMES = 1000
SMALL_PAYLOAD_BYTES = 50

_rnd = random.Random(SEED)
MASK_DATA = _rnd.randbytes(MASK_BYTES)
MASK_KEY = _rnd.randbytes(4)
SMALL_STREAM = b"".join(
    core_ext.kernels("python").build_frame(0x2, _rnd.randbytes(SMALL_PAYLOAD_BYTES), True,
                                           _rnd.randbytes(4))
    for _ in range(SMALL_FRAMES)
)
FANOUT_FRAME = core_ext.kernels("python").build_frame(0x2, _rnd.randbytes(200))


class _Sink:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def get_write_buffer_size(self) -> int:
        return self.n

    def write(self, data: bytes) -> None:
        pass


def _parse(impl: core_ext.Kernels) -> Callable[[], object]:
    def run() -> object:
        frames = impl.FrameParser(1 << 20).feed(SMALL_STREAM)
        assert len(frames) == SMALL_FRAMES
        return frames

    return run


@pytest.mark.benchmark(group="mask-64KiB")
def test_mask_64k(benchmark: BenchmarkFixture, impl: core_ext.Kernels) -> None:
    result = benchmark(impl.mask, MASK_DATA, MASK_KEY)
    assert len(result) == MASK_BYTES


@pytest.mark.benchmark(group="parse-1000x50B")
def test_parse_small_frames(benchmark: BenchmarkFixture, impl: core_ext.Kernels) -> None:
    benchmark(_parse(impl))


@pytest.mark.benchmark(group="build-frame-200B")
def test_build_frame(benchmark: BenchmarkFixture, impl: core_ext.Kernels) -> None:
    payload = MASK_DATA[:200]
    benchmark(impl.build_frame, 0x2, payload)


@pytest.mark.benchmark(group="fanout-1000-targets")
def test_fanout_write(benchmark: BenchmarkFixture, impl: core_ext.Kernels) -> None:
    targets = [_Sink() for _ in range(1000)]
    assert benchmark(impl.fanout_write, targets, FANOUT_FRAME, 1 << 20) == []


@pytest.mark.benchmark(group="snowflake-next-id")
def test_snowflake_next_id(benchmark: BenchmarkFixture, impl: core_ext.Kernels) -> None:
    gen = impl.SnowflakeGenerator(1)
    benchmark(gen.next_id)


def _best(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def test_speedup_targets() -> None:
    """The compiled kernels are worth their build: check the promised ratios."""
    try:
        cython = core_ext.kernels("cython")
    except ImportError as exc:
        pytest.skip(f"COMPILED core_ext NOT BENCHMARKED: {exc}")
    python = core_ext.kernels("python")
    mask_ratio = _best(lambda: python.mask(MASK_DATA, MASK_KEY), 200) / _best(
        lambda: cython.mask(MASK_DATA, MASK_KEY), 200)
    parse_ratio = _best(_parse(python), 20) / _best(_parse(cython), 20)
    print(f"\nspeedup compiled/python: unmask 64 KiB {mask_ratio:.1f}x, "
          f"parse 1000 x 50 B frames {parse_ratio:.1f}x")
    assert mask_ratio >= 10
    assert parse_ratio >= 3
