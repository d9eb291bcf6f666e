# cython: annotation_typing=False
# (Types for the compiled twin come from the .pxd only; annotations are for mypy.)
"""RFC 6455 frame parser and builder (sans-IO).

This file is plain Python *and* the source of the compiled ``frames_c``:
setup.py copies it to ``frames_c.py`` and Cython compiles that with the C types
declared in ``frames_c.pxd`` (the aiohttp ``reader_py``/``reader_c`` way), so
the two implementations can never drift.  Keep it valid, typed Python; put C
types in the .pxd, never in here.

Rules of the parser (RFC 6455 section 5.2; we negotiate no extensions):

1. Any RSV bit set, an unknown opcode, a control frame (opcode >= 8) with
   FIN=0 or a payload > 125 bytes, an unmasked frame when ``require_mask``, a
   masked frame when not ``require_mask`` (a server never masks), a length
   not in its minimal encoding, or a 64-bit length with the MSB set, each
   raise ``FrameError(1002, ...)``.
2. A payload longer than ``max_frame_bytes`` raises ``FrameError(1009, ...)``
   as soon as the header is complete, before any of the payload is buffered.
3. Every check needs only the bytes of the header, so errors are raised as
   early as the stream allows (Autobahn's fail-fast expectations).
4. Chunking never changes a parse: the frames returned by a sequence of
   ``feed()`` calls depend only on the concatenation of their inputs.
5. Frames complete before a violation in the same ``feed()`` call are carried
   in ``FrameError.frames``; after an error the parser is dead and every
   later ``feed()`` raises the same error.
6. Buffering is linear: an incomplete frame is kept as a list of chunks plus
   ``_need``, the byte count that must be buffered before the parse can make
   progress.  Chunks are joined only once that count is reached, so a large
   frame arriving in many reads is copied a bounded number of times, and an
   idle parser holds no buffer at all.

Frame semantics: ``fin`` and ``opcode`` as sent, ``payload`` already unmasked.
Reassembling fragmented messages is the caller's job (gateway.websocket).
"""

from __future__ import annotations

from core_ext._mask_py import mask, mask_slice
from core_ext.defs_py import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    MAX_CONTROL_PAYLOAD_BYTES,
    FrameError,
)

# Bit i set <=> opcode i is defined by RFC 6455: 0x0-0x2 data, 0x8-0xA control.
_KNOWN_OPCODE_BITS = 0b0111_0000_0111
_MAX_CONTROL_PAYLOAD = MAX_CONTROL_PAYLOAD_BYTES  # a C int in the compiled twin
_MASK_KEY_BYTES = 4
_LEN16_MIN = 126  # smallest length that must use the 16-bit form
_LEN64_MIN = 65536  # smallest length that must use the 64-bit form


class Frame:
    """One complete WebSocket frame; ``payload`` is unmasked.  Immutable."""

    __slots__ = ("fin", "opcode", "payload")

    fin: bool
    opcode: int
    payload: bytes

    def __init__(self, fin: bool, opcode: int, payload: bytes) -> None:
        self.fin = fin
        self.opcode = opcode
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        # Compares by value, and across the Python and compiled twins.
        fin = getattr(other, "fin", None)
        return (
            fin is not None
            and bool(fin) == bool(self.fin)
            and getattr(other, "opcode", None) == self.opcode
            and getattr(other, "payload", None) == self.payload
        )

    def __hash__(self) -> int:
        return hash((bool(self.fin), self.opcode, self.payload))

    def __repr__(self) -> str:
        return f"Frame(fin={bool(self.fin)}, opcode={self.opcode:#x}, payload={self.payload!r})"


