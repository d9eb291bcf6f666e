"""A server-side WebSocket connection, sans-IO (RFC 6455 sections 5-7).

I/O surface: ``receive_data(bytes) -> list[Event]`` in, and bytes out from
``data_to_send()`` (automatic replies), ``close()`` and the pure frame
builders ``send_text`` / ``send_binary`` / ``send_ping``.  No sockets, no
clocks, no asyncio: the adapter (gateway.transport) feeds, drains, dispatches.

Rules:

1. Framing errors come from core_ext's FrameParser (1002, or 1009 for a frame
   above ``min(max_frame_bytes, max_message_bytes)``: no frame that could not
   fit in a message is ever buffered).
2. Fragmentation: a continuation frame with no message in progress, or a new
   text/binary frame while one is in progress -> 1002.  Control frames may
   be interleaved between fragments.  A message whose payload exceeds
   ``max_message_bytes``, or that arrives in more than ``max_fragments``
   frames -> 1009.
3. Text is strict UTF-8.  Fragmented text is decoded incrementally, so
   invalid UTF-8 fails the connection (1007) at the fragment where it
   becomes invalid, not at the end of the message.  Validation is per
   frame: bytes of one frame are checked once the whole frame has arrived.
4. Close frames: a 1-byte payload or a code not allowed by RFC 6455 7.4
   (``VALID_CLOSE_CODES``) -> 1002; a reason that is not UTF-8 -> 1007.
5. Automatic replies are queued in order and drained by ``data_to_send()``:
   a pong for each ping while OPEN, the echo of the peer's close, and our
   close frame when we fail the connection.
6. Only OPEN produces data events (TextMessage, BinaryMessage) and ping/pong
   events.  Once a close frame was sent or received, data frames are
   discarded; CLOSED ignores all input.
7. Events are returned in stream order.  A failure is the last event of the
   call that detected it; frames complete before it are still delivered.
8. One fast path, for the commonest read of all (one complete, small, final
   text or binary frame, nothing buffered, no message in progress, OPEN):
   ``receive_data`` checks the header bytes itself and unmasks the payload
   without the parser.  The checks are the parser's for that shape: FIN set,
   RSV bits clear, opcode 1 or 2 (the whole first byte is 0x81 or 0x82), the
   mask bit set, and a 7-bit length (minimal by definition, and within every
   frame cap, which is never below 125) equal to what follows the mask key.
   Anything else, including text that is not UTF-8, takes the general path,
   so the fast path can only ever return what the general path would.

State transitions (``state``)::

    OPEN    --peer close--> CLOSED   (our echo is queued)
    OPEN    --close()-----> CLOSING  (close() returned our close frame)
    CLOSING --peer close--> CLOSED
    OPEN|CLOSING --violation--> CLOSED (our close frame queued if still OPEN)
"""

from __future__ import annotations

import codecs
import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import core_ext
from core_ext import FrameError, Kernels
from core_ext.defs_py import (  # the one definition of the opcodes
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
)

__all__ = [
    "VALID_CLOSE_CODES",
    "BinaryMessage",
    "CloseReceived",
    "ConnectionState",
    "Event",
    "PingReceived",
    "PongReceived",
    "ProtocolFailure",
    "ServerConnection",
    "TextMessage",
    "WsLimits",
    "binary_frame",
    "close_frame",
    "text_frame",
]

_MiB: Final = 1024 * 1024

CLOSE_NORMAL: Final = 1000
CLOSE_NO_STATUS: Final = 1005  # never sent: "the close frame had no code"
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_INVALID_DATA: Final = 1007
CLOSE_MESSAGE_TOO_BIG: Final = 1009
#: Close codes we accept from a peer and allow ourselves to send: those RFC
#: 6455 7.4.1 defines for use in a close frame, plus 3000-4999 (libraries and
#: applications; Parley's own are 4xxx).  1012-1014 were registered with IANA
#: after RFC 6455; Autobahn (cases 7.9.6-7.9.8) still requires failing on
#: them, so they are excluded.
VALID_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, *range(3000, 5000)}
)
_MAX_CONTROL_PAYLOAD: Final = 125
_MAX_CLOSE_REASON_BYTES: Final = _MAX_CONTROL_PAYLOAD - 2
# Rule 8, the one-frame fast path: a masked frame with a 7-bit length, i.e.
# 2 header bytes, the 4-byte mask key (bytes 2-5, the 6 and 2:6 in
# receive_data) and 0..125 payload bytes (125: the largest 7-bit length;
# every frame cap is >= 125).
_FAST_MIN_BYTES: Final = 6
_FAST_MAX_BYTES: Final = 6 + 125
#: Second byte of such a frame of ``n`` bytes: the mask bit | (n - 6).
_FAST_B1_BASE: Final = 0x80 - 6
_FIN_TEXT: Final = 0x80 | OP_TEXT  # first byte: FIN, no RSV bits, the opcode
_FIN_BINARY: Final = 0x80 | OP_BINARY


