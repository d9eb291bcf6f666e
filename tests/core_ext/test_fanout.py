"""fanout_write, Outbound and OutboundQueue (fanout_py / fanout_c), on both
implementations, plus a differential test of the two."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- Outbound and OutboundQueue -------------------------------------------------------------------

class FakeTransport:
    """An asyncio transport as Outbound uses it; counts buffer-size queries."""

    def __init__(self, buffered: int = 0, high_water: int | None = None,
                 fail: BaseException | None = None) -> None:
        self.buffered = buffered
        self.high_water = high_water
        self.fail = fail
        self.closing = False
        self.writes: list[bytes] = []
        self.size_queries = 0
        if high_water is not None:
            self.get_write_buffer_limits = lambda: (high_water // 4, high_water)

    def write(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        self.size_queries += 1
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


class Harness:
    """One OutboundQueue and the Outbounds of one implementation."""

    def __init__(self, impl: core_ext.Kernels, limit: int = 1000) -> None:
        self.wakes = 0
        self.errors: list[tuple[Any, Exception]] = []
        self.queue = impl.OutboundQueue(self._wake, limit, self._error)
        overflowed = self.overflowed = []  # type: list[Any]

        class Conn(impl.Outbound):  # type: ignore[misc,name-defined]
            __slots__ = ("name",)

            def _ob_overflow(self) -> None:
                overflowed.append(self)

        self.conn_class = Conn

    def _wake(self) -> None:
        self.wakes += 1

    def _error(self, ob: Any, exc: Exception) -> None:
        self.errors.append((ob, exc))

    def conn(self, transport: FakeTransport | None = None, *, open_: bool = True) -> Any:
        ob = self.conn_class()
        ob._ob_attach(transport if transport is not None else FakeTransport(), self.queue)
        ob._ob_open = open_
        return ob


def test_frames_queued_before_a_flush_leave_in_one_write(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    t = FakeTransport()
    ob = h.conn(t)
    for frame in (b"a", b"bb", b"ccc"):
        assert ob._ob_queue_frame(frame)
    assert ob._ob_bytes == 6 and ob._ob_buffered() == 6
    assert t.writes == []  # nothing is written before the flush
    assert h.wakes == 1 and len(h.queue) == 1
    assert h.queue.flush(10) is False
    assert t.writes == [b"abbccc"]
    assert ob._ob_bytes == 0 and len(h.queue) == 0


def test_a_single_frame_is_written_as_it_is(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    t = FakeTransport()
    ob = h.conn(t)
    frame = b"x" * 100
    ob._ob_queue_frame(frame)
    h.queue.flush(1)
    assert t.writes[0] is frame  # no join, no copy


def test_wake_is_called_once_until_the_queue_drains(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    a, b = h.conn(), h.conn()
    a._ob_queue_frame(b"1")
    b._ob_queue_frame(b"2")
    a._ob_queue_frame(b"3")
    assert h.wakes == 1
    assert h.queue.flush(1) is True  # b still waits
    b._ob_queue_frame(b"4")
    assert h.wakes == 1
    assert h.queue.flush(1) is False
    a._ob_queue_frame(b"5")
    assert h.wakes == 2


def test_flush_slices_in_turn_order_and_late_frames_join_a_waiting_write(
    impl: core_ext.Kernels,
) -> None:
    h = Harness(impl)
    ts = [FakeTransport() for _ in range(5)]
    obs = [h.conn(t) for t in ts]
    for i, ob in enumerate(obs):
        ob._ob_queue_frame(b"m1-%d" % i)
    order: list[int] = []
    assert h.queue.flush(2) is True
    order += [i for i, t in enumerate(ts) if t.writes]
    assert order == [0, 1]
    # A second message reaches everyone: 0 and 1 wait again (at the end of the
    # line), 2-4 had not had their turn, so their two frames share one write.
    for i, ob in enumerate(obs):
        ob._ob_queue_frame(b"m2-%d" % i)
    assert len(h.queue) == 5
    assert h.queue.flush(3) is True
    assert [t.writes for t in ts[2:]] == [[b"m1-%d" % i + b"m2-%d" % i] for i in (2, 3, 4)]
    assert ts[0].writes == [b"m1-0"]
    assert h.queue.flush(0) is False  # <= 0: everything left
    assert ts[0].writes == [b"m1-0", b"m2-0"] and ts[1].writes == [b"m1-1", b"m2-1"]


def test_a_long_queue_forgets_its_written_prefix(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    ts = [FakeTransport() for _ in range(3000)]
    obs = [h.conn(t) for t in ts]
    for ob in obs:
        ob._ob_queue_frame(b"x")
    rounds = 0
    while h.queue.flush(700):
        obs[0]._ob_queue_frame(b"y")  # keeps re-joining the end of the line
        rounds += 1
    assert all(t.writes == [b"x"] for t in ts[1:])
    assert b"".join(ts[0].writes) == b"x" + b"y" * rounds
    assert len(h.queue) == 0


def test_write_now_empties_the_queue_and_the_turn_writes_nothing(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    t = FakeTransport()
    ob = h.conn(t)
    ob._ob_queue_frame(b"a")
    ob._ob_write_now()
    assert t.writes == [b"a"]
    ob._ob_queue_frame(b"b")  # still listed: no second wake, written at its turn
    assert h.wakes == 1
    assert h.queue.flush(5) is False
    assert t.writes == [b"a", b"b"]


def test_nothing_is_written_to_a_closing_transport(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    t = FakeTransport(buffered=10**9)
    ob = h.conn(t)
    ob._ob_queue_frame(b"a", False)
    t.closing = True
    assert ob._ob_buffered() == 1  # a closing transport's buffer does not count
    h.queue.flush(5)
    assert t.writes == [] and ob._ob_bytes == 0


def test_drop_forgets_queued_frames(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    t = FakeTransport()
    ob = h.conn(t)
    ob._ob_queue_frame(b"a")
    ob._ob_queue_frame(b"b")
    ob._ob_drop()
    assert ob._ob_bytes == 0
    h.queue.flush(5)
    assert t.writes == []


def test_a_failing_write_is_reported_and_the_flush_goes_on(impl: core_ext.Kernels) -> None:
    h = Harness(impl)
    bad = h.conn(FakeTransport(fail=RuntimeError("gone")))
    good = FakeTransport()
    ok = h.conn(good)
    bad._ob_queue_frame(b"a")
    ok._ob_queue_frame(b"b")
    assert h.queue.flush(5) is False
    assert good.writes == [b"b"]
    assert [(ob, str(exc)) for ob, exc in h.errors] == [(bad, "gone")]


def test_queue_frame_over_the_limit_drops_everything_and_overflows(
    impl: core_ext.Kernels,
) -> None:
    h = Harness(impl, limit=100)
    t = FakeTransport(buffered=90)
    ob = h.conn(t)
    assert ob._ob_queue_frame(b"x" * 10)  # 100: at the limit is fine
    assert h.overflowed == []
    assert not ob._ob_queue_frame(b"y")  # 101
    assert h.overflowed == [ob]
    assert ob._ob_bytes == 0
    # Frames after the close (the owner queues its close frame unchecked):
    assert ob._ob_queue_frame(b"close", False)
    h.queue.flush(5)
    assert t.writes == [b"close"]


def test_the_limit_is_not_checked_on_a_connection_that_is_not_open(
    impl: core_ext.Kernels,
) -> None:
    h = Harness(impl, limit=10)
    ob = h.conn(FakeTransport(buffered=1000), open_=False)
    assert ob._ob_queue_frame(b"reply")
    assert h.overflowed == []


def test_the_transport_is_asked_only_near_the_limit_or_when_paused(
    impl: core_ext.Kernels,
) -> None:
    h = Harness(impl, limit=1000)
    t = FakeTransport(buffered=0, high_water=500)
    ob = h.conn(t)
    ob._ob_queue_frame(b"x" * 400)  # 400 + 500 <= 1000: no question
    assert t.size_queries == 0
    ob._ob_queue_frame(b"x" * 200)  # 600 + 500 > 1000: ask (0 buffered)
    assert t.size_queries == 1 and h.overflowed == []
    h.queue.flush(1)
    ob.pause_writing()
    t.buffered = 700
    assert ob._ob_paused
    ob._ob_queue_frame(b"x" * 301)  # paused: ask; 301 + 700 > 1000
    assert h.overflowed == [ob]
    ob.resume_writing()
    assert not ob._ob_paused


def test_an_unknown_high_water_mark_means_asking_every_time(impl: core_ext.Kernels) -> None:
    h = Harness(impl, limit=1000)
    t = FakeTransport()  # no get_write_buffer_limits
    ob = h.conn(t)
    ob._ob_queue_frame(b"x")
    assert t.size_queries == 1


def test_fanout_to_outbounds_queues_and_reports_slow_consumers(impl: core_ext.Kernels) -> None:
    h = Harness(impl, limit=1000)
    ts = [FakeTransport(high_water=100), FakeTransport(buffered=5000),
          FakeTransport(buffered=995), FakeTransport()]
    fast = h.conn(ts[0])
    slow = h.conn(ts[1])  # already over the fan-out limit
    filling = h.conn(ts[2])  # goes over the queue's limit now
    closing = h.conn(ts[3], open_=False)
    plain = FakeTarget()
    targets = [fast, slow, filling, closing, plain]
    assert impl.fanout_write(targets, b"frame!", 2000) == [1]
    assert h.overflowed == [filling]
    assert fast._ob_bytes == 6 and filling._ob_bytes == 0 and closing._ob_bytes == 0
    assert plain.written == [b"frame!"]
    assert h.queue.flush(10) is False
    assert [t.writes for t in ts] == [[b"frame!"], [], [], []]


def test_an_outbound_of_the_other_implementation_is_a_plain_target(
    both: tuple[core_ext.Kernels, core_ext.Kernels],
) -> None:
    python, cython = both
    for ours, theirs in ((python, cython), (cython, python)):
        h = Harness(theirs)

        class Conn(h.conn_class):  # type: ignore[name-defined,misc]
            __slots__ = ("got",)

            def get_write_buffer_size(self) -> int:
                return int(self._ob_buffered())

            def write(self, frame: bytes) -> None:
                self._ob_queue_frame(frame)

        ob = Conn()
        ob._ob_attach(FakeTransport(), h.queue)
        ob._ob_open = True
        assert ours.fanout_write([ob], b"f", 10) == []
        assert ob._ob_bytes == 1


# --- the two implementations agree --------------------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("queue"), st.integers(0, 3), st.integers(0, 300), st.booleans()),
        st.tuples(st.just("fanout"), st.integers(1, 300), st.integers(0, 1500)),
        st.tuples(st.just("flush"), st.integers(0, 3)),
        st.tuples(st.just("buffer"), st.integers(0, 3), st.integers(0, 1200)),
        st.tuples(st.just("pause"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("now"), st.integers(0, 3)),
        st.tuples(st.just("open"), st.integers(0, 3), st.booleans()),
    ),
    max_size=60,
)


def _replay(impl: core_ext.Kernels, ops: list[tuple[Any, ...]]) -> list[Any]:
    h = Harness(impl, limit=1000)
    ts = [FakeTransport(high_water=hw) for hw in (None, 200, 400, 0)]
    obs = [h.conn(t) for t in ts]
    log: list[Any] = []
    for op in ops:
        kind = op[0]
        if kind == "queue":
            log.append(obs[op[1]]._ob_queue_frame(b"q" * op[2], op[3]))
        elif kind == "fanout":
            log.append(impl.fanout_write(obs, b"f" * op[1], op[2]))
        elif kind == "flush":
            log.append(h.queue.flush(op[1]))
        elif kind == "buffer":
            # Keep the flow-control invariant: over the high-water mark means paused.
            t, ob = ts[op[1]], obs[op[1]]
            t.buffered = op[2]
            if t.high_water is not None and op[2] > t.high_water:
                ob.pause_writing()
        elif kind == "pause":
            t, ob = ts[op[1]], obs[op[1]]
            if op[2] or (t.high_water is not None and t.buffered > t.high_water):
                ob.pause_writing()
            else:
                ob.resume_writing()
        elif kind == "now":
            obs[op[1]]._ob_write_now()
        else:
            obs[op[1]]._ob_open = op[2]
        log.append([ob._ob_buffered() for ob in obs])
    log.append([t.writes for t in ts])
    log.append([obs.index(ob) for ob in h.overflowed])
    log.append(h.wakes)
    return log


@settings(max_examples=300, deadline=None)
@given(ops=_OPS)
def test_python_and_cython_agree(both: tuple[core_ext.Kernels, core_ext.Kernels],
                                 ops: list[tuple[Any, ...]]) -> None:
    python, cython = both
    assert _replay(python, ops) == _replay(cython, ops)
