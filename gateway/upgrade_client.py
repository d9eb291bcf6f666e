"""The client side of the WebSocket upgrade (RFC 6455 4.1), sans-IO.

``upgrade_request`` builds the request bytes a browser-less client sends;
``UpgradeResponse.feed`` takes the server's bytes until the head is
complete and checks it (101, ``Sec-WebSocket-Accept`` for our key).  The
bench's asyncio generator and the load test's blocking Locust client both use
it, so no client of ours writes the upgrade by hand.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from gateway.handshake import accept_key

MAX_RESPONSE_HEAD = 64 * 1024  # bytes of response head a client buffers before giving up


class HandshakeRejected(ConnectionError):
    """The server answered the upgrade with something other than a valid 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade rejected with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


def upgrade_request(host: str, port: int, path: str, subprotocol: str | None,
                    headers: Sequence[tuple[str, str]] = ()) -> tuple[bytes, str]:
    """The upgrade request and the ``Sec-WebSocket-Key`` it carries."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


class UpgradeResponse:
    """Reads the server's answer to one upgrade request."""

    def __init__(self, key: str) -> None:
        self._expect = accept_key(key).encode()
        self._buf = b""
        self.subprotocol: str | None = None

    def feed(self, data: bytes) -> bytes | None:
        """Bytes from the server.  None while the head is incomplete; once it
        is, the bytes after it (the first frames), or ``HandshakeRejected``
        (with the body for a refusal: Parley sends a JSON error there)."""
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_RESPONSE_HEAD:
                raise HandshakeRejected(0, b"response head too large")
            return None
        head, rest = self._buf[:end], self._buf[end + 4:]
        self._buf = b""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if status != 101:
            raise HandshakeRejected(status, rest)
        if fields.get(b"sec-websocket-accept") != self._expect:
            raise HandshakeRejected(status, b"wrong Sec-WebSocket-Accept")
        proto = fields.get(b"sec-websocket-protocol")
        self.subprotocol = proto.decode("latin-1") if proto else None
        return rest
