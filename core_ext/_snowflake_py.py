"""Snowflake ids: the pure-Python twin of ``_snowflake.pyx``.

Layout (most significant first), 63 bits, always positive as int64::

    | 41 bits: ms since epoch_ms | 10 bits: worker id | 12 bits: sequence |

Rules (both twins):
* ``next_id()`` never returns an id <= a previous one from the same generator.
* Within one ms, up to 4096 ids (sequence 0..4095); the 4097th waits for the
  clock to reach the next ms.
* A clock that steps back by <= MAX_BACKWARDS_WAIT_MS is waited out by
  re-reading it; a larger step raises ClockMovedBackwards and issues nothing.
* Uniqueness across processes relies on distinct worker ids (0..1023).
* A clock before ``epoch_ms`` or past its 41-bit range raises ValueError.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core_ext.defs_py import (
    MAX_BACKWARDS_WAIT_MS,
    MAX_SEQUENCE,
    MAX_TIMESTAMP,
    MAX_WORKER_ID,
    PARLEY_EPOCH_MS,
    SEQUENCE_BITS,
    WORKER_BITS,
    ClockMovedBackwards,
)

_TIMESTAMP_SHIFT = WORKER_BITS + SEQUENCE_BITS  # 22
_MAX_ID = (1 << 63) - 1


def _system_clock_ms() -> int:
    """Wall-clock ms since the Unix epoch."""
    return time.time_ns() // 1_000_000


class SnowflakeGenerator:
    """Issues strictly increasing 63-bit ids for one worker.

    Not thread-safe: use one generator per thread (or per event loop).
    ``clock_ms`` returns ms since the Unix epoch; it exists for tests.
    """

    __slots__ = ("_clock", "_epoch_ms", "_last_ms", "_sequence", "_worker_bits")

    def __init__(
        self,
        worker_id: int,
        epoch_ms: int = PARLEY_EPOCH_MS,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker_id must be in 0..{MAX_WORKER_ID}, not {worker_id}")
        if epoch_ms < 0:
            raise ValueError("epoch_ms must be >= 0")
        self._worker_bits = worker_id << SEQUENCE_BITS
        self._epoch_ms = epoch_ms
        self._clock = clock_ms if clock_ms is not None else _system_clock_ms
        self._last_ms = -1  # ms of the last id issued; -1 before the first
        self._sequence = 0  # sequence of the last id issued within _last_ms

    @property
    def worker_id(self) -> int:
        """The worker id stamped into every id."""
        return self._worker_bits >> SEQUENCE_BITS

    def next_id(self) -> int:
        """Return the next id (strictly greater than every earlier one)."""
        now = self._clock()
        last = self._last_ms
        if now < last:
            if last - now > MAX_BACKWARDS_WAIT_MS:
                raise ClockMovedBackwards(last - now)
            # Small step back: wait for the clock to catch up with last.
            while now < last:
                now = self._clock()
                if last - now > MAX_BACKWARDS_WAIT_MS:
                    raise ClockMovedBackwards(last - now)
        if now == last:
            sequence = self._sequence + 1
            if sequence > MAX_SEQUENCE:
                # 4096 ids this ms: wait for the next ms.
                while now <= last:
                    now = self._clock()
                    if last - now > MAX_BACKWARDS_WAIT_MS:
                        raise ClockMovedBackwards(last - now)
                sequence = 0
        else:
            sequence = 0
        elapsed = now - self._epoch_ms
        if not 0 <= elapsed <= MAX_TIMESTAMP:
            raise ValueError(f"clock {now} ms is outside the 41-bit range of the epoch")
        self._last_ms = now
        self._sequence = sequence
        return (elapsed << _TIMESTAMP_SHIFT) | self._worker_bits | sequence


def snowflake_parts(snowflake: int, epoch_ms: int = PARLEY_EPOCH_MS) -> tuple[int, int, int]:
    """Split an id into ``(timestamp_ms_unix, worker_id, sequence)``.

    ``epoch_ms`` must be the one the id was generated with.  ValueError for a
    negative id or one wider than 63 bits.
    """
    if not 0 <= snowflake <= _MAX_ID:
        raise ValueError("snowflake must be in 0..2**63-1")
    return (
        (snowflake >> _TIMESTAMP_SHIFT) + epoch_ms,
        (snowflake >> SEQUENCE_BITS) & MAX_WORKER_ID,
        snowflake & MAX_SEQUENCE,
    )
