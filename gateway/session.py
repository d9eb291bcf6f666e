"""Parley sessions on top of WebSocket connections: auth at upgrade, hello,
commands in, events out.  A thin adapter over domain actions.

A connection belongs to one user in one workspace.  It receives the events
of every channel its user is a member of (membership changes apply live)
and its user's own events.  See docs/protocol.md for the wire contract.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from gateway import codec as codecs
from gateway.codes import (
    CONNECT_PATH,
    HEARTBEAT_INTERVAL_MS,
    SUBPROTOCOLS,
    CloseCode,
)
from gateway.router import Router
from gateway.transport import Accept, Reject, WsTransport
from parley import events
from parley.actions import accounts, delivery, messages
from parley.auth import Identity
from parley.errors import DomainError
from parley.services import Services
from storage.interfaces import StoreUnavailable

log = logging.getLogger("parley.gateway")

MAX_CONNECTIONS_PER_USER = 32  # sockets one user may hold on one gateway
RATE_PER_S = 50.0  # sustained commands per second per connection
RATE_BURST = 200.0  # bucket size
RATE_STRIKES_TO_CLOSE = 50  # rate-limited commands before the socket is closed
EXPIRY_SWEEP_S = 5.0  # how often expired sessions are looked for


class Session:
    """One authenticated connection (implements router.Subscriber)."""

    __slots__ = ("channels", "codec", "conn", "expires_at", "ident", "session_id", "strikes",
                 "tokens", "tokens_at", "user_id", "workspace_id")

    def __init__(self, conn: WsTransport, ident: Identity, workspace_id: int,
                 codec: type[codecs.MsgpackCodec] | type[codecs.JsonCodec]) -> None:
        self.conn = conn
        self.ident = ident
        self.user_id = ident.user_id
        self.session_id = ident.session_id
        self.workspace_id = workspace_id
        self.codec = codec
        self.channels: set[int] = set()
        self.expires_at = ident.expires_at
        self.tokens = RATE_BURST
        self.tokens_at = time.monotonic()
        self.strikes = 0

    # -- router.Subscriber -----------------------------------------------------

    def send_event_frames(self, binary_frame: bytes, text_frame: Callable[[], bytes]) -> None:
        self.conn.send(binary_frame if self.codec.binary else text_frame())

    def on_user_event(self, event: dict[str, Any]) -> None:
        app: GatewayApp = self.conn.handler  # type: ignore[assignment]
        app.user_event(self, event)

    # -- outbound helpers ------------------------------------------------------

    def send(self, obj: dict[str, Any]) -> None:
        self.conn.send_message(self.codec.encode(obj))

    def reply(self, ref: Any, data: dict[str, Any]) -> None:
        self.send({"t": "ack", "ref": ref, "d": data})

    def error(self, ref: Any, code: str, message: str, *, retryable: bool = False,
              **extra: Any) -> None:
        self.send({"t": "error", "ref": ref,
                   "d": {"code": code, "message": message, "retryable": retryable, **extra}})

    def take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(RATE_BURST, self.tokens + (now - self.tokens_at) * RATE_PER_S)
        self.tokens_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class GatewayApp:
    """The ConnectionHandler for Parley sessions."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.router = Router(
            svc.hub,
            lambda wid, cid, after: delivery.events_after(svc, wid, cid, after),
            lambda wid, cid: delivery.channel_position(svc, wid, cid))
        self.sessions: dict[WsTransport, Session] = {}
        self._per_user: dict[int, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.svc.hub.start(self.router)
        self.router.start()
        self._sweeper = asyncio.create_task(self._expire_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.router.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- upgrade ---------------------------------------------------------------

    async def on_upgrade(self, request: Any) -> Accept | Reject:
        if request.path != CONNECT_PATH:
            return Reject(404, "not_found", f"connect at {CONNECT_PATH}")
        subprotocol = next((p for p in request.subprotocols if p in SUBPROTOCOLS), None)
        if subprotocol is None:
            return Reject(400, "unsupported_subprotocol",
                          f"offer one of {', '.join(SUBPROTOCOLS)} in Sec-WebSocket-Protocol")
        origin = request.origin
        if origin is not None and not self._origin_allowed(origin):
            return Reject(403, "origin_not_allowed", "this Origin may not connect")
        try:
            ident, workspace_id = await self._authenticate(request)
        except DomainError as exc:
            return Reject(exc.status, exc.code, exc.message)
        except StoreUnavailable:
            return Reject(503, "store_unavailable", "the database is unavailable; retry")
        if self._per_user.get(ident.user_id, 0) >= MAX_CONNECTIONS_PER_USER:
            return Reject(429, "too_many_connections",
                          f"at most {MAX_CONNECTIONS_PER_USER} connections per user")
        return Accept(subprotocol=subprotocol, context=(ident, workspace_id))

    def _origin_allowed(self, origin: str) -> bool:
        allowed = self.svc.settings.origins
        if origin.rstrip("/") in allowed:
            return True
        # An allowlist entry without a port admits that scheme and host on any port.
        parts = urlsplit(origin)
        return f"{parts.scheme}://{parts.hostname}" in allowed

    async def _authenticate(self, request: Any) -> tuple[Identity, int]:
        from parley.errors import InvalidInput, Unauthenticated

        ticket = request.query.get("ticket")
        if ticket:
            return await accounts.redeem_connect_ticket(self.svc, ticket)
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing_token",
                                  "send Authorization: Bearer <token> or ?ticket=<ticket>")
        ident = await accounts.authenticate(self.svc, token.strip())
        raw = request.query.get("workspace_id", "")
        if not raw.isdigit() or not 0 < int(raw) < 2**63:
            raise InvalidInput("invalid_workspace_id", "pass ?workspace_id=<id>")
        return ident, int(raw)

    # -- lifecycle -------------------------------------------------------------

    def on_open(self, conn: WsTransport) -> None:
        ident, workspace_id = cast(tuple[Identity, int], conn.context)
        session = Session(conn, ident, workspace_id, codecs.codec_for(conn.subprotocol or ""))
        self.sessions[conn] = session
        self._per_user[ident.user_id] = self._per_user.get(ident.user_id, 0) + 1
        self._spawn(self._open(session))

    async def _open(self, session: Session) -> None:
        try:
            rows = await delivery.session_channels(self.svc, session.ident, session.workspace_id)
        except StoreUnavailable:
            session.conn.close(CloseCode.INTERNAL, "database unavailable; reconnect")
            return
        if rows is None:
            session.conn.close(CloseCode.MEMBERSHIP_ENDED, "not a member of this workspace")
            return
        await self.router.add_user(session)
        for channel, _ in rows:
            session.channels.add(channel.id)
            await self.router.add_channel(session, session.workspace_id, channel.id)
        if session.conn not in self.sessions:  # closed while we were subscribing
            await self.router.remove(session, session.channels)
            return
        session.send({"t": "hello", "d": {
            "session_id": session.session_id,
            "user_id": session.user_id,
            "workspace_id": session.workspace_id,
            "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
            "limits": {"commands_per_s": RATE_PER_S, "burst": RATE_BURST,
                       "max_message_chars": self.svc.settings.max_message_chars},
            "channels": [{"id": c.id, "kind": c.kind, "name": c.name,
                          "last_seq": self.router.channel_position(c.id) or c.last_seq,
                          "last_read_seq": read} for c, read in rows],
        }})

    def on_close(self, conn: WsTransport, code: int | None, reason: str) -> None:
        session = self.sessions.pop(conn, None)
        if session is None:
            return
        left = self._per_user.get(session.user_id, 1) - 1
        if left:
            self._per_user[session.user_id] = left
        else:
            self._per_user.pop(session.user_id, None)
        self._spawn(self.router.remove(session, session.channels))

    # -- commands --------------------------------------------------------------

    def on_message(self, conn: WsTransport, data: bytes | str) -> None:
        session = self.sessions.get(conn)
        if session is None:
            return
        try:
            op, ref, d = session.codec.decode(data)
        except codecs.BadEnvelope as exc:
            session.error(exc.ref, exc.code, exc.message)
            return
        if not session.take_token():
            session.strikes += 1
            if session.strikes >= RATE_STRIKES_TO_CLOSE:
                conn.close(CloseCode.RATE_LIMITED, '{"retry_after_ms":5000}')
            else:
                session.error(ref, "rate_limited", "too many commands", retryable=True,
                              retry_after_ms=int(1000 / RATE_PER_S) + 1)
            return
        if op == "send":
            self._spawn(self._send(session, ref, d))
        elif op == "heartbeat":
            session.send({"t": "heartbeat_ack", "ref": ref, "d": {"ts": int(time.time() * 1000)}})
        else:
            session.error(ref, "unknown_op", f"unknown command {op!r}")

    async def _send(self, session: Session, ref: Any, d: dict[str, Any]) -> None:
        try:
            channel_id = codecs.as_id(d.get("channel_id"), "channel_id")
            text = d.get("text")
            if not isinstance(text, str):
                raise codecs.BadEnvelope("invalid_field", "'text' must be a string")
            cmid = d.get("client_msg_id")
            if cmid is not None and not isinstance(cmid, str):
                raise codecs.BadEnvelope("invalid_field", "'client_msg_id' must be a string")
            msg = await messages.post_message(self.svc, session.ident, session.workspace_id,
                                              channel_id, text, cmid, member_checked=True)
        except codecs.BadEnvelope as exc:
            session.error(ref, exc.code, exc.message)
            return
        except DomainError as exc:
            session.error(ref, exc.code, exc.message, retryable=exc.retryable)
            return
        except StoreUnavailable:
            session.error(ref, "store_unavailable", "nothing was saved; retry", retryable=True)
            return
        session.reply(ref, {"id": msg.id, "channel_id": msg.channel_id, "seq": msg.seq,
                            "ts": int(msg.created_at.timestamp() * 1000),
                            "client_msg_id": msg.client_msg_id})

    # -- user events -------------------------------------------------------------

    def user_event(self, session: Session, event: dict[str, Any]) -> None:
        kind = event.get("t")
        data = event.get("d") or {}
        if kind == events.SESSION_REVOKED:
            if data.get("session_id") == session.session_id:
                session.conn.close(CloseCode.AUTH_FAILED, "session ended")
            return
        if kind == events.CHANNEL_JOINED and data.get("workspace_id") == session.workspace_id:
            cid = data.get("id")
            if isinstance(cid, int) and cid not in session.channels:
                session.channels.add(cid)
                self._spawn(self.router.add_channel(session, session.workspace_id, cid))
        elif kind == events.CHANNEL_LEFT and data.get("workspace_id") == session.workspace_id:
            cid = data.get("id")
            if isinstance(cid, int) and cid in session.channels:
                session.channels.discard(cid)
                self._spawn(self.router.remove_channel(session, cid))
        session.send(event)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            now = time.time()
            for session in list(self.sessions.values()):
                if session.expires_at <= now:
                    session.conn.close(CloseCode.AUTH_FAILED, "token expired")