class FrameParser:
    """Incremental parser of a client-to-server (or, unmasked, server) stream."""

    __slots__ = ("_chunks", "_error", "_max_frame_bytes", "_need", "_pending", "_require_mask")

    def __init__(self, max_frame_bytes: int, require_mask: bool = True) -> None:
        if max_frame_bytes < 0:
            raise ValueError("max_frame_bytes must be >= 0")
        self._max_frame_bytes = max_frame_bytes
        self._require_mask = require_mask
        # Unparsed bytes, oldest first; None when nothing is buffered.
        self._chunks: list[bytes] | None = None
        self._pending = 0  # total length of _chunks
        self._need = 0  # _pending must reach this before a parse can progress
        self._error: FrameError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as frames."""
        return self._pending

    def feed(self, data: bytes) -> list[Frame]:
        """Parse ``data`` (appended to earlier input); return the complete frames.

        Raises FrameError on a protocol violation (see the module rules).
        """
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            data = bytes(data)
        if self._chunks is not None:
            self._chunks.append(data)
            self._pending += len(data)
            if self._pending < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks = None
            self._pending = 0
        frames: list[Frame] = []
        try:
            pos = self._parse(data, frames)
        except FrameError as exc:
            exc.frames = list(frames)
            self._error = exc
            raise
        if pos < len(data):
            self._chunks = [data[pos:] if pos else data]
            self._pending = len(data) - pos
        return frames

    def _parse(self, data: bytes, frames: list[Frame]) -> int:
        """Append the complete frames of ``data`` to ``frames``; return the end offset.

        Sets ``_need`` for the incomplete frame left after that offset.
        """
        n = len(data)
        pos = 0
        while True:
            avail = n - pos
            if avail < 2:
                self._need = 2
                return pos
            b0 = data[pos]
            b1 = data[pos + 1]
            opcode = b0 & 0x0F
            masked = (b1 & 0x80) != 0
            length = b1 & 0x7F
            if b0 & 0x70:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "RSV bits set without an extension")
            if not (_KNOWN_OPCODE_BITS >> opcode) & 1:
                raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            if opcode >= 0x8:
                if not b0 & 0x80:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
                if length > _MAX_CONTROL_PAYLOAD:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "control frame payload > 125 bytes")
            if masked != self._require_mask:
                raise FrameError(
                    CLOSE_PROTOCOL_ERROR,
                    "unmasked client frame" if self._require_mask else "masked server frame",
                )
            header = 2
            if length == 126:
                header = 4
            elif length == 127:
                header = 10
            if masked:
                header += _MASK_KEY_BYTES
            if avail < header:
                self._need = header
                return pos
            if length == 126:
                length = (data[pos + 2] << 8) | data[pos + 3]
                if length < _LEN16_MIN:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "non-minimal 16-bit length")
            elif length == 127:
                if data[pos + 2] & 0x80:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "64-bit length with MSB set")
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length < _LEN64_MIN:
                    raise FrameError(CLOSE_PROTOCOL_ERROR, "non-minimal 64-bit length")
            if length > self._max_frame_bytes:
                raise FrameError(
                    CLOSE_MESSAGE_TOO_BIG,
                    f"frame of {length} bytes exceeds {self._max_frame_bytes}",
                )
            if avail - header < length:
                self._need = header + length
                return pos
            start = pos + header
            end = start + length
            if masked:
                payload = mask_slice(data, start, end, data[start - 4 : start])
            elif start == 0 and end == n:
                payload = data  # the whole chunk is this payload: no copy
            else:
                payload = data[start:end]
            frame = Frame.__new__(Frame)
            frame.fin = (b0 & 0x80) != 0
            frame.opcode = opcode
            frame.payload = payload
            frames.append(frame)
            pos = end


def build_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    fin: bool = True,
    mask_key: bytes | None = None,
) -> bytes:
    """Serialize one frame.

    Servers send unmasked frames (``mask_key=None``); clients and load
    generators pass a 4-byte ``mask_key``.  ValueError for an unknown opcode,
    a control frame that is fragmented or has more than 125 payload bytes, or
    a mask key that is not 4 bytes.  No RSV bits are ever set.
    """
    if not 0 <= opcode <= 0xF or not (_KNOWN_OPCODE_BITS >> opcode) & 1:
        raise ValueError(f"unknown opcode {opcode:#x}")
    length = len(payload)
    if opcode >= 0x8 and (not fin or length > _MAX_CONTROL_PAYLOAD):
        raise ValueError("control frames must be final with at most 125 payload bytes")
    b0 = (0x80 if fin else 0) | opcode
    b1 = 0x80 if mask_key is not None else 0
    if length < _LEN16_MIN:
        header = bytes((b0, b1 | length))
    elif length < _LEN64_MIN:
        header = bytes((b0, b1 | 126, length >> 8, length & 0xFF))
    else:
        header = bytes((b0, b1 | 127)) + length.to_bytes(8, "big")
    if mask_key is None:
        return header + payload
    if len(mask_key) != _MASK_KEY_BYTES:
        raise ValueError("mask key must be exactly 4 bytes")
    return header + mask_key + mask(payload, mask_key)
