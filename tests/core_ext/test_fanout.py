"""fanout_write (fanout_py / fanout_c), on both implementations."""

from __future__ import annotations

import pytest

import core_ext


class FakeTarget:
    """A FanoutTarget with a fixed buffer size; optionally broken."""

    def __init__(self, buffered: int = 0, fail: BaseException | None = None) -> None:
        self.buffered = buffered
        self.fail = fail
        self.written: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.written.append(data)


def test_writes_the_frame_once_to_every_target(impl: core_ext.Kernels) -> None:
    targets = [FakeTarget() for _ in range(5)]
    assert impl.fanout_write(targets, b"frame", 100) == []
    assert all(t.written == [b"frame"] for t in targets)


def test_skips_targets_over_the_limit_and_returns_their_indexes(impl: core_ext.Kernels) -> None:
    targets = [FakeTarget(0), FakeTarget(101), FakeTarget(100), FakeTarget(10**9)]
    assert impl.fanout_write(targets, b"f", 100) == [1, 3]
    assert [t.written for t in targets] == [[b"f"], [], [b"f"], []]


@pytest.mark.parametrize("exc", [RuntimeError("closed"), OSError("reset"), ValueError("bug")])
def test_a_broken_target_does_not_stop_the_others(
    impl: core_ext.Kernels, exc: BaseException
) -> None:
    targets = [FakeTarget(), FakeTarget(fail=exc), FakeTarget()]
    assert impl.fanout_write(targets, b"f", 100) == [1]
    assert targets[2].written == [b"f"]


def test_accepts_any_sequence(impl: core_ext.Kernels) -> None:
    targets = (FakeTarget(), FakeTarget(500))
    assert impl.fanout_write(targets, b"f", 100) == [1]
    assert impl.fanout_write([], b"f", 100) == []
