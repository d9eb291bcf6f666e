"""Parley sessions on top of WebSocket connections: auth at upgrade, hello,
commands in, events out.  A thin adapter over domain actions.

A connection belongs to one user in one workspace.  It receives the events
of every channel its user is a member of (membership changes apply live)
and its user's own events.  See docs/protocol.md for the wire contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

from core_ext import build_frame
from core_ext.defs_py import OP_BINARY, OP_TEXT
from gateway import codec as codecs
from gateway import resume
from gateway.codes import (
    CONNECT_PATH,
    HEARTBEAT_INTERVAL_MS,
    SUBPROTOCOLS,
    CloseCode,
)
from gateway.presence_service import PresenceService
from gateway.resume import Hold, Phase, Reason
from gateway.router import Router
from gateway.transport import Accept, Reject, WsTransport
from parley import events
from parley.actions import accounts, delivery, files, messages
from parley.actions import presence as presence_reads
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import DomainError
from parley.model import Message, StoreUnavailable
from parley.ratelimit import TokenBucket
from parley.services import Services

log = logging.getLogger("parley.gateway")

# Connection and command limits come from Settings (ws_max_connections_per_user,
# ws_commands_per_s, ws_command_burst); this one is fixed:
RATE_STRIKES_TO_CLOSE = 50  # rate-limited commands in a row before the socket is closed
EXPIRY_SWEEP_S = 5.0  # how often expired sessions are looked for
# With ?resume=1, how long after hello live events wait for the resume
# command; then every channel gets channel.resync_required (reason no_resume).
RESUME_WAIT_S = 10.0

Frames = tuple[bytes, Callable[[], bytes]]  # (binary frame, lazy text frame) of one event


class Session:
    """One authenticated connection (implements router.Subscriber)."""

    __slots__ = ("app", "binary", "bucket", "channels", "codec", "conn", "early", "early_events",
                 "expires_at", "floors", "held", "ident", "known", "phase", "resume_timer",
                 "resuming", "session_id", "strikes", "user_id", "workspace_id")

    def __init__(self, app: GatewayApp, conn: WsTransport, ident: Identity, workspace_id: int,
                 codec: type[codecs.MsgpackCodec] | type[codecs.JsonCodec]) -> None:
        self.app = app
        self.conn = conn
        self.ident = ident
        self.user_id = ident.user_id
        self.session_id = ident.session_id
        self.workspace_id = workspace_id
        self.codec = codec
        self.binary = codec.binary
        self.channels: set[int] = set()
        self.known = True  # ``channels`` holds the user's channels (False while reading them)
        # Until the connection is live (gateway/resume.py): its phase, the
        # channel events waiting (None once live), the commands and user
        # events that arrived before hello (None once it is sent).  A Session
        # is built live; ``begin_opening`` starts a new connection's opening.
        self.phase = Phase.LIVE
        self.resuming = False  # connected with ?resume=1
        self.resume_timer: asyncio.TimerHandle | None = None
        self.held: Hold[Frames] | None = None
        self.early: list[bytes | str] | None = None
        self.early_events: list[dict[str, Any]] | None = None
        # After a replay that ran ahead of this gateway's live stream: per
        # channel, the seq already sent; live events up to it are dropped.
        self.floors: dict[int, int] | None = None
        self.expires_at = ident.expires_at
        settings = app.svc.settings
        # The connection's command budget (parley.ratelimit, shared with REST).
        self.bucket = TokenBucket(settings.ws_commands_per_s, settings.ws_command_burst,
                                  time.monotonic())
        self.strikes = 0

    def begin_opening(self, resuming: bool) -> None:
        """OPENING: hold everything until hello (``GatewayApp._open``)."""
        self.phase = Phase.OPENING
        self.resuming = resuming
        self.known = False
        self.held = Hold()
        self.early = []
        self.early_events = []

    # -- router.Subscriber -----------------------------------------------------

    @property
    def holding(self) -> bool:
        return self.held is not None or self.floors is not None

    def hold(self, channel_id: int, seq: int | None, binary_frame: bytes,
             text_frame: Callable[[], bytes]) -> None:
        held = self.held
        if held is None:
            floors = self.floors
            if floors is not None and seq is not None and channel_id in floors:
                if seq <= floors[channel_id]:
                    return  # already sent by the replay
                del floors[channel_id]
                if not floors:
                    self.floors = None
                    self.app.router.holding_changed(self, {channel_id})
            self.send_frame(binary_frame, text_frame)
            return
        if not held.overflowed and not held.add(channel_id, seq, (binary_frame, text_frame)):
            self.conn.close(CloseCode.RESYNC_REQUIRED,
                            "too much happened before the connection went live; resume again")

    def send_frame(self, binary_frame: bytes, text_frame: Callable[[], bytes]) -> None:
        self.conn.send(binary_frame if self.binary else text_frame())

    def on_user_event(self, event: dict[str, Any]) -> None:
        self.app.user_event(self, event)

    # -- outbound helpers ------------------------------------------------------

    def send(self, obj: dict[str, Any]) -> None:
        try:
            # A JSON frame's UTF-8 encoding happens in send_message, before
            # anything is queued, so a failure there leaves nothing half-sent.
            self.conn.send_message(self.codec.encode(obj))
        except (ValueError, TypeError, OverflowError):  # UnicodeEncodeError is a ValueError
            # Client data is checked on the way in (codec.echoable_ref, the
            # codecs' strict UTF-8, validate.py), so this is a server bug: say
            # so, with a frame that always encodes, rather than let the
            # transport close the socket with 1011.
            log.exception("a %r frame could not be encoded", obj.get("t"))
            self.conn.send_message(self.codec.encode(_UNENCODABLE))

    def reply(self, ref: Any, data: dict[str, Any]) -> None:
        self.send({"t": "ack", "ref": ref, "d": data})

    def error(self, ref: Any, code: str, message: str, *, retryable: bool = False,
              **extra: Any) -> None:
        self.send({"t": "error", "ref": ref,
                   "d": {"code": code, "message": message, "retryable": retryable, **extra}})



_UNENCODABLE: dict[str, Any] = {"t": "error", "ref": None, "d": {
    "code": "internal_error", "message": "the server could not encode a reply",
    "retryable": False}}


def _frames(payload: bytes) -> tuple[bytes, Callable[[], bytes]]:
    """The binary frame of a stored event and a lazy JSON frame for it."""
    binary = build_frame(OP_BINARY, payload)
    return binary, lambda: build_frame(OP_TEXT, events.to_json(events.decode(payload)).encode())


class _SendFields(NamedTuple):  # a tuple: built once per send, cheaper than a dataclass
    channel_id: int
    text: str
    cmid: str | None
    root_id: int | None
    also: bool
    file_ids: list[int]


def _send_fields(d: dict[str, Any]) -> _SendFields:
    """The ``send`` command's fields, type-checked (``BadEnvelope`` if not)."""
    channel_id = codecs.as_id(d.get("channel_id"), "channel_id")
    text = d.get("text")
    if not isinstance(text, str):
        raise codecs.BadEnvelope("invalid_field", "'text' must be a string")
    cmid = d.get("client_msg_id")
    if cmid is not None and not isinstance(cmid, str):
        raise codecs.BadEnvelope("invalid_field", "'client_msg_id' must be a string")
    root = d.get("thread_root_id")
    root_id = None if root is None else codecs.as_id(root, "thread_root_id")
    also = d.get("also_in_channel", False)
    if not isinstance(also, bool):
        raise codecs.BadEnvelope("invalid_field", "'also_in_channel' must be a boolean")
    raw_files = d.get("file_ids", [])
    if not isinstance(raw_files, list) or len(raw_files) > files.FILES_PER_MESSAGE:
        raise codecs.BadEnvelope("invalid_field", "'file_ids' is a list of at most "
                                 f"{files.FILES_PER_MESSAGE} ids")
    file_ids = [codecs.as_id(f, "file_ids") for f in raw_files]
    return _SendFields(channel_id, text, cmid, root_id, also, file_ids)


