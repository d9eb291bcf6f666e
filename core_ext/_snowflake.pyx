# cython: language_level=3
"""Snowflake ids: the compiled twin of ``_snowflake_py.py`` (same rules).

Layout (most significant first), 63 bits, always positive as int64::

    | 41 bits: ms since epoch_ms | 10 bits: worker id | 12 bits: sequence |

* ``next_id()`` never returns an id <= a previous one from the same generator.
* Within one ms, up to 4096 ids; the 4097th waits for the next ms.
* A clock step back <= MAX_BACKWARDS_WAIT_MS is waited out by re-reading the
  clock; a larger one raises ClockMovedBackwards and issues nothing.
* A clock before ``epoch_ms`` or past its 41-bit range raises ValueError.
"""

from libc.stdint cimport int64_t
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from core_ext.defs_py import (
    MAX_BACKWARDS_WAIT_MS as _PY_MAX_BACKWARDS_WAIT_MS,
    MAX_SEQUENCE as _PY_MAX_SEQUENCE,
    MAX_TIMESTAMP as _PY_MAX_TIMESTAMP,
    MAX_WORKER_ID as _PY_MAX_WORKER_ID,
    PARLEY_EPOCH_MS,
    SEQUENCE_BITS as _PY_SEQUENCE_BITS,
    WORKER_BITS as _PY_WORKER_BITS,
    ClockMovedBackwards,
)

# The Python constants are the single source of truth; copy them into C ints.
cdef int64_t MAX_BACKWARDS_WAIT_MS = _PY_MAX_BACKWARDS_WAIT_MS
cdef int64_t MAX_SEQUENCE = _PY_MAX_SEQUENCE
cdef int64_t MAX_TIMESTAMP = _PY_MAX_TIMESTAMP
cdef int64_t MAX_WORKER_ID = _PY_MAX_WORKER_ID
cdef int SEQUENCE_BITS = _PY_SEQUENCE_BITS
cdef int TIMESTAMP_SHIFT = _PY_WORKER_BITS + _PY_SEQUENCE_BITS


cdef class SnowflakeGenerator:
    """Issues strictly increasing 63-bit ids for one worker.

    Not thread-safe: use one generator per thread (or per event loop).
    ``clock_ms`` returns ms since the Unix epoch; it exists for tests.
    """

    cdef object _clock        # None: the system clock (CLOCK_REALTIME, in ms)
    cdef int64_t _epoch_ms
    cdef int64_t _worker_bits
    cdef int64_t _last_ms     # ms of the last id issued; -1 before the first
    cdef int64_t _sequence    # sequence of the last id issued within _last_ms

    def __init__(self, worker_id, epoch_ms=PARLEY_EPOCH_MS, clock_ms=None):
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker_id must be in 0..{MAX_WORKER_ID}, not {worker_id}")
        if epoch_ms < 0:
            raise ValueError("epoch_ms must be >= 0")
        self._worker_bits = (<int64_t>worker_id) << SEQUENCE_BITS
        self._epoch_ms = epoch_ms
        self._clock = clock_ms
        self._last_ms = -1
        self._sequence = 0

    @property
    def worker_id(self):
        """The worker id stamped into every id."""
        return self._worker_bits >> SEQUENCE_BITS

    cdef inline int64_t _now(self) except? -1:
        cdef timespec ts
        if self._clock is None:
            # The same clock as time.time_ns(), without a Python call.
            clock_gettime(CLOCK_REALTIME, &ts)
            return (<int64_t>ts.tv_sec) * 1000 + ts.tv_nsec // 1000000
        return self._clock()

    def next_id(self):
        """Return the next id (strictly greater than every earlier one)."""
        cdef int64_t now = self._now()
        cdef int64_t last = self._last_ms
        cdef int64_t sequence, elapsed
        if now < last:
            if last - now > MAX_BACKWARDS_WAIT_MS:
                raise ClockMovedBackwards(last - now)
            while now < last:
                now = self._now()
                if last - now > MAX_BACKWARDS_WAIT_MS:
                    raise ClockMovedBackwards(last - now)
        if now == last:
            sequence = self._sequence + 1
            if sequence > MAX_SEQUENCE:
                while now <= last:
                    now = self._now()
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
        return (elapsed << TIMESTAMP_SHIFT) | self._worker_bits | sequence


def snowflake_parts(snowflake, epoch_ms=PARLEY_EPOCH_MS):
    """Split an id into ``(timestamp_ms_unix, worker_id, sequence)``.

    ``epoch_ms`` must be the one the id was generated with.  ValueError for a
    negative id or one wider than 63 bits.
    """
    if not 0 <= snowflake <= 0x7FFFFFFFFFFFFFFF:
        raise ValueError("snowflake must be in 0..2**63-1")
    cdef int64_t s = snowflake
    return (
        (s >> TIMESTAMP_SHIFT) + epoch_ms,
        (s >> SEQUENCE_BITS) & MAX_WORKER_ID,
        s & MAX_SEQUENCE,
    )
