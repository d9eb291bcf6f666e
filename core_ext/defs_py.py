"""Definitions shared by every core_ext implementation.

This module is plain Python and is never compiled (there is no ``defs_c.pxd``):
exception classes must be *the same class* whichever twin raised them, so that
``except core_ext.FrameError`` catches errors from the Python parser and from
the compiled one alike.  Constants live here so the twins cannot disagree.
"""

from __future__ import annotations

from typing import Any, Final

# --- Snowflake layout ----------------------------------------------------------
#: The Parley epoch, 2026-01-01T00:00:00Z, in ms since the Unix epoch.
PARLEY_EPOCH_MS: Final = 1_767_225_600_000
#: Bits of a snowflake: 41 for ms since the epoch (~69.7 years, until 2095),
#: then 10 for the worker id, then 12 for a per-ms sequence.  41+10+12 = 63, so
#: ids are positive signed 64-bit integers (safe in PostgreSQL ``bigint``).
TIMESTAMP_BITS: Final = 41
WORKER_BITS: Final = 10
SEQUENCE_BITS: Final = 12
MAX_WORKER_ID: Final = (1 << WORKER_BITS) - 1  # 1023
MAX_SEQUENCE: Final = (1 << SEQUENCE_BITS) - 1  # 4095: 4096 ids per ms
MAX_TIMESTAMP: Final = (1 << TIMESTAMP_BITS) - 1
#: A wall clock stepping back by at most this many ms (an NTP slew, a VM
#: migration) is waited out; a larger step raises ClockMovedBackwards.
MAX_BACKWARDS_WAIT_MS: Final = 50

# --- RFC 6455 framing ------------------------------------------------------------
OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
#: Control frames carry at most 125 payload bytes (RFC 6455 5.5).
MAX_CONTROL_PAYLOAD_BYTES: Final = 125
#: Close codes (RFC 6455 7.4.1) used by the parser.
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_MESSAGE_TOO_BIG: Final = 1009


class FrameError(Exception):
    """The peer broke RFC 6455 framing; the connection must be failed.

    ``close_code`` is the code to send in our close frame (1002 protocol
    error, 1009 too big) and ``reason`` a short UTF-8 text for it (it must fit
    in a close frame: at most 123 bytes).  ``frames`` holds the frames that
    were complete *before* the violation in the same ``feed()`` call, so the
    caller can still deliver them in order before failing the connection.
    """

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(close_code, reason)
        self.close_code = close_code
        self.reason = reason
        self.frames: list[Any] = []  # Frame objects of the raising implementation

    def __str__(self) -> str:
        return f"{self.close_code}: {self.reason}"


class ClockMovedBackwards(RuntimeError):
    """The wall clock stepped back by more than MAX_BACKWARDS_WAIT_MS.

    No id was issued: issuing one could duplicate or reorder ids already handed
    out.  ``by_ms`` is how far back the clock went.
    """

    def __init__(self, by_ms: int) -> None:
        super().__init__(f"clock moved backwards by {by_ms} ms")
        self.by_ms = by_ms
