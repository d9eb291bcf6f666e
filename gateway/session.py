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
from typing import Any, cast

from gateway import commands as slash
from gateway import interactions
from gateway.admission import Admission
from gateway.presence_service import PresenceService
from gateway.protocol import (
    ERR_INVALID_FIELD,
    ERR_RATE_LIMITED,
    ERR_SERVER_DRAINING,
    ERR_UNKNOWN_OP,
    EV_ACK,
    EV_ERROR,
    EV_HEARTBEAT_ACK,
    EV_HELLO,
    HEARTBEAT_INTERVAL_MS,
    OP_ACTION,
    OP_COMMAND,
    OP_HEARTBEAT,
    OP_PRESENCE_SET,
    OP_PRESENCE_SUBSCRIBE,
    OP_PRESENCE_UNSUBSCRIBE,
    OP_RESUME,
    OP_SEND,
    OP_TYPING,
    CloseCode,
)
from gateway.protocol import codec as codecs
from gateway.replay import Replays
from gateway.resume import Hold, Phase
from gateway.router import Router
from gateway.sending import Sends
from gateway.socket_mode import SocketModeLinks
from gateway.socket_relay import PREFIXES as RELAY_TOPICS
from gateway.socket_relay import SocketRelay
from gateway.transport import Accept, Reject, WsTransport
from parley import events
from parley.actions import delivery
from parley.actions import presence as presence_reads
from parley.actions.app_dispatch import EventDispatcher
from parley.actions.socket_mode import LINK_PATH
from parley.auth import Identity
from parley.model import StoreUnavailable
from parley.ratelimit import Refill
from parley.services import Services

log = logging.getLogger("parley.gateway")

# Connection and command limits come from Settings (ws_max_connections_per_user,
# ws_commands_per_s, ws_command_burst); this one is fixed:
RATE_STRIKES_TO_CLOSE = 50  # rate-limited commands in a row before the socket is closed
EXPIRY_SWEEP_S = 5.0  # how often expired sessions are looked for
PRESENCE_OPS = (OP_PRESENCE_SUBSCRIBE, OP_PRESENCE_UNSUBSCRIBE, OP_PRESENCE_SET, OP_TYPING)
DRAINING_REFUSES = frozenset({OP_SEND, OP_RESUME})  # a draining gateway still takes the rest

Frames = tuple[bytes, Callable[[], bytes]]  # (binary frame, lazy text frame) of one event
Command = Callable[["Session", Any, dict[str, Any]], None]  # (session, ref, d)


class Session:
    """One authenticated connection (implements router.Subscriber)."""

    __slots__ = ("app", "at", "binary", "channels", "codec", "conn", "early", "early_events",
                 "expires_at", "floors", "held", "ident", "known", "phase", "rate", "resume_timer",
                 "resuming", "session_id", "strikes", "tokens", "user_id", "workspace_id")

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
        # The connection's command budget: a bucket whose state is these two
        # slots and whose policy (shared by every connection opened under the
        # same settings) is ``rate`` (parley.ratelimit.Refill).
        self.rate = app.command_rate()
        self.tokens = 0.0
        self.at = 0.0
        self.rate.fill(self, time.monotonic())
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
        self.send({"t": EV_ACK, "ref": ref, "d": data})

    def error(self, ref: Any, code: str, message: str, *, retryable: bool = False,
              **extra: Any) -> None:
        self.send({"t": EV_ERROR, "ref": ref,
                   "d": {"code": code, "message": message, "retryable": retryable, **extra}})


_UNENCODABLE: dict[str, Any] = {"t": "error", "ref": None, "d": {
    "code": "internal_error", "message": "the server could not encode a reply",
    "retryable": False}}


