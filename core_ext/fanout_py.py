# cython: annotation_typing=False
# (Types for the compiled twin come from the .pxd only; annotations are for mypy.)
"""Fan-out: one pre-built frame to many connections, and the per-connection
outbound queue that makes it cheap.

This file is plain Python and the source of the compiled ``fanout_c`` (see
``fanout_c.pxd`` and setup.py), so the two cannot drift.

Rules of this file:

1. Nothing here performs I/O except ``transport.write`` in a flush, and
   nothing here waits.  The owner (``gateway.transport``) decides when to
   flush; this file decides what each flush writes.
2. Every connection's frames leave in queue order, and all frames queued to
   a connection before its flush leave in one ``transport.write``.
3. In the compiled twin the per-connection work of a fan-out is C: no Python
   method call per socket unless a limit is near (the transport's buffer must
   then be asked) or a connection overflowed (its owner closes it).

``Outbound`` (a base class of a connection protocol,
``gateway.transport.WsTransport``) holds the frames queued for one connection
until its next flush: the first frame, a list only from the second one on
(so a one-frame flush allocates nothing), the byte count, and whether it
waits in its ``OutboundQueue``.  It also implements asyncio's flow-control
callbacks (``pause_writing``/``resume_writing``): while the transport is not
paused its buffer holds at most its high-water mark, so "queued + buffered
over the limit" needs no ``get_write_buffer_size()`` call unless the queued
bytes alone come within the high-water mark of the limit.  The answer is the
same as asking every time; only the cost differs.

``OutboundQueue`` (one per server) lists the connections with queued frames
in the order they got their first one.  ``flush(n)`` writes the next ``n`` of
them and says whether any remain, so a fan-out to 10,000 sockets can be
written in slices with reads and commits in between.  A connection already
listed only grows its pending frames: it is written once, when its turn
comes.  ``wake()`` is called when the queue gets work while idle; the owner
then calls ``flush`` from a loop callback until it returns False.

Contract of ``fanout_write(targets, frame, limit_bytes)``:

* Targets are visited in order; each gets the frame at most once.
* A target whose buffered bytes (``get_write_buffer_size()``; for an
  ``Outbound``: queued plus its transport's buffer) are already above
  ``limit_bytes`` is *skipped*: it is a slow consumer, and waiting for it
  would stall everyone else.  Its index is returned.
* Otherwise a plain target gets ``write(frame)``; an ``Outbound`` gets the
  frame queued if it is open (a closing connection takes no more frames), and
  if that puts it over its queue's ``limit_bytes`` its queued frames are
  dropped and its ``_ob_overflow()`` hook runs (the owner closes it).
* A target whose calls raise is also returned (the exception is swallowed:
  one broken socket must not abort a broadcast to thousands).  Nothing is
  retried.
* The returned indexes are increasing; the caller decides what to do with
  them (Parley closes them with 4002 "slow consumer").
* Delivery is not confirmed: ``write`` only queues bytes in user space.

The target protocol (``FanoutTarget``) is the two methods every asyncio
transport already has, so raw ``asyncio.Transport``/uvloop transports fit as
they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class FanoutTarget(Protocol):
    """Something frames can be written to without waiting."""

    def get_write_buffer_size(self) -> int:
        """Bytes accepted by ``write`` but not yet handed to the kernel."""
        ...

    def write(self, data: bytes, /) -> object:
        """Queue ``data`` for sending; must not block."""
        ...


class OutboundQueue:
    """The connections with queued frames, flushed in FIFO order (see module).

    ``wake()``: called (synchronously, from the append that found the queue
    idle) when there is work and no flush is due; the owner schedules one.
    ``limit_bytes``: queued + transport-buffered bytes above which an
    ``Outbound`` overflows.  ``on_error(outbound, exc)``: a connection's write
    raised; the flush goes on with the others (None: ignore).
    """

    __slots__ = ("_armed", "_dirty", "_next", "_on_error", "_wake", "limit_bytes")

    def __init__(self, wake: Callable[[], object], limit_bytes: int,
                 on_error: Callable[[Outbound, Exception], object] | None = None) -> None:
        self._dirty: list[Outbound] = []  # [_next:] wait for their write
        self._next = 0
        self._armed = False  # wake() was called and flush has not drained since
        self._wake = wake
        self._on_error = on_error
        self.limit_bytes = limit_bytes

    def __len__(self) -> int:
        """Connections waiting for their turn (some may have been flushed
        early, by ``Outbound._ob_write_now``, and will write nothing)."""
        return len(self._dirty) - self._next

    def _add(self, ob: Outbound) -> None:
        self._dirty.append(ob)
        if not self._armed:
            self._armed = True
            self._wake()

    def flush(self, max_connections: int) -> bool:
        """Write the next ``max_connections`` waiting connections (all if <= 0),
        each with one ``transport.write``.  True if some still wait: call
        again (from a later loop callback).  False: drained; the next queued
        frame calls ``wake()`` again."""
        dirty = self._dirty
        i = self._next
        end = len(dirty)
        if 0 < max_connections < end - i:
            end = i + max_connections
        while i < end:
            ob = dirty[i]
            i += 1
            ob._ob_dirty = False
            try:
                ob._write()
            except Exception as exc:  # one broken socket must not stop the flush
                if self._on_error is not None:
                    self._on_error(ob, exc)
        if i >= len(dirty):
            dirty.clear()
            self._next = 0
            self._armed = False
            return False
        if i >= 1024 and 2 * i >= len(dirty):  # forget the written prefix
            del dirty[:i]
            i = 0
        self._next = i
        return True


class Outbound:
    """Frames queued for one connection until its flush (a base class).

    The subclass attaches it to its transport and queue once
    (``_ob_attach``), keeps ``_ob_open`` true exactly while the connection
    accepts application frames, and overrides ``_ob_overflow`` to close a
    connection that a queued frame made a slow consumer.
    """

    __slots__ = ("_ob_bytes", "_ob_dirty", "_ob_first", "_ob_high", "_ob_more", "_ob_open",
                 "_ob_paused", "_ob_queue", "_ob_transport")

    def __init__(self) -> None:
        self._ob_transport: Any = None
        self._ob_queue: OutboundQueue | None = None
        self._ob_first: bytes | None = None  # the first queued frame
        self._ob_more: list[bytes] | None = None  # every queued frame, from the second on
        self._ob_bytes = 0  # bytes queued here
        self._ob_high = -1  # the transport's high-water mark in bytes; -1: unknown
        self._ob_open = False  # accepts application frames (the owner keeps it)
        self._ob_dirty = False  # listed in _ob_queue, waiting for its turn
        self._ob_paused = False  # the transport asked us to stop writing

    # -- the subclass's interface ----------------------------------------------

    def _ob_attach(self, transport: Any, queue: OutboundQueue) -> None:
        """Write to ``transport``; take turns in ``queue``.  Called once."""
        self._ob_transport = transport
        self._ob_queue = queue
        limits = getattr(transport, "get_write_buffer_limits", None)
        self._ob_high = int(limits()[1]) if limits is not None else -1

    def _ob_queue_frame(self, frame: bytes, check_limit: bool = True) -> bool:
        """Queue ``frame``.  False if, with ``check_limit`` on an open
        connection, it took queued + buffered bytes over the queue's limit:
        then everything queued was dropped and ``_ob_overflow()`` ran."""
        return self._push(frame, check_limit)

    def _ob_write_now(self) -> None:
        """Write everything queued now, in one ``transport.write`` (nothing if
        the transport is closing).  The queue's turn later writes nothing."""
        self._write()

    def _ob_drop(self) -> None:
        """Forget everything queued."""
        self._ob_first = None
        self._ob_more = None
        self._ob_bytes = 0

    def _ob_buffered(self) -> int:
        """Bytes queued here plus bytes in the transport's buffer."""
        return self._ob_bytes + self._backlog()

    def _ob_overflow(self) -> None:
        """Hook: a queued frame made this connection a slow consumer (its
        queued frames are already dropped).  The owner closes it."""

    # -- asyncio flow control (asyncio.BaseProtocol) -------------------------

    def pause_writing(self) -> None:
        """The transport's buffer went over its high-water mark."""
        self._ob_paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained to its low-water mark."""
        self._ob_paused = False

    # -- internals (C-level in the compiled twin) ------------------------------

    def _backlog(self) -> int:
        transport = self._ob_transport
        if transport is None or transport.is_closing():
            return 0
        return int(transport.get_write_buffer_size())

    def _exceeds(self, limit: int) -> bool:
        queued = self._ob_bytes
        if self._ob_high >= 0 and not self._ob_paused and queued + self._ob_high <= limit:
            return False  # not paused: the transport holds <= its high-water mark
        return queued + self._backlog() > limit

    def _push(self, frame: bytes, check_limit: bool) -> bool:
        if self._ob_first is None:
            self._ob_first = frame
        elif self._ob_more is None:
            self._ob_more = [self._ob_first, frame]
        else:
            self._ob_more.append(frame)
        self._ob_bytes += len(frame)
        queue = self._ob_queue
        assert queue is not None, "Outbound used before _ob_attach"
        if not self._ob_dirty:
            self._ob_dirty = True
            queue._add(self)
        if check_limit and self._ob_open and self._exceeds(queue.limit_bytes):
            self._ob_drop()  # undelivered frames are lost
            self._ob_overflow()
            return False
        return True

    def _write(self) -> None:
        first = self._ob_first
        if first is None:
            return
        more = self._ob_more
        data = first if more is None else b"".join(more)
        self._ob_first = None
        self._ob_more = None
        self._ob_bytes = 0
        transport = self._ob_transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)


def fanout_write(targets: Sequence[FanoutTarget], frame: bytes, limit_bytes: int) -> list[int]:
    """Write ``frame`` to every target not over ``limit_bytes``; return the others.

    See the module docstring for the full contract.
    """
    skipped: list[int] = []
    index = -1
    for target in targets:
        index += 1
        try:
            if isinstance(target, Outbound):
                ob = target
                if ob._exceeds(limit_bytes):
                    skipped.append(index)
                elif ob._ob_open:
                    ob._push(frame, True)
                continue
            if target.get_write_buffer_size() > limit_bytes:
                skipped.append(index)
                continue
            target.write(frame)
        except Exception:  # isolate one broken socket (see contract)
            skipped.append(index)
    return skipped