class ConnectionState(enum.Enum):
    """Where a connection is in the closing handshake (RFC 6455 7.1)."""

    #: Open: messages flow in both directions.
    OPEN = "open"
    #: We sent a close frame and wait for the peer's; incoming data is dropped
    #: and nothing more may be sent.
    CLOSING = "closing"
    #: The closing handshake completed or the connection failed; the adapter
    #: must close the TCP connection after sending ``data_to_send()``.
    CLOSED = "closed"


# The members as module globals: in Python 3.11 ``ConnectionState.OPEN`` is a
# lookup through the enum's metaclass (~10x a global read), and these are
# compared once or more per frame.
_OPEN: Final = ConnectionState.OPEN
_CLOSING: Final = ConnectionState.CLOSING
_CLOSED: Final = ConnectionState.CLOSED


@dataclass(frozen=True, slots=True)
class WsLimits:
    """Per-connection resource limits (exceeding one fails the connection: 1009)."""

    #: Largest payload of one frame, in bytes (checked from the frame header).
    max_frame_bytes: int = 1 * _MiB
    #: Largest payload of one message (all its fragments together), in bytes.
    max_message_bytes: int = 1 * _MiB
    #: Most frames one fragmented message may be split into.
    max_fragments: int = 64

    def __post_init__(self) -> None:
        if self.max_frame_bytes < _MAX_CONTROL_PAYLOAD:
            raise ValueError("max_frame_bytes must allow control frames (>= 125)")
        if self.max_message_bytes < 0 or self.max_fragments < 1:
            raise ValueError("max_message_bytes must be >= 0 and max_fragments >= 1")


@dataclass(frozen=True, slots=True, init=False)
class TextMessage:
    """A complete text message (valid UTF-8, reassembled)."""

    text: str

    def __init__(self, text: str) -> None:
        # A frozen dataclass's generated __init__ goes through
        # object.__setattr__; the slot descriptor is cheaper, and this runs
        # once per message received (docs/benchmarks.md, "Presence").
        _set_text(self, text)


@dataclass(frozen=True, slots=True, init=False)
class BinaryMessage:
    """A complete binary message (reassembled)."""

    data: bytes

    def __init__(self, data: bytes) -> None:
        _set_data(self, data)  # see TextMessage.__init__


_set_text: Final = TextMessage.__dict__["text"].__set__
_set_data: Final = BinaryMessage.__dict__["data"].__set__
#: With a setter above: an event built without running a Python __init__.
_new_event: Final = object.__new__


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged; the pong is already queued in ``data_to_send()``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer sent a pong (solicited or not)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's close frame.  ``code`` is None when it carried no code."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The peer broke the protocol or a limit; the connection is CLOSED.

    Our close frame with ``code`` is queued if no close frame was sent yet.
    """

    code: int
    reason: str


Event = TextMessage | BinaryMessage | PingReceived | PongReceived | CloseReceived | ProtocolFailure


def _encode_reason(reason: str) -> bytes:
    """UTF-8 reason cut to what fits in a close frame, on a character boundary."""
    raw = reason.encode("utf-8")
    if len(raw) <= _MAX_CLOSE_REASON_BYTES:
        return raw
    return raw[:_MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A server close frame; ``code=None`` sends an empty payload.

    ValueError for a code outside VALID_CLOSE_CODES.  ``reason`` is truncated
    to 123 UTF-8 bytes.
    """
    if code is None:
        return core_ext.build_frame(OP_CLOSE, b"")
    if code not in VALID_CLOSE_CODES:
        raise ValueError(f"close code {code} may not be sent")
    return core_ext.build_frame(OP_CLOSE, code.to_bytes(2, "big") + _encode_reason(reason))


def text_frame(text: str) -> bytes:
    """An unfragmented server text frame (for pre-building a fan-out)."""
    return core_ext.build_frame(OP_TEXT, text.encode("utf-8"))


def binary_frame(data: bytes) -> bytes:
    """An unfragmented server binary frame (for pre-building a fan-out)."""
    return core_ext.build_frame(OP_BINARY, data)


