"""A blocking WebSocket client for Locust users (gevent makes it cooperative).

It uses our ``core_ext`` framing like the ``bench`` generator, and msgpack
envelopes (``parley.msgpack.v1``).  This module never imports Locust, so it
can be tested on its own; Locust is never imported into the pytest process
(gevent's monkey-patching breaks ssl once boto3/urllib3 are loaded).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import msgpack

from core_ext import FrameParser, build_frame
from core_ext.defs_py import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG
from gateway.protocol import SUBPROTOCOL_MSGPACK as SUBPROTOCOL
from gateway.upgrade_client import HandshakeRejected, UpgradeResponse, upgrade_request

MAX_FRAME_BYTES = 16 * 1024 * 1024


class GatewayClient:
    """One socket to the Parley gateway, authenticated with a bearer token."""

    def __init__(self, gateway_url: str, token: str, workspace_id: int,
                 timeout: float = 10.0) -> None:
        parts = urlsplit(gateway_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = f"/v1/connect?workspace_id={workspace_id}"
        self.token = token
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.parser = FrameParser(MAX_FRAME_BYTES, require_mask=False)
        self.mask_key = os.urandom(4)
        self.hello: dict[str, Any] | None = None

    def connect(self) -> dict[str, Any]:
        """Upgrade and wait for ``hello``; returns it."""
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = sock
        request, key = upgrade_request(self.host, self.port, self.path, SUBPROTOCOL,
                                       [("Authorization", f"Bearer {self.token}")])
        sock.sendall(request)
        response = UpgradeResponse(key)
        rest = None
        try:
            while rest is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the upgrade")
                rest = response.feed(chunk)
        except (HandshakeRejected, ConnectionError):
            sock.close()
            self.sock = None
            raise
        events = self._feed(rest) if rest else []
        deadline = time.monotonic() + self.timeout
        while True:
            hello = next((e for e in events if e.get("t") == "hello"), None)
            if hello is not None:
                self.hello = hello
                return hello
            if time.monotonic() >= deadline:
                raise ConnectionError("no hello after the upgrade")
            events = self.receive()  # other events may come first; hello is what we wait for

    def send(self, command: dict[str, Any]) -> None:
        assert self.sock is not None, "not connected"
        self.sock.sendall(build_frame(OP_BINARY, msgpack.packb(command), True, self.mask_key))

    def receive(self) -> list[dict[str, Any]]:
        """Block for the next read; return the events it completed."""
        assert self.sock is not None, "not connected"
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        return self._feed(data)

    def _feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for frame in self.parser.feed(data):
            if frame.opcode == OP_BINARY:
                event = msgpack.unpackb(frame.payload, raw=False, strict_map_key=False)
                if isinstance(event, dict):
                    out.append(event)
            elif frame.opcode == OP_PING and self.sock is not None:
                self.sock.sendall(build_frame(OP_PONG, frame.payload, True, self.mask_key))
            elif frame.opcode == OP_CLOSE:
                code = int.from_bytes(frame.payload[:2], "big") if len(frame.payload) >= 2 else 0
                raise ConnectionError(f"closed by the gateway with code {code}")
        return out

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            sock.sendall(build_frame(OP_CLOSE, (1000).to_bytes(2, "big"), True, self.mask_key))
        except OSError:
            pass
        sock.close()