def _ack_data(msg: Message) -> dict[str, Any]:
    return {"id": msg.id, "channel_id": msg.channel_id, "seq": msg.seq,
            "ts": int(msg.created_at.timestamp() * 1000), "client_msg_id": msg.client_msg_id}


class GatewayApp:
    """The ConnectionHandler for Parley sessions."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.presence = PresenceService(
            svc.presence, svc.hub,
            channel_size=lambda wid, cid: presence_reads.channel_size(svc, wid, cid),
            visible=lambda wid, ids: presence_reads.watchable(svc, wid, ids))
        self.router = Router(
            svc.hub,
            lambda wid, cid, after: delivery.events_after(svc, wid, cid, after),
            lambda wid, cid: delivery.channel_position(svc, wid, cid),
            extra={"p": self.presence.watch})
        self.sessions: dict[WsTransport, Session] = {}
        self._per_user: dict[int, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sends: set[asyncio.Task[Any]] = set()  # in-flight `send` commands (full path)
        self._inflight = 0  # in-flight `send` commands on the nowait path
        self._idle: asyncio.Event | None = None  # set when _inflight drops to 0 (drain)
        self._sweeper: asyncio.Task[None] | None = None
        self.draining = False

    async def start(self) -> None:
        await self.svc.hub.start(self.router)
        self.router.start()
        await self.presence.start()
        self._sweeper = asyncio.create_task(self._expire_forever())

    async def quiesce(self, deadline_s: float) -> None:
        """First step of a graceful drain: refuse new connections and commands,
        and wait (up to ``deadline_s``) for in-flight sends to commit and
        their acks to be queued, so nothing acknowledged is left unsaid."""
        self.draining = True
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        pending = [t for t in self._sends if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=deadline_s)
        if self._inflight > 0:  # nowait sends: acked from commit callbacks
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, end - loop.time()))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in [*self._tasks, *self._sends]:
            task.cancel()
        await self.presence.close()
        await self.router.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- upgrade ---------------------------------------------------------------

    async def on_upgrade(self, request: Any) -> Accept | Reject:
        if self.draining:
            return Reject(503, "server_draining", "this server is shutting down; reconnect")
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
            await require_member(self.svc, ident, workspace_id)
        except DomainError as exc:
            return Reject(exc.status, exc.code, exc.message)
        except StoreUnavailable:
            return Reject(503, "store_unavailable", "the database is unavailable; retry")
        cap = self.svc.settings.ws_max_connections_per_user
        if self._per_user.get(ident.user_id, 0) >= cap:
            return Reject(429, "too_many_connections",
                          f"at most {cap} connections per user")
        resume = request.query.get("resume") == "1"
        return Accept(subprotocol=subprotocol, context=(ident, workspace_id, resume))

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
        if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**63:
            raise InvalidInput("invalid_workspace_id", "pass ?workspace_id=<id>")
        return ident, int(raw)

    # -- lifecycle -------------------------------------------------------------

    def on_open(self, conn: WsTransport) -> None:
        ident, workspace_id, resume_wanted = cast(tuple[Identity, int, bool], conn.context)
        session = Session(self, conn, ident, workspace_id,
                          codecs.codec_for(conn.subprotocol or ""))
        session.begin_opening(resume_wanted)
        self.sessions[conn] = session
        self._per_user[ident.user_id] = self._per_user.get(ident.user_id, 0) + 1
        self._spawn(self._open(session))

    async def _open(self, session: Session) -> None:
        """OPENING: subscribe the session, send hello, then go live or wait for resume.

        Nothing is sent before hello: channel events wait in ``session.held``,
        user events in ``session.early_events`` (sent right after hello),
        commands in ``session.early`` (handled right after hello, in order).
        The user topic is subscribed *before* the channels are read, so a
        membership change committed after the read reaches the session; one
        that arrives during the read is applied to its result (``user_event``).
        """
        try:
            await self.router.add_user(session)
            rows = await delivery.session_channels(self.svc, session.ident, session.workspace_id)
        except (StoreUnavailable, ConnectionError):  # HubUnavailable is a ConnectionError
            session.conn.close(CloseCode.INTERNAL, "database or hub unavailable; reconnect")
            return
        if rows is None:
            session.conn.close(CloseCode.MEMBERSHIP_ENDED, "not a member of this workspace")
            return
        session.channels = {c.id for c, _ in rows}
        for event in session.early_events or ():
            self._membership(session, event, subscribe=False)
        session.known = True
        try:
            for cid in sorted(session.channels):
                if cid in session.channels:  # not left meanwhile
                    await self.router.add_channel(session, session.workspace_id, cid)
        except (StoreUnavailable, ConnectionError):  # HubUnavailable is a ConnectionError
            session.conn.close(CloseCode.INTERNAL, "could not subscribe; reconnect")
            return
        if session.conn not in self.sessions:  # closed while we were subscribing
            await self.router.remove(session, session.channels)
            return
        self.presence.on_open(session)
        # hello's last_seq: where this connection's live stream starts (the
        # gateway's position, or the row's when the gateway is behind it).
        positions = {c.id: max(self.router.channel_position(c.id) or 0, c.last_seq)
                     for c, _ in rows}
        session.send({"t": "hello", "d": {
            "session_id": session.session_id,
            "user_id": session.user_id,
            "workspace_id": session.workspace_id,
            "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
            "limits": {"commands_per_s": self.svc.settings.ws_commands_per_s,
                       "burst": self.svc.settings.ws_command_burst,
                       "max_message_chars": self.svc.settings.max_message_chars},
            "channels": [{"id": c.id, "kind": c.kind, "name": c.name,
                          "last_seq": positions[c.id],
                          "last_read_seq": read} for c, read in rows],
        }})
        early_events, session.early_events = session.early_events or [], None
        for event in early_events:
            session.send(event)
        if session.resuming:
            session.phase = Phase.HOLDING
            session.resume_timer = asyncio.get_running_loop().call_later(
                RESUME_WAIT_S, self._resume_timeout, session)
        else:
            # Everything held is at or below hello's last_seq (held events
            # were delivered before hello was built): live from hello on.
            self._go_live(session, positions)
        early, session.early = session.early or [], None
        for data in early:
            self.on_message(session.conn, data)

    def on_close(self, conn: WsTransport, code: int | None, reason: str) -> None:
        session = self.sessions.pop(conn, None)
        if session is None:
            return
        left = self._per_user.get(session.user_id, 1) - 1
        if left:
            self._per_user[session.user_id] = left
        else:
            self._per_user.pop(session.user_id, None)
        if session.resume_timer is not None:
            session.resume_timer.cancel()
        self.presence.on_close(session)
        self._spawn(self.router.remove(session, session.channels))

    # -- commands --------------------------------------------------------------

    def on_message(self, conn: WsTransport, data: bytes | str) -> None:
        session = self.sessions.get(conn)
        if session is None:
            return
        if session.early is not None:  # before hello: handled right after it, in order
            self._queue_early(session, data)
            return
        if len(data) <= codecs.HEARTBEAT_MAX_LEN and (
                active := session.codec.heartbeats.get(data)) is not None:
            # Heartbeat fast path: a ref-less heartbeat in one of its common
            # encodings (codec.heartbeats), handled exactly as the generic
            # path below would (token bucket, strikes, no reply) without
            # decoding the envelope.  Draining does not refuse heartbeats.
            now = time.monotonic()
            if session.bucket.take(now) == 0.0:
                session.strikes = 0
                self.presence.on_heartbeat(session, now, active)
            else:
                self._rate_limited(session, conn, None)
            return
        try:
            op, ref, d = session.codec.decode(data)
        except codecs.BadEnvelope as exc:
            session.error(exc.ref, exc.code, exc.message)
            return
        if session.bucket.take(time.monotonic()) != 0.0:
            self._rate_limited(session, conn, ref)
            return
        session.strikes = 0
        if self.draining and op in ("send", "resume"):
            session.error(ref, "server_draining", "this server is shutting down; reconnect",
                          retryable=True)
            return
        if op == "send":
            self.presence.on_heartbeat(session, time.monotonic())  # sending is activity
            self._start_send(session, ref, d)
        elif op == resume.OP_RESUME:
            self._on_resume(session, ref, d)
        elif op == codecs.HEARTBEAT_OP:
            self._heartbeat(session, ref, d)
        elif self.presence.handle(session, op, ref, d):
            pass
        else:
            session.error(ref, "unknown_op", f"unknown command {op[:codecs.MAX_REF_LEN]!r}")

    def _rate_limited(self, session: Session, conn: WsTransport, ref: Any) -> None:
        """A command found the token bucket empty: a ``rate_limited`` error,
        or 4003 after RATE_STRIKES_TO_CLOSE in a row.  Shared by the generic
        path and the heartbeat fast path (tests/gateway/test_session_heartbeats.py
        checks that the two agree)."""
        settings = self.svc.settings
        session.strikes += 1
        if session.strikes >= RATE_STRIKES_TO_CLOSE:
            conn.close(CloseCode.RATE_LIMITED, '{"retry_after_ms":5000}')
        else:
            session.error(ref, "rate_limited", "too many commands", retryable=True,
                          retry_after_ms=int(1000 / settings.ws_commands_per_s) + 1)

    def _heartbeat(self, session: Session, ref: Any, d: dict[str, Any]) -> None:
        """A ``heartbeat`` through the generic path.  Without a ``ref`` it is
        fire-and-forget (the server's WebSocket pings and idle timeout already
        cover liveness); with one it gets ``heartbeat_ack``, which the client
        may use to measure round trips or to know every earlier command on
        this socket was handled."""
        active = d.get("active")
        if active is not None and not isinstance(active, bool):
            session.error(ref, "invalid_field", "'active' is a boolean")
            return
        self.presence.on_heartbeat(session, time.monotonic(), active is not False)
        if ref is not None:
            session.send({"t": "heartbeat_ack", "ref": ref,
                          "d": {"ts": int(time.time() * 1000)}})

    def _start_send(self, session: Session, ref: Any, d: dict[str, Any]) -> None:
        """A ``send``: a plain message takes ``post_message_nowait`` (no Task;
        the ack is written from the writer's commit callback), anything else
        a Task running ``post_message``."""
        try:
            f = _send_fields(d)
        except codecs.BadEnvelope as exc:
            session.error(ref, exc.code, exc.message)
            return
        if f.root_id is None and not f.file_ids:
            try:
                started = messages.post_message_nowait(
                    self.svc, session.ident, session.workspace_id, f.channel_id, f.text,
                    f.cmid, done=lambda res: self._sent(session, ref, res))
            except DomainError as exc:
                session.error(ref, exc.code, exc.message, retryable=exc.retryable)
                return
            except StoreUnavailable:
                session.error(ref, "store_unavailable", "nothing was saved; retry",
                              retryable=True)
                return
            if started:
                self._inflight += 1
                return
        task = asyncio.create_task(self._send(session, ref, f))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _sent(self, session: Session, ref: Any, res: Message | DomainError) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()
        if isinstance(res, DomainError):
            session.error(ref, res.code, res.message, retryable=res.retryable)
        else:
            session.reply(ref, _ack_data(res))

    async def _send(self, session: Session, ref: Any, f: _SendFields) -> None:
        try:
            msg = await messages.post_message(self.svc, session.ident, session.workspace_id,
                                              f.channel_id, f.text, f.cmid, f.root_id,
                                              member_checked=True, also_in_channel=f.also,
                                              file_ids=f.file_ids)
        except DomainError as exc:
            session.error(ref, exc.code, exc.message, retryable=exc.retryable)
            return
        except StoreUnavailable:
            session.error(ref, "store_unavailable", "nothing was saved; retry", retryable=True)
            return
        except Exception:  # a bug: the client still gets an answer, never silence
            log.exception("send failed")
            session.error(ref, "internal_error", "the send failed; retry with the same "
                          "client_msg_id (a retry never stores it twice)", retryable=True)
            return
        session.reply(ref, _ack_data(msg))

    # -- resume (the contract: docs/protocol.md; the rules: gateway/resume.py) -----

    def _queue_early(self, session: Session, data: bytes | str) -> None:
        """A command before hello.  At most a burst of them: more is a flood,
        closed like one (4003)."""
        early = session.early
        assert early is not None
        if len(early) >= self.svc.settings.ws_command_burst:
            session.conn.close(CloseCode.RATE_LIMITED, '{"retry_after_ms":5000}')
            return
        early.append(data)

    def _on_resume(self, session: Session, ref: Any, d: dict[str, Any]) -> None:
        """The ``resume`` command.  A malformed one is refused first, whatever
        the state (a waiting connection keeps waiting; the deadline does not
        move); a well-formed one only on a ``?resume=1`` connection still
        waiting for it."""
        try:
            cursors = resume.parse_cursors(d)
        except codecs.BadEnvelope as exc:
            session.error(ref, exc.code, exc.message)
            return
        if not session.resuming:
            session.error(ref, resume.ERR_NOT_REQUESTED,
                          "connect with ?resume=1 to resume; events already flow since hello")
            return
        if session.phase is not Phase.HOLDING:
            session.error(ref, resume.ERR_TOO_LATE,
                          "this connection no longer waits for a resume (one was handled, or "
                          f"{RESUME_WAIT_S:g} s passed); reconnect with ?resume=1")
            return
        self._start_replay(session, cursors, Reason.NOT_NAMED, ref, ack=True)

    def _resume_timeout(self, session: Session) -> None:
        """No resume within RESUME_WAIT_S of hello: as if it named no channel."""
        session.resume_timer = None
        if session.phase is Phase.HOLDING and session.conn in self.sessions:
            self._start_replay(session, {}, Reason.NO_RESUME, None, ack=False)

    def _start_replay(self, session: Session, cursors: dict[int, int], unnamed: Reason,
                      ref: Any, *, ack: bool) -> None:
        session.phase = Phase.REPLAYING
        if session.resume_timer is not None:
            session.resume_timer.cancel()
            session.resume_timer = None
        self._spawn(self._replay(session, cursors, unnamed, ref, ack))

    async def _replay(self, session: Session, cursors: dict[int, int], unnamed: Reason,
                      ref: Any, ack: bool) -> None:
        """REPLAYING: give every channel of the session its ``Decision``
        (replay from the cursor, or ``channel.resync_required``), then ack
        and go live with each channel's floor at what the client was given.

        A channel left meanwhile stops being replayed (its ``channel.left``
        is sent as it arrives and ends it); one joined meanwhile is not part
        of the plan (its ``channel.joined`` says where it starts).
        """
        limit = self.svc.settings.resume_max_events
        wid = session.workspace_id
        plan = resume.plan(cursors, session.channels)
        floors: dict[int, int] = {}
        resync: list[int] = []
        count = 0
        try:
            for cid, cursor in plan.channels:
                if cid not in session.channels:
                    continue
                head = await delivery.channel_position(self.svc, wid, cid)
                decision = resume.decide(cursor, head, limit, unnamed)
                if decision.reason is None:
                    after = decision.from_seq - 1
                    while after < decision.to_seq:
                        page = await delivery.events_after(self.svc, wid, cid, after)
                        if cid not in session.channels or session.conn not in self.sessions:
                            break
                        if not page:
                            break
                        for seq, payload in page:
                            session.send_frame(*_frames(payload))
                            after = seq
                        count += len(page)
                    if after >= decision.to_seq:
                        floors[cid] = after
                        continue
                    decision = resume.Decision(after + 1, decision.to_seq, Reason.HISTORY_SHORT)
                if cid in session.channels and session.conn in self.sessions:
                    session.send(resume.resync_event(cid, decision))
                    resync.append(cid)
                    floors[cid] = decision.to_seq
        except StoreUnavailable:
            # What was replayed is gap-free up to the client's new cursors, so
            # a later resume from them loses nothing.
            session.conn.close(CloseCode.INTERNAL, "history unavailable; reconnect and resume")
            return
        if session.conn not in self.sessions:
            return
        if ack:
            session.reply(ref, {"replayed": count, "resync_required": resync,
                                "ignored": plan.ignored})
        self._go_live(session, floors)

    def _go_live(self, session: Session, floors: dict[int, int]) -> None:
        """LIVE: send the held events above each channel's floor, in order;
        from now on events are sent as they arrive (see resume.Hold.release)."""
        held, session.held = session.held, None
        session.phase = Phase.LIVE
        if held is None or held.overflowed:
            return  # closing (4004)
        items, live_floors = held.release(floors, session.channels, self.router.channel_position)
        for binary, text in items:
            session.send_frame(binary, text)
        session.floors = live_floors or None
        self.router.holding_changed(session, session.channels)

    # -- user events -------------------------------------------------------------

    def user_event(self, session: Session, event: dict[str, Any]) -> None:
        kind = event.get("t")
        data = event.get("d") or {}
        if kind == events.SESSION_REVOKED:
            if data.get("session_id") == session.session_id:
                session.conn.close(CloseCode.AUTH_FAILED, "session ended")
            return
        if kind == events.MEMBERSHIP_ENDED:
            if data.get("workspace_id") == session.workspace_id:
                if session.early_events is None:  # before hello the close code says it
                    session.send(event)
                session.conn.close(CloseCode.MEMBERSHIP_ENDED, "no longer a member")
            return
        if session.known:
            self._membership(session, event, subscribe=True)
        if session.early_events is not None:  # before hello: sent right after it
            session.early_events.append(event)
            return
        session.send(event)

    def _membership(self, session: Session, event: dict[str, Any], *, subscribe: bool) -> None:
        """Apply ``channel.joined`` / ``channel.left`` to ``session.channels``
        (and, once the session is subscribed, to the router)."""
        kind = event.get("t")
        data = event.get("d") or {}
        if kind not in (events.CHANNEL_JOINED, events.CHANNEL_LEFT) or (
                data.get("workspace_id") != session.workspace_id):
            return
        cid = data.get("id")
        if not isinstance(cid, int):
            return
        if kind == events.CHANNEL_JOINED and cid not in session.channels:
            session.channels.add(cid)
            if subscribe:
                self._spawn(self.router.add_channel(session, session.workspace_id, cid))
        elif kind == events.CHANNEL_LEFT and cid in session.channels:
            session.channels.discard(cid)
            if subscribe:
                self.router.detach(session, cid)  # at once, before any later event
                self._spawn(self.router.remove_channel(session, cid))

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            now = time.time()
            for session in list(self.sessions.values()):
                if session.expires_at <= now:
                    session.conn.close(CloseCode.AUTH_FAILED, "token expired")
