# cython: annotation_typing=False
# (Types for the compiled twin come from the .pxd only; annotations are for mypy.)
"""Fan-out: write one pre-built frame to many connections.

This file is plain Python and the source of the compiled ``fanout_c`` (see
``fanout_c.pxd`` and setup.py), so the two cannot drift.

Contract of ``fanout_write``:

* Targets are visited in order; each gets ``write(frame)`` at most once.
* A target whose ``get_write_buffer_size()`` is already above ``limit_bytes``
  is *skipped* (not written to): it is a slow consumer, and waiting for it
  would stall everyone else.  Its index is returned.
* A target whose ``get_write_buffer_size()`` or ``write()`` raises is also
  returned (the exception is swallowed: one broken socket must not abort a
  broadcast to thousands).  Nothing is retried.
* The returned indexes are increasing; the caller decides what to do with
  them (Parley closes them with 4002 "slow consumer").
* Delivery is not confirmed: ``write`` only queues bytes in user space.

The target protocol (``FanoutTarget``) is the two methods every asyncio
transport already has, so raw ``asyncio.Transport``/uvloop transports fit as
they are; ``gateway.transport.WsTransport`` implements the same two methods,
counting the bytes it holds for its per-iteration write coalescing plus its
transport's buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class FanoutTarget(Protocol):
    """Something frames can be written to without waiting."""

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by ``write`` but not yet handed to the kernel."""
        ...

    def write(self, data: bytes, /) -> object:
        """Queue ``data`` for sending; must not block."""
        ...


def fanout_write(targets: Sequence[FanoutTarget], frame: bytes, limit_bytes: int) -> list[int]:
    """Write ``frame`` to every target not over ``limit_bytes``; return the others.

    See the module docstring for the full contract.
    """
    skipped: list[int] = []
    index = -1
    for target in targets:
        index += 1
        try:
            if target.get_write_buffer_size() > limit_bytes:
                skipped.append(index)
                continue
            target.write(frame)
        except Exception:  # isolate one broken socket (see contract)
            skipped.append(index)
    return skipped