class GatewayApp:
    """The ConnectionHandler for Parley sessions.

    Its parts, one job each: ``Admission`` (the upgrade's checks), ``Sends``
    (the ``send`` command's two paths), ``Replays`` (``resume`` and going
    live), ``PresenceService`` (presence and typing) and the ``Router``
    (hub events to local sessions, in order).  Here: connection lifecycle
    (open, hello, close), command dispatch (``commands``, one handler per
    op of ``gateway.protocol.spec``), user events, and token expiry.
    """

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        # Socket Mode: the apps' sockets here, the relay that lets other
        # processes reach them (and this one reach theirs), and the
        # dispatcher that sends them their events (it queries nothing
        # while no app socket is open).
        self.links = SocketModeLinks(svc)
        self.relay = SocketRelay(svc.hub, self.links)
        self.links.on_held = self.relay.holding
        svc.app_links = self.relay
        self.socket_events = EventDispatcher(svc, None, links=self.links)
        self._socket_events_task: asyncio.Task[None] | None = None
        self.presence = PresenceService(
            svc.presence, svc.hub,
            channel_size=lambda wid, cid: presence_reads.channel_size(svc, wid, cid),
            visible=lambda wid, ids: presence_reads.watchable(svc, wid, ids))
        self.router = Router(
            svc.hub,
            lambda wid, cid, after: delivery.events_after(svc, wid, cid, after),
            lambda wid, cid: delivery.channel_position(svc, wid, cid),
            extra={"p": self.presence.watch, **dict.fromkeys(RELAY_TOPICS, self.relay)})
        # This process's own messages reach its sockets without the hub's
        # round trip (parley.ports.hub.LocalDelivery); the first gateway of a
        # process takes it (tests run several in one process, each with its
        # own Services as a rule; a second one still gets the hub's copy).
        if svc.local is None:
            svc.local = self.router
        self.sessions: dict[WsTransport, Session] = {}
        self._per_user: dict[int, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.draining = False
        self.admission = Admission(svc, lambda uid: self._per_user.get(uid, 0))
        self.sends = Sends(svc)
        self.replays = Replays(svc, self.router, lambda s: s.conn in self.sessions, self._spawn)
        self.commands = self.command_table()
        self._rate: tuple[object, Refill] | None = None  # (settings it was built from, policy)

    def command_rate(self) -> Refill:
        """The command budget a connection opened now gets: one ``Refill``
        per settings object, so a connection keeps the budget it opened with
        and settings replaced at run time apply to new connections."""
        settings = self.svc.settings
        if self._rate is None or self._rate[0] is not settings:
            self._rate = (settings, Refill(settings.ws_commands_per_s,
                                           settings.ws_command_burst))
        return self._rate[1]

    def command_table(self) -> dict[str, Command]:
        """op -> handler(session, ref, d).  The presence ops go to the
        presence service; tests/test_protocol_doc.py checks that the keys are
        exactly the commands of ``gateway.protocol.spec``."""
        return {
            OP_SEND: self._send,
            OP_RESUME: lambda session, ref, d: self.replays.on_resume(session, ref, d),
            OP_HEARTBEAT: self._heartbeat,
            OP_COMMAND: lambda session, ref, d: slash.start(self.svc, self._spawn, session,
                                                            ref, d),
            OP_ACTION: lambda session, ref, d: interactions.start(self.svc, self._spawn,
                                                                  session, ref, d),
            **{op: self._presence_command(op) for op in PRESENCE_OPS},
        }

    async def start(self) -> None:
        await self.svc.hub.start(self.router)
        self.router.start()
        await self.presence.start()
        await self.relay.start()
        self._sweeper = asyncio.create_task(self._expire_forever())
        self._socket_events_task = asyncio.create_task(self.socket_events.run(),
                                                       name="parley-socket-mode-events")

    async def quiesce(self, deadline_s: float) -> None:
        """First step of a graceful drain: refuse new connections and commands,
        and wait (up to ``deadline_s``) for in-flight sends to commit and
        their acks to be queued, so nothing acknowledged is left unsaid."""
        self.draining = True
        self.links.disconnect_all("refresh_requested")  # apps reconnect elsewhere
        await self.sends.quiesce(deadline_s)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._socket_events_task is not None:
            self._socket_events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._socket_events_task
        await self.relay.close()
        if self.svc.app_links is self.relay:
            self.svc.app_links = None
        if self.svc.local is self.router:
            self.svc.local = None
        for task in self._tasks:
            task.cancel()
        self.sends.cancel()
        await self.presence.close()
        await self.router.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_upgrade(self, request: Any) -> Accept | Reject:
        if request.path == LINK_PATH:
            if self.draining:
                return Reject(503, "server_draining", "this server is shutting down; reconnect")
            return await self.links.admit(request)
        return await self.admission.decide(request, draining=self.draining)

    # -- lifecycle -------------------------------------------------------------

    def on_open(self, conn: WsTransport) -> None:
        if self.links.is_link(conn):
            self.links.on_open(conn)
            return
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
        session.send({"t": EV_HELLO, "d": {
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
            self.replays.wait_for_resume(session)
        else:
            # Everything held is at or below hello's last_seq (held events
            # were delivered before hello was built): live from hello on.
            self.replays.go_live(session, positions)
        early, session.early = session.early or [], None
        for data in early:
            self.on_message(session.conn, data)

    def on_close(self, conn: WsTransport, code: int | None, reason: str) -> None:
        session = self.sessions.pop(conn, None)
        if session is None:
            self.links.on_close(conn)
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
            self.links.on_message(conn, data)
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
            if session.rate.take(session, now) == 0.0:
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
        if session.rate.take(session, time.monotonic()) != 0.0:
            self._rate_limited(session, conn, ref)
            return
        session.strikes = 0
        handler = self.commands.get(op)
        if handler is None:
            session.error(ref, ERR_UNKNOWN_OP, f"unknown command {op[:codecs.MAX_REF_LEN]!r}")
        elif self.draining and op in DRAINING_REFUSES:
            session.error(ref, ERR_SERVER_DRAINING, "this server is shutting down; reconnect",
                          retryable=True)
        else:
            handler(session, ref, d)

    def _send(self, session: Session, ref: Any, d: dict[str, Any]) -> None:
        self.presence.on_heartbeat(session, time.monotonic())  # sending is activity
        self.sends.start(session, ref, d)

    def _presence_command(self, op: str) -> Command:
        def handle(session: Session, ref: Any, d: dict[str, Any]) -> None:
            self.presence.handle(session, op, ref, d)
        return handle

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
            session.error(ref, ERR_RATE_LIMITED, "too many commands", retryable=True,
                          retry_after_ms=int(1000 / settings.ws_commands_per_s) + 1)

    def _heartbeat(self, session: Session, ref: Any, d: dict[str, Any]) -> None:
        """A ``heartbeat`` through the generic path.  Without a ``ref`` it is
        fire-and-forget (the server's WebSocket pings and idle timeout already
        cover liveness); with one it gets ``heartbeat_ack``, which the client
        may use to measure round trips or to know every earlier command on
        this socket was handled."""
        active = d.get("active")
        if active is not None and not isinstance(active, bool):
            session.error(ref, ERR_INVALID_FIELD, "'active' is a boolean")
            return
        self.presence.on_heartbeat(session, time.monotonic(), active is not False)
        if ref is not None:
            session.send({"t": EV_HEARTBEAT_ACK, "ref": ref,
                          "d": {"ts": int(time.time() * 1000)}})

    def _queue_early(self, session: Session, data: bytes | str) -> None:
        """A command before hello.  At most a burst of them: more is a flood,
        closed like one (4003)."""
        early = session.early
        assert early is not None
        if len(early) >= self.svc.settings.ws_command_burst:
            session.conn.close(CloseCode.RATE_LIMITED, '{"retry_after_ms":5000}')
            return
        early.append(data)

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
