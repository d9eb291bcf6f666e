"""Logging a dependency outage without flooding the log.

While a dependency is down (Redis under the hub, say), every operation that
needs it fails; a WARNING with a traceback per failure buries everything
else (about 72 of them per process in a 3 s Redis outage at 25 msg/s).  An
``OutageLog`` turns an outage into at most:

* one WARNING at the first failure, with the exception (and its traceback
  unless turned off) and what the failure means for users;
* one WARNING per ``interval_s`` while failures go on, with their count;
* one WARNING at the first success after failures: recovered, how long it
  was down, how many failures it had.

Rules: it has no timer of its own (a report is written when a failure or a
success is recorded, so a dependency nobody uses is not reported); the clock
is injected (monotonic seconds), so tests need not sleep; ``success`` costs
one attribute test when nothing failed, so hot paths may call it on every
operation.  Not thread-safe: one event loop.

Not a backend: any package may use it (it imports nothing of ours).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Seconds between two "still failing" reports of one outage.
REPORT_INTERVAL_S = 10.0


class OutageLog:
    """The log lines of one dependency's outages (see the module docstring)."""

    __slots__ = ("_clock", "_down_since", "_failures", "_interval_s", "_log", "_reported",
                 "_reported_at", "_traceback", "consequence", "what")

    def __init__(self, logger: logging.Logger, what: str, *, consequence: str = "",
                 interval_s: float = REPORT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, traceback: bool = True) -> None:
        self._log = logger
        self.what = what  # what fails, as the subject of the lines: "hub publish"
        self.consequence = consequence  # what the failure means: "gateways will backfill"
        self._interval_s = interval_s
        self._clock = clock
        self._traceback = traceback
        self._down_since: float | None = None  # clock reading of the outage's first failure
        self._failures = 0  # failures in this outage
        self._reported = 0  # failures already counted in a line
        self._reported_at = 0.0

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self._down_since is not None

    @property
    def failures(self) -> int:
        """Failures of the current outage (0 when up)."""
        return self._failures

    def failure(self, exc: BaseException, context: str = "") -> None:
        """One operation failed with ``exc`` (``context``: which one, for the first line)."""
        now = self._clock()
        self._failures += 1
        if self._down_since is None:
            self._down_since = self._reported_at = now
            self._reported = 1
            where = f" ({context})" if context else ""
            tail = f"; {self.consequence}" if self.consequence else ""
            self._log.warning("%s failing%s: %s%s; further failures are counted, "
                              "reported every %g s", self.what, where, exc or type(exc).__name__,
                              tail, self._interval_s, exc_info=exc if self._traceback else None)
            return
        if now - self._reported_at >= self._interval_s:
            self._log.warning("%s still failing: %d failures in the last %.1f s "
                              "(%d in all, down %.1f s); last: %s", self.what,
                              self._failures - self._reported, now - self._reported_at,
                              self._failures, now - self._down_since,
                              exc or type(exc).__name__)
            self._reported = self._failures
            self._reported_at = now

    def success(self) -> None:
        """One operation succeeded: ends an outage (with one line) if there was one."""
        if self._down_since is None:
            return
        now = self._clock()
        self._log.warning("%s recovered after %.1f s down and %d failures", self.what,
                          now - self._down_since, self._failures)
        self._down_since = None
        self._failures = self._reported = 0
