"""The load generator's WebSocket client: one ``asyncio.Protocol`` per socket.

It speaks RFC 6455 with our own kernels, so the generator costs as little CPU
per frame as we know how to spend in Python:

* frames out: ``core_ext.build_frame(opcode, payload, mask_key=...)`` (one mask
  key per connection: the server must unmask every frame either way, and a
  fresh key per frame would only cost the generator ``os.urandom`` calls);
* frames in: ``core_ext.FrameParser(max_frame_bytes, require_mask=False)``;
* pings are answered with pongs, a close frame with a close frame.

Subclasses implement ``on_message(payload, now_ns)``; it is called once per
complete data message with the loop time of the read that completed it
(``time.monotonic_ns()``, which is one clock for every process on the host,
so a timestamp written by the publisher process compares with it).
"""

from __future__ import annotations

import asyncio
import os
import time

from core_ext import FrameParser, build_frame
from core_ext.defs_py import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from core_ext.defs_py import OP_CONTINUATION as OP_CONT
from gateway.upgrade_client import (
    HandshakeRejected as HandshakeRejected,  # re-exported: the generator catches it
)
from gateway.upgrade_client import UpgradeResponse
from gateway.upgrade_client import upgrade_request as upgrade_request

#: Largest frame the generator accepts from a server (resume replays can be big).
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: A response head longer than this is not a WebSocket server talking.

#: Marker that precedes the publisher's timestamp inside every timed payload:
#: ``~ts=`` + 19 decimal digits of ``time.monotonic_ns()`` + ``~``.  Receivers
#: find it with one ``bytes.find``, whatever the envelope (msgpack event,
#: JSON, or a peer's raw payload), so they never decode what they only time.
TS_MARKER = b"~ts="
TS_DIGITS = 19


def timed_text(size: int, now_ns: int | None = None) -> str:
    """A message body of exactly ``size`` ASCII characters carrying a timestamp."""
    head = f"~ts={(time.monotonic_ns() if now_ns is None else now_ns):019d}~"
    return head + "x" * max(0, size - len(head))


def read_timestamp(payload: bytes) -> int:
    """The send time in ``payload`` (ns), or -1 when it carries none."""
    i = payload.find(TS_MARKER)
    if i < 0:
        return -1
    start = i + 4
    try:
        return int(payload[start:start + TS_DIGITS])
    except ValueError:
        return -1


class WsClient(asyncio.Protocol):
    """A client WebSocket; subclasses handle messages.

    ``opened`` resolves when the 101 arrives (or fails with
    ``HandshakeRejected``/``ConnectionError``); ``closed`` when TCP is gone.
    """

    def __init__(self, request: tuple[bytes, str]) -> None:
        """``request``: the request bytes and key from ``upgrade_request``."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.request, key = request
        self._response: UpgradeResponse | None = UpgradeResponse(key)
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.mask_key = os.urandom(4)
        self._parser: FrameParser | None = None
        self._fragments: list[bytes] | None = None
        self.close_code: int | None = None
        self.messages_in = 0

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            self._handshake(data)
            return
        now = time.monotonic_ns()
        try:
            frames = parser.feed(data)
        except Exception as exc:  # a protocol error from the server: drop the socket
            self.abort(exc)
            return
        for frame in frames:
            op = frame.opcode
            if op in (OP_BINARY, OP_TEXT):
                if frame.fin:
                    self.messages_in += 1
                    self.on_message(frame.payload, now)
                else:
                    self._fragments = [frame.payload]
            elif op == OP_CONT and self._fragments is not None:
                self._fragments.append(frame.payload)
                if frame.fin:
                    payload = b"".join(self._fragments)
                    self._fragments = None
                    self.messages_in += 1
                    self.on_message(payload, now)
            elif op == OP_PING:
                self.send_frame(OP_PONG, frame.payload)
            elif op == OP_CLOSE:
                payload = frame.payload
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.send_frame(OP_CLOSE, payload[:2])
                if self.transport is not None:
                    self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed()

    # -- handshake --------------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        assert self._response is not None
        try:
            rest = self._response.feed(data)
        except HandshakeRejected as exc:
            if not self.opened.done():
                self.opened.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        if rest is None:
            return
        self._response = None
        self._parser = FrameParser(MAX_FRAME_BYTES, require_mask=False)
        if not self.opened.done():
            self.opened.set_result(None)
        self.on_open()
        if rest:
            self.data_received(rest)

    # -- sending ----------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(build_frame(opcode, payload, True, self.mask_key))

    def send(self, payload: bytes) -> None:
        """Send one binary message."""
        self.send_frame(OP_BINARY, payload)

    def close(self, code: int = 1000) -> None:
        """Send a close frame and close TCP (no waiting for the echo)."""
        if self._parser is not None:
            self.send_frame(OP_CLOSE, code.to_bytes(2, "big"))
        if self.transport is not None:
            self.transport.close()

    def abort(self, exc: BaseException | None = None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("aborted"))
        if self.transport is not None:
            self.transport.abort()

    # -- hooks ------------------------------------------------------------------

    def on_open(self) -> None:
        """The 101 arrived."""

    def on_message(self, payload: bytes, now_ns: int) -> None:
        """One complete data message."""

    def on_closed(self) -> None:
        """TCP is gone."""
