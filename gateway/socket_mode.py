"""Socket Mode sockets: an app's WebSocket at ``LINK_PATH``, speaking
Slack's envelope protocol in JSON text frames (``parley.ports.app_links``).

Theory of operation:

* The upgrade (``admit``) redeems the single-use ticket of
  ``apps.connections.open``; no subprotocol is negotiated (Slack's clients
  offer none).  The socket then gets Slack's ``hello`` (``num_connections``,
  ``debug_info``, ``connection_info.app_id``).
* ``request`` sends an envelope ``{"envelope_id", "type", "payload",
  "accepts_response_payload", "retry_attempt", "retry_reason"}`` to one
  socket of the app, taking the app's sockets in turn, and waits for the
  app's ack ``{"envelope_id", "payload"?}``.  An envelope not acked in
  time, or whose socket closes first, fails the try: the dispatcher
  (``EventDispatcher(links=...)``) redelivers it, with ``retry_attempt``.
* Before the gateway drains, every app socket gets ``{"type":
  "disconnect", "reason": "refresh_requested"}``, on which
  ``slack_sdk``'s clients open a new connection (to another gateway).
* A socket lives about ``LINK_LIFETIME_S`` (the ``approximate_connection_time``
  its ``hello`` announces), as Slack's do: ``WARNING_S`` before the end it
  gets ``disconnect`` ``warning``, at the end ``disconnect``
  ``refresh_requested``, and ``CLOSE_GRACE_S`` later the gateway closes it
  (1000) if the app has not.  Why: the ticket is checked once, at the
  upgrade, so a bounded lifetime bounds how long an app whose install or
  token ended keeps a socket, and spreads apps' sockets over the gateways
  again as gateways come and go.  An envelope unacked at the close is
  redelivered on another socket (the dispatcher's retry).
* Frames from the app other than acks are ignored (Slack defines none);
  a binary frame or one that is not a JSON object closes the socket with
  1003/1007, as the RFC's codes say.

Invariant: an envelope's future is resolved at most once (by its ack, a
timeout, or its socket's close), and removed from ``pending`` then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.transport import Accept, Reject, WsTransport
from parley import slack_ids as ids
from parley.actions import socket_mode
from parley.errors import DomainError
from parley.model import StoreUnavailable
from parley.ports.outbound import OutboundFailed, OutboundTimeout
from parley.services import Services

log = logging.getLogger("parley.socket_mode")

CLOSE_UNSUPPORTED_DATA = 1003  # a binary frame: Socket Mode is JSON text
CLOSE_INVALID_DATA = 1007  # a text frame that is not a JSON object
MAX_ACK_PAYLOAD_BYTES = 64 * 1024  # an ack's payload (a command's reply) at most
LINK_LIFETIME_S = 3600.0  # how long an app socket lives before it is asked to reconnect
WARNING_S = 10.0  # the "warning" disconnect comes this long before the end
CLOSE_GRACE_S = 10.0  # after refresh_requested, the app has this long to reconnect


@dataclass(frozen=True, slots=True)
class LinkContext:
    """``Accept.context`` of a Socket Mode upgrade."""

    workspace_id: int
    app_id: int


@dataclass(eq=False, slots=True)
class AppSocket:
    conn: WsTransport
    workspace_id: int
    app_id: int
    opened_at: float
    pending: dict[str, asyncio.Future[dict[str, Any] | None]] = field(default_factory=dict)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)  # the lifetime's steps


class SocketModeLinks:
    """The ``AppLinks`` of one gateway process."""

    def __init__(self, svc: Services, *, lifetime_s: float = LINK_LIFETIME_S) -> None:
        self.svc = svc
        self.lifetime_s = lifetime_s  # of each socket opened from now on (tests shorten it)
        self.public_url = ""  # set by the runner once the gateway listens
        # Told when an app's first socket here opens (True) and its last
        # closes (False): the relay subscribes the app's topic meanwhile.
        self.on_held: Callable[[int, bool], None] | None = None
        self._by_app: dict[int, list[AppSocket]] = {}
        self._by_conn: dict[WsTransport, AppSocket] = {}
        self._turn: dict[int, int] = {}

    # -- upgrade and lifecycle ------------------------------------------------

    async def admit(self, request: Any) -> Accept | Reject:
        ticket = request.query.get("ticket", "")
        if not ticket:
            return Reject(401, "missing_ticket", "connect with the URL apps.connections.open gave")
        try:
            workspace_id, app_id = await socket_mode.redeem_link(self.svc, ticket)
        except DomainError as exc:
            return Reject(exc.status, exc.code, exc.message)
        except StoreUnavailable:
            return Reject(503, "store_unavailable", "the database is unavailable; retry")
        return Accept(subprotocol=None, context=LinkContext(workspace_id, app_id))

    def is_link(self, conn: WsTransport) -> bool:
        return isinstance(conn.context, LinkContext)

    def on_open(self, conn: WsTransport) -> None:
        ctx = conn.context
        assert isinstance(ctx, LinkContext)
        sock = AppSocket(conn, ctx.workspace_id, ctx.app_id, time.monotonic())
        self._by_conn[conn] = sock
        sockets = self._by_app.setdefault(ctx.app_id, [])
        sockets.append(sock)
        if len(sockets) == 1 and self.on_held is not None:
            self.on_held(ctx.app_id, True)
        life = self.lifetime_s
        self._send(conn, {"type": "hello", "num_connections": len(sockets),
                          "debug_info": {"host": "parley-gateway", "build_number": 1,
                                         "approximate_connection_time": round(life)},
                          "connection_info": {"app_id": ids.app(ctx.app_id)}})
        loop = asyncio.get_running_loop()
        warn_at = max(0.0, life - min(WARNING_S, life / 2))
        sock.timers += [
            loop.call_later(warn_at, self._disconnect, conn, "warning"),
            loop.call_later(life, self._disconnect, conn, "refresh_requested"),
            loop.call_later(life + min(CLOSE_GRACE_S, life), self._expire, conn),
        ]

    def _disconnect(self, conn: WsTransport, reason: str) -> None:
        self._send(conn, {"type": "disconnect", "reason": reason,
                          "debug_info": {"host": "parley-gateway"}})

    @staticmethod
    def _expire(conn: WsTransport) -> None:
        if conn.is_open:
            conn.close(1000, "connection lifetime ended: reconnect")

    def on_message(self, conn: WsTransport, data: bytes | str) -> None:
        sock = self._by_conn.get(conn)
        if sock is None:
            return
        if isinstance(data, bytes):
            conn.close(CLOSE_UNSUPPORTED_DATA, "Socket Mode frames are JSON text")
            return
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            conn.close(CLOSE_INVALID_DATA, "a frame must be a JSON object")
            return
        eid = msg.get("envelope_id")
        fut = sock.pending.pop(eid, None) if isinstance(eid, str) else None
        if fut is None or fut.done():
            return  # not ours, or already answered (a late ack after a timeout)
        payload = msg.get("payload")
        if isinstance(payload, dict) and len(data) <= MAX_ACK_PAYLOAD_BYTES:
            fut.set_result(payload)
        else:
            fut.set_result(None)

    def on_close(self, conn: WsTransport) -> None:
        sock = self._by_conn.pop(conn, None)
        if sock is None:
            return
        sockets = self._by_app.get(sock.app_id, [])
        if sock in sockets:
            sockets.remove(sock)
        if not sockets:
            self._by_app.pop(sock.app_id, None)
            self._turn.pop(sock.app_id, None)
            if self.on_held is not None:
                self.on_held(sock.app_id, False)
        for timer in sock.timers:
            timer.cancel()
        for fut in sock.pending.values():
            if not fut.done():
                fut.set_exception(OutboundFailed("the app's socket closed before its ack"))
        sock.pending.clear()

    def disconnect_all(self, reason: str = "refresh_requested") -> None:
        """Ask every app socket to reconnect (before a drain)."""
        for sock in list(self._by_conn.values()):
            self._disconnect(sock.conn, reason)

    # -- AppLinks ---------------------------------------------------------------

    def app_ids(self) -> Sequence[int]:
        return list(self._by_app)

    def sockets(self, app_id: int) -> int:
        return len(self._by_app.get(app_id, ()))

    async def request(self, app_id: int, kind: str, payload: dict[str, Any], *,
                      timeout_s: float, retry_attempt: int = 0,
                      retry_reason: str | None = None,
                      accepts_response_payload: bool = False) -> dict[str, Any] | None:
        sockets = self._by_app.get(app_id)
        if not sockets:
            raise OutboundFailed("the app has no open Socket Mode connection")
        turn = self._turn.get(app_id, 0) % len(sockets)
        self._turn[app_id] = turn + 1
        sock = sockets[turn]
        eid = secrets.token_hex(16)
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        sock.pending[eid] = fut
        envelope = {"envelope_id": eid, "type": kind, "payload": payload,
                    "accepts_response_payload": accepts_response_payload,
                    "retry_attempt": retry_attempt, "retry_reason": retry_reason or ""}
        if not self._send(sock.conn, envelope):
            sock.pending.pop(eid, None)
            raise OutboundFailed("the app's socket is not writable")
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise OutboundTimeout(f"no ack within {timeout_s} s") from None
        finally:
            sock.pending.pop(eid, None)

    @staticmethod
    def _send(conn: WsTransport, msg: dict[str, Any]) -> bool:
        if not conn.is_open:
            return False
        return conn.send_message(json.dumps(msg, separators=(",", ":")))
