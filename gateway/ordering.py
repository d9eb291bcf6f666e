"""Per-channel ordering at a gateway: sequence numbers in, in-order events out.

Rules (sans-IO; no clocks of its own, the caller passes ``now``):

* ``next_seq`` is the sequence number this gateway delivers next for the
  channel.  An event with ``seq == next_seq`` is delivered at once, with any
  buffered successors; ``seq < next_seq`` is a duplicate and dropped;
  ``seq > next_seq`` waits in the reorder buffer.
* While a gap exists, ``gap_since`` records when it was first seen; the
  caller fetches the missing range from PostgreSQL once the gap is older than
  its timeout and offers the fetched events like live ones.  Offering the
  same seq twice is harmless.
* Until ``start(next_seq)`` is called (the gateway has not yet read the
  channel's position after subscribing), everything is buffered.
* The buffer is bounded (``MAX_BUFFERED`` events); past that the stream asks
  for a backfill instead of holding more.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

MAX_BUFFERED = 10_000  # events held per channel while waiting for a gap to fill


class ChannelStream(Generic[T]):
    __slots__ = ("_buffer", "gap_since", "next_seq")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self._buffer: dict[int, T] = {}
        self.gap_since: float | None = None

    def start(self, next_seq: int, now: float) -> list[T]:
        """The channel position is known: deliver what is due, drop the older."""
        self.next_seq = next_seq
        for seq in [s for s in self._buffer if s < next_seq]:
            del self._buffer[seq]
        return self._drain(now)

    def offer(self, seq: int, item: T, now: float) -> list[T]:
        """Items now deliverable, in sequence order."""
        if self.next_seq is not None and seq < self.next_seq:
            return []
        if self.next_seq is not None and seq == self.next_seq:
            self.next_seq += 1
            if not self._buffer:
                return [item]
            out = [item]
            out.extend(self._drain(now))
            return out
        if len(self._buffer) < MAX_BUFFERED:
            self._buffer[seq] = item
        if self.next_seq is not None and self.gap_since is None:
            self.gap_since = now
        return []

    def _drain(self, now: float) -> list[T]:
        out: list[T] = []
        assert self.next_seq is not None
        while self.next_seq in self._buffer:
            out.append(self._buffer.pop(self.next_seq))
            self.next_seq += 1
        if not self._buffer:
            self.gap_since = None
        elif out or self.gap_since is None:
            self.gap_since = now  # a new, later gap: it gets its own timeout
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def missing_range(self) -> tuple[int, int] | None:
        """(first missing seq, last missing seq) when there is a gap."""
        if self.next_seq is None or not self._buffer:
            return None
        return self.next_seq, min(self._buffer) - 1