class ServerConnection:
    """The server side of one WebSocket connection, after the handshake.

    ``kernels`` selects the core_ext implementation (default: the one
    core_ext selected at import).
    """

    __slots__ = (
        "_build",
        "_close_code",
        "_close_reason",
        "_decoder",
        "_fragments",
        "_limits",
        "_mask_slice",
        "_message_bytes",
        "_message_opcode",
        "_outbound",
        "_parser",
        "_parts",
        "_state",
    )

    def __init__(self, limits: WsLimits | None = None, *, kernels: Kernels | None = None) -> None:
        self._limits = limits if limits is not None else WsLimits()
        parser_cls = kernels.FrameParser if kernels is not None else core_ext.FrameParser
        self._build: Callable[[int, bytes], bytes] = (
            kernels.build_frame if kernels is not None else core_ext.build_frame
        )
        self._mask_slice: Callable[[bytes, int, int, bytes], bytes] = (
            kernels.mask_slice if kernels is not None else core_ext.mask_slice
        )
        # No frame larger than a whole message is ever buffered.
        frame_cap = min(self._limits.max_frame_bytes, self._limits.max_message_bytes)
        self._parser = parser_cls(max(frame_cap, _MAX_CONTROL_PAYLOAD), True)
        self._state = _OPEN
        # Fragmented message in progress: opcode (0: none), parts, sizes.
        self._message_opcode = 0
        self._parts: list[Any] | None = None  # str parts for text, bytes for binary
        self._message_bytes = 0
        self._fragments = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self._outbound: list[bytes] | None = None  # queued automatic replies
        self._close_code: int | None = None
        self._close_reason = ""

    # --- state -------------------------------------------------------------
    if TYPE_CHECKING:
        @property
        def state(self) -> ConnectionState:
            """OPEN, CLOSING or CLOSED (see ConnectionState)."""
    else:
        # The adapter reads it after every read: a C getter spares a Python frame.
        state = property(operator.attrgetter("_state"),
                         doc="OPEN, CLOSING or CLOSED (see ConnectionState).")

    @property
    def close_code(self) -> int | None:
        """The code that ended the connection: the first close frame's code.

        The peer's code when the peer closed first (1005 if its frame had
        none), ours when we closed or failed first, None while OPEN.
        """
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The reason that went with ``close_code``."""
        return self._close_reason

    def _is_closed(self) -> bool:
        # A method, not an inline check: mypy would keep the narrowing of
        # _state across the _handle() calls that change it.
        return self._state is _CLOSED

    # --- input --------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return the resulting events in order."""
        state = self._state
        if state is _OPEN:
            # Rule 8: one whole small data frame (a command) is the usual read.
            n = len(data)
            if (_FAST_MIN_BYTES <= n <= _FAST_MAX_BYTES and data[1] == _FAST_B1_BASE + n
                    and not self._message_opcode and type(data) is bytes
                    and not self._parser.buffered_bytes):
                b0 = data[0]
                if b0 == _FIN_BINARY:
                    event: Event = _new_event(BinaryMessage)  # BinaryMessage(payload),
                    _set_data(event, self._mask_slice(data, 6, n, data[2:6]))  # no frame
                    return [event]
                if b0 == _FIN_TEXT:
                    try:
                        text = self._mask_slice(data, 6, n, data[2:6]).decode("utf-8")
                    except UnicodeDecodeError:
                        pass  # the general path fails the connection (1007)
                    else:
                        event = _new_event(TextMessage)
                        _set_text(event, text)
                        return [event]
        elif state is _CLOSED:
            return []
        events: list[Event] = []
        try:
            frames = self._parser.feed(data)
        except FrameError as exc:
            for frame in exc.frames:
                self._handle(frame, events)
                if self._is_closed():
                    return events
            self._fail(exc.close_code, exc.reason, events)
            return events
        for frame in frames:
            self._handle(frame, events)
            if self._is_closed():
                break
        return events

    def _handle(self, frame: core_ext.Frame, events: list[Event]) -> None:
        opcode = frame.opcode
        payload = frame.payload
        if opcode >= OP_CLOSE:
            if opcode == OP_CLOSE:
                self._on_close_frame(payload, events)
            elif self._state is _OPEN:
                if opcode == OP_PING:
                    self._queue(self._build(OP_PONG, payload))
                    events.append(PingReceived(payload))
                else:
                    events.append(PongReceived(payload))
            return
        if self._state is not _OPEN:
            return  # rule 6: data after a close frame is discarded
        if opcode != OP_CONTINUATION:
            if self._message_opcode:
                self._fail(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one", events)
                return
            if frame.fin:  # the common case: a whole message in one frame
                if opcode == OP_TEXT:
                    try:
                        events.append(TextMessage(payload.decode("utf-8")))
                    except UnicodeDecodeError:
                        self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message", events)
                else:
                    events.append(BinaryMessage(payload))
                return
            self._message_opcode = opcode
            self._parts = []
            self._message_bytes = 0
            self._fragments = 0
            if opcode == OP_TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        elif not self._message_opcode:
            self._fail(CLOSE_PROTOCOL_ERROR, "continuation frame without a message", events)
            return
        self._on_fragment(payload, frame.fin, events)

    def _on_fragment(self, payload: bytes, fin: bool, events: list[Event]) -> None:
        self._fragments += 1
        self._message_bytes += len(payload)
        if self._fragments > self._limits.max_fragments:
            self._fail(CLOSE_MESSAGE_TOO_BIG, "too many fragments", events)
            return
        if self._message_bytes > self._limits.max_message_bytes:
            self._fail(CLOSE_MESSAGE_TOO_BIG, "message too big", events)
            return
        parts = self._parts
        assert parts is not None
        if self._decoder is not None:
            try:
                text = self._decoder.decode(payload, fin)
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message", events)
                return
            parts.append(text)
        else:
            parts.append(payload)
        if not fin:
            return
        if self._message_opcode == OP_TEXT:
            events.append(TextMessage("".join(parts)))
        else:
            events.append(BinaryMessage(b"".join(parts)))
        self._reset_message()

    def _reset_message(self) -> None:
        self._message_opcode = 0
        self._parts = None
        self._decoder = None
        self._message_bytes = 0
        self._fragments = 0

    def _on_close_frame(self, payload: bytes, events: list[Event]) -> None:
        code: int | None = None
        reason = ""
        if len(payload) == 1:
            self._fail(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload", events)
            return
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if code not in VALID_CLOSE_CODES:
                self._fail(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}", events)
                return
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in the close reason", events)
                return
        if self._state is _OPEN:
            # RFC 6455 5.5.1: answer with a close frame, echoing the code.
            self._queue(self._close_bytes(code))
            self._close_code = code if code is not None else CLOSE_NO_STATUS
            self._close_reason = reason
        self._state = _CLOSED
        self._reset_message()
        events.append(CloseReceived(code, reason))

    def _close_bytes(self, code: int | None, reason: str = "") -> bytes:
        if code is None:
            return self._build(OP_CLOSE, b"")
        return self._build(OP_CLOSE, code.to_bytes(2, "big") + _encode_reason(reason))

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        if self._state is _OPEN:
            self._queue(self._close_bytes(code, reason))
            self._close_code = code
            self._close_reason = reason
        self._state = _CLOSED
        self._reset_message()
        events.append(ProtocolFailure(code, reason))

    def _queue(self, data: bytes) -> None:
        if self._outbound is None:
            self._outbound = [data]
        else:
            self._outbound.append(data)

    # --- output -------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Drain the queued automatic replies (pongs, close frames), in order."""
        outbound = self._outbound
        if outbound is None:
            return b""
        self._outbound = None
        return outbound[0] if len(outbound) == 1 else b"".join(outbound)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
        """Start the closing handshake; return every byte to send now.

        That is the queued automatic replies followed by our close frame.
        ``reason`` is truncated to 123 UTF-8 bytes; ValueError for a code
        outside VALID_CLOSE_CODES.  Returns only the queued replies (usually
        ``b""``) when the connection is not OPEN.
        """
        if code not in VALID_CLOSE_CODES:
            raise ValueError(f"close code {code} may not be sent")
        if self._state is not _OPEN:
            return self.data_to_send()
        self._queue(self._close_bytes(code, reason))
        self._state = _CLOSING
        self._close_code = code
        self._close_reason = reason
        self._reset_message()
        return self.data_to_send()

    def send_text(self, text: str) -> bytes:
        """A text frame for ``text`` (pure: nothing is queued, state is not checked)."""
        return self._build(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> bytes:
        """A binary frame for ``data`` (pure: nothing is queued, state is not checked)."""
        return self._build(OP_BINARY, data)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """A ping frame (pure); ValueError for a payload over 125 bytes."""
        if len(payload) > _MAX_CONTROL_PAYLOAD:
            raise ValueError("ping payload must be at most 125 bytes")
        return self._build(OP_PING, payload)
