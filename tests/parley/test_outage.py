"""OutageLog: an outage is a few log lines, not one per failure (injected clock)."""

from __future__ import annotations

import logging

import pytest

from parley.outage import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _outage(caplog: pytest.LogCaptureFixture, clock: Clock, **kw: object) -> OutageLog:
    caplog.set_level(logging.DEBUG, logger="test.outage")
    return OutageLog(logging.getLogger("test.outage"), "hub publish",
                     consequence="gateways backfill", interval_s=10.0, clock=clock,
                     **kw)  # type: ignore[arg-type]


def test_a_three_second_outage_is_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    out = _outage(caplog, clock)
    out.success()  # nothing failed: silent
    assert caplog.records == []
    for _ in range(75):  # 25 msg/s for 3 s
        out.failure(ConnectionError("Connection refused"), "c:1")
        clock.now += 0.04
    assert out.down and out.failures == 75
    out.success()
    out.success()
    assert not out.down and out.failures == 0
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2, msgs
    assert msgs[0].startswith("hub publish failing (c:1): Connection refused; gateways backfill")
    assert caplog.records[0].exc_info is not None  # the first failure keeps its traceback
    assert msgs[1] == "hub publish recovered after 3.0 s down and 75 failures"
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_long_outage_reports_a_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    out = _outage(caplog, clock, traceback=False)
    for _ in range(200):  # 25 s, one failure every 0.125 s (exact in binary)
        out.failure(ConnectionError("down"))
        clock.now += 0.125
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 3, msgs  # first, then at 10 s and 20 s
    assert caplog.records[0].exc_info is None
    assert msgs[1].startswith("hub publish still failing: 80 failures in the last 10.0 s "
                              "(81 in all, down 10.0 s)")
    assert msgs[2].startswith("hub publish still failing: 80 failures in the last 10.0 s "
                              "(161 in all, down 20.0 s)")
    out.success()
    assert caplog.records[-1].getMessage() == (
        "hub publish recovered after 25.0 s down and 200 failures")


def test_each_outage_is_reported_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    out = _outage(caplog, clock)
    for _ in range(2):
        out.failure(ConnectionError("down"))
        clock.now += 1.0
        out.success()
        clock.now += 30.0
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 4, msgs
    assert [m.split(":")[0].split(" after")[0] for m in msgs] == [
        "hub publish failing", "hub publish recovered"] * 2
