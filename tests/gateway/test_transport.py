"""gateway.transport: real sockets on 127.0.0.1 (websockets client + raw sockets).

The event loop is the suite's (uvloop by default, asyncio with
PARLEY_TEST_LOOP=asyncio).  Unit tests of write coalescing and the timer wheel
use a fake transport and need no socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import core_ext
from gateway.handshake import UpgradeRequest
from gateway.transport import (
    Accept,
    GatewayServer,
    Reject,
    TransportLimits,
    WsTransport,
    _TimerWheel,
    serve,
)
from gateway.websocket import WsLimits

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
FAST = TransportLimits(timer_tick_s=0.02, close_timeout_s=1.0, handshake_timeout_s=2.0)


class Recorder:
    """A ConnectionHandler that records everything and echoes messages."""

    def __init__(self, decision: Accept | Reject | None = None) -> None:
        self.decision = decision
        self.requests: list[UpgradeRequest] = []
        self.opened: list[WsTransport] = []
        self.messages: list[bytes | str] = []
        self.closed: list[tuple[WsTransport, int, str]] = []
        self.on_open_hook: Callable[[WsTransport], None] | None = None

    async def on_upgrade(self, request: UpgradeRequest) -> Accept | Reject:
        self.requests.append(request)
        if self.decision is not None:
            return self.decision
        return Accept(subprotocol=request.subprotocols[0] if request.subprotocols else None,
                      context={"path": request.path})

    def on_open(self, conn: WsTransport) -> None:
        self.opened.append(conn)
        if self.on_open_hook is not None:
            self.on_open_hook(conn)

    def on_message(self, conn: WsTransport, data: bytes | str) -> None:
        self.messages.append(data)
        if data == "boom":
            raise RuntimeError("handler bug")
        conn.send_message(data)

    def on_close(self, conn: WsTransport, code: int, reason: str) -> None:
        self.closed.append((conn, code, reason))

    def close_code_of(self, conn: WsTransport) -> int | None:
        return next((code for c, code, _ in self.closed if c is conn), None)


async def eventually(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def request_bytes(path: str = "/", **headers: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    base = {"Host": "localhost", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in base.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawClient:
    """A non-blocking socket driven by loop.sock_*: reads only when told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.buffer = b""
        self.parser = core_ext.FrameParser(1 << 30, False)

    @classmethod
    async def connect(cls, port: int, rcvbuf: int | None = None) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def recv(self, timeout: float = 5.0) -> bytes:
        try:
            return await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), timeout)
        except ConnectionResetError:
            return b""

    async def read_response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.recv()
            assert chunk, f"EOF before the response head: {self.buffer!r}"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
        body = b""
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                self.buffer += await self.recv()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(" ")[1]), headers, body

    async def upgrade(self, path: str = "/", extra: bytes = b"") -> None:
        await self.send(request_bytes(path) + extra)
        status, _, _ = await self.read_response()
        assert status == 101

    async def frames_until(self, opcode: int, timeout: float = 5.0) -> list[Any]:
        """Frames read until one with ``opcode`` (inclusive)."""
        frames: list[Any] = []
        if self.buffer:
            frames += self.parser.feed(self.buffer)
            self.buffer = b""
        deadline = time.monotonic() + timeout
        while not any(f.opcode == opcode for f in frames):
            chunk = await self.recv(max(0.01, deadline - time.monotonic()))
            assert chunk, f"EOF before opcode {opcode}: {[f.opcode for f in frames]}"
            frames += self.parser.feed(chunk)
        return frames

    async def eof(self, timeout: float = 5.0) -> bool:
        """True once the server closed (EOF or reset), reading everything."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await self.recv(deadline - time.monotonic()):
                return True
        return False

    def masked(self, opcode: int, payload: bytes = b"") -> bytes:
        return core_ext.build_frame(opcode, payload, True, os.urandom(4))

    def close(self) -> None:
        self.sock.close()


def close_code(frame: Any) -> int:
    assert frame.opcode == CLOSE
    return int.from_bytes(frame.payload[:2], "big")


@pytest.fixture
async def gateway() -> Any:
    """Factory: start a server with a Recorder; every server is closed afterwards."""
    servers: list[GatewayServer] = []

    async def start(handler: Recorder | None = None, limits: TransportLimits = FAST,
                    ws_limits: WsLimits | None = None) -> tuple[GatewayServer, Recorder]:
        handler = handler or Recorder()
        server = await serve(handler, "127.0.0.1", 0, limits, ws_limits)
        servers.append(server)
        return server, handler

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def url(server: GatewayServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# --- messages ------------------------------------------------------------------------------------

async def test_echo_with_websockets_client(gateway: Any) -> None:
    server, handler = await gateway()
    async with connect(url(server, "/chat?x=1"), subprotocols=["parley.json.v1"]) as ws:
        assert ws.subprotocol == "parley.json.v1"
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
        await ws.send(["frag", "mented"])
        assert await ws.recv() == "fragmented"
        await (await ws.ping(b"hb"))  # our pong arrives
    assert handler.requests[0].query == {"x": "1"}
    conn = handler.opened[0]
    assert conn.context == {"path": "/chat"} and conn.subprotocol == "parley.json.v1"
    await eventually(lambda: handler.closed)
    assert handler.closed == [(conn, 1000, "")]
    await eventually(lambda: not server.connections)


async def test_frames_sent_with_the_request_are_processed(gateway: Any) -> None:
    server, _handler = await gateway()
    client = await RawClient.connect(server.port)
    await client.upgrade(extra=client.masked(TEXT, b"early"))
    (frame,) = await client.frames_until(TEXT)
    assert frame.payload == b"early"
    client.close()


async def test_pong_for_a_ping_between_fragments_precedes_the_echo(gateway: Any) -> None:
    # Autobahn 5.6-5.8: all three frames may arrive in one read.
    server, _ = await gateway()
    client = await RawClient.connect(server.port)
    await client.upgrade()
    key = os.urandom(4)
    await client.send(core_ext.build_frame(TEXT, b"frag", False, key)
                      + client.masked(PING, b"p") + core_ext.build_frame(0x0, b"ment", True, key))
    frames = await client.frames_until(TEXT)
    assert [(f.opcode, f.payload) for f in frames] == [(PONG, b"p"), (TEXT, b"fragment")]
    client.close()


async def test_close_from_on_open_completes_the_handshake(gateway: Any) -> None:
    handler = Recorder()
    handler.on_open_hook = lambda conn: conn.close(4006, "go away")
    server, _ = await gateway(handler)
    async with connect(url(server)) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert (ws.close_code, ws.close_reason) == (4006, "go away")
    await eventually(lambda: handler.closed and not server.connections, timeout=0.9)
    assert handler.closed[0][1:] == (4006, "go away")


async def test_send_before_and_after_the_websocket_is_refused(gateway: Any) -> None:
    server, handler = await gateway()
    async with connect(url(server)) as ws:
        await ws.close()
    await eventually(lambda: handler.closed)
    conn = handler.opened[0]
    assert not conn.send(b"frame") and not conn.send_message("late")
    assert conn.close_code == 1000


# --- handshake -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),
        (request_bytes(Sec_WebSocket_Version="8"), 426),
        (request_bytes(Sec_WebSocket_Key="short"), 400),
        (request_bytes(Connection="close"), 400),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000, 431),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS to a plain port
    ],
)
async def test_bad_handshakes_get_an_error_and_no_101(
    gateway: Any, raw: bytes, status: int
) -> None:
    server, handler = await gateway()
    client = await RawClient.connect(server.port)
    await client.send(raw)
    got, headers, body = await client.read_response()
    assert got == status
    assert headers["connection"] == "close"
    assert "code" in json.loads(body)["error"]
    assert await client.eof()
    assert handler.opened == []
    client.close()


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\nHost: x\nUpgrade: websocket\n\n",  # bare LF line ends
    b"GET / HTTP/1.1\r\nHost: x\rUpgrade: websocket",  # bare CR
    b"GET / HTTP/1.1\r\nHost: x\x00",  # NUL
    b"GET / HTTP/1.1\r\nHost: x\r\n folded",  # obs-fold
])
async def test_a_head_that_can_never_be_valid_is_answered_at_once(
    gateway: Any, raw: bytes
) -> None:
    server, handler = await gateway()  # FAST: the handshake timeout is 2 s
    client = await RawClient.connect(server.port)
    started = time.monotonic()
    await client.send(raw)
    got, headers, body = await client.read_response()
    assert (got, json.loads(body)["error"]["code"]) == (400, "bad_request")
    assert headers["connection"] == "close"
    assert await client.eof(timeout=1.0)
    assert time.monotonic() - started < 1.0, "answered only at the handshake timeout"
    assert handler.requests == []
    client.close()


async def test_handler_rejection_is_sent(gateway: Any) -> None:
    server, handler = await gateway(Recorder(Reject(403, "origin_not_allowed", "no")))
    client = await RawClient.connect(server.port)
    await client.send(request_bytes())
    status, _, body = await client.read_response()
    assert (status, json.loads(body)) == (403, {"error": {"code": "origin_not_allowed",
                                                          "message": "no"}})
    assert await client.eof()
    assert handler.opened == []


async def test_handshake_timeout_drops_silent_clients(gateway: Any) -> None:
    limits = TransportLimits(timer_tick_s=0.02, handshake_timeout_s=0.3)
    server, _ = await gateway(limits=limits)
    client = await RawClient.connect(server.port)
    await client.send(b"GET / HTTP/1.1\r\n")  # and nothing more
    started = time.monotonic()
    assert await client.eof(timeout=3)
    assert 0.25 <= time.monotonic() - started < 2.0
    await eventually(lambda: not server.connections)


# --- protocol errors -----------------------------------------------------------------------------

async def test_unmasked_frame_closes_with_1002(gateway: Any) -> None:
    server, handler = await gateway()
    client = await RawClient.connect(server.port)
    await client.upgrade()
    await client.send(core_ext.build_frame(TEXT, b"not masked"))
    frames = await client.frames_until(CLOSE)
    assert close_code(frames[-1]) == 1002
    assert await client.eof()
    await eventually(lambda: handler.closed)
    assert handler.closed[0][1] == 1002


async def test_oversized_message_closes_with_1009(gateway: Any) -> None:
    server, handler = await gateway(ws_limits=WsLimits(max_message_bytes=64 * 1024))
    async with connect(url(server), max_size=None) as ws:
        await ws.send(b"x" * (64 * 1024))
        assert len(await ws.recv()) == 64 * 1024
        await ws.send(b"x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1009
    await eventually(lambda: handler.closed)
    assert handler.closed[0][1] == 1009


async def test_handler_exception_closes_with_1011(gateway: Any) -> None:
    server, _handler = await gateway()
    async with connect(url(server)) as ws:
        await ws.send("boom")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1011


async def test_tcp_loss_reports_1006(gateway: Any) -> None:
    server, handler = await gateway()
    client = await RawClient.connect(server.port)
    await client.upgrade()
    client.close()
    await eventually(lambda: handler.closed)
    assert handler.closed[0][1] == 1006
    await eventually(lambda: not server.connections)


# --- flow control --------------------------------------------------------------------------------

async def test_slow_consumer_is_closed_while_others_keep_receiving(gateway: Any) -> None:
    limits = TransportLimits(max_outbound_bytes=256 * 1024, slow_consumer_code=4002,
                             timer_tick_s=0.02, close_timeout_s=5.0)
    handler = Recorder()
    # Small kernel buffers so the non-reading client fills up quickly.
    handler.on_open_hook = lambda conn: conn.get_extra_info("socket").setsockopt(  # type: ignore[union-attr]
        socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    server, _ = await gateway(handler, limits)
    slow = await RawClient.connect(server.port, rcvbuf=4096)
    await slow.upgrade()
    received: list[bytes] = []
    async with connect(url(server), max_size=None) as fast:
        await eventually(lambda: len(handler.opened) == 2)
        slow_conn = handler.opened[0]
        reader = asyncio.create_task(_collect(fast, received))
        frame = core_ext.build_frame(BINARY, os.urandom(16 * 1024))
        sent = 0
        while handler.close_code_of(slow_conn) is None and sent < 2000:
            for index in core_ext.fanout_write(handler.opened, frame, limits.max_outbound_bytes):
                handler.opened[index].close(4002, "slow consumer")
            sent += 1
            await asyncio.sleep(0.002)
        assert handler.close_code_of(slow_conn) == 4002
        assert not slow_conn.is_open
        fast_conn = handler.opened[1]
        assert fast_conn.is_open
        await eventually(lambda: len(received) == sent)
        reader.cancel()
    # The slow client, once it reads, finds our close frame after the data.
    frames = await slow.frames_until(CLOSE)
    assert close_code(frames[-1]) == 4002
    assert all(f.opcode == BINARY for f in frames[:-1])
    slow.close()


async def _collect(ws: Any, into: list[bytes]) -> None:
    async for message in ws:
        into.append(message)  # noqa: PERF401 - the test watches it grow



# --- liveness ------------------------------------------------------------------------------------

async def test_server_pings_a_quiet_client(gateway: Any) -> None:
    limits = TransportLimits(ping_interval_s=0.2, idle_timeout_s=10, timer_tick_s=0.02)
    server, _ = await gateway(limits=limits)
    client = await RawClient.connect(server.port)
    await client.upgrade()
    started = time.monotonic()
    frames = await client.frames_until(PING, timeout=3)
    assert 0.15 <= time.monotonic() - started < 2.0
    assert frames[-1].opcode == PING
    client.close()


async def test_client_answering_pings_is_not_idle(gateway: Any) -> None:
    limits = TransportLimits(ping_interval_s=0.1, idle_timeout_s=0.4, timer_tick_s=0.02)
    server, handler = await gateway(limits=limits)
    async with connect(url(server), ping_interval=None) as ws:  # it only answers our pings
        await asyncio.sleep(1.2)  # three idle timeouts
        assert handler.closed == []
        await ws.send("still here")
        assert await ws.recv() == "still here"
    await eventually(lambda: handler.closed)
    assert handler.closed[0][1] == 1000


async def test_idle_connection_is_closed(gateway: Any) -> None:
    limits = TransportLimits(ping_interval_s=10, idle_timeout_s=0.3, timer_tick_s=0.02,
                             close_timeout_s=0.5)
    server, handler = await gateway(limits=limits)
    client = await RawClient.connect(server.port)
    await client.upgrade()
    started = time.monotonic()
    frames = await client.frames_until(CLOSE, timeout=3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert close_code(frames[-1]) == 1011
    # We never answer the close: the server aborts after close_timeout_s.
    assert await client.eof(timeout=3)
    await eventually(lambda: handler.closed and not server.connections)
    assert handler.closed[0][1:] == (1011, "idle timeout")


# --- drain ---------------------------------------------------------------------------------------

async def test_drain_sends_the_code_to_every_client(gateway: Any) -> None:
    server, handler = await gateway()
    clients = [await connect(url(server)) for _ in range(3)]
    await eventually(lambda: len(handler.opened) == 3)
    port = server.port
    started = time.monotonic()
    await server.drain(4005, lambda conn: '{"retry_after_ms":1000}', 3.0)
    assert time.monotonic() - started < 2.0
    for ws in clients:
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (4005, '{"retry_after_ms":1000}')
    assert not server.connections
    assert sorted(code for _, code, _ in handler.closed) == [4005] * 3
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/", open_timeout=2)


async def test_drain_refuses_an_unsendable_code_before_doing_anything(gateway: Any) -> None:
    server, _ = await gateway()
    with pytest.raises(ValueError):
        await server.drain(1006, lambda conn: "", 1.0)
    async with connect(url(server)) as ws:  # still serving
        await ws.send("x")
        assert await ws.recv() == "x"


async def test_drain_aborts_clients_that_do_not_answer(gateway: Any) -> None:
    limits = TransportLimits(timer_tick_s=0.02, close_timeout_s=30)
    server, _ = await gateway(limits=limits)
    client = await RawClient.connect(server.port)
    await client.upgrade()
    half = await RawClient.connect(server.port)
    await half.send(b"GET / HTTP/1.1\r\n")  # still in the handshake
    await eventually(lambda: len(server.connections) == 2)
    started = time.monotonic()
    await server.drain(4005, lambda conn: "bye", 0.3)
    assert time.monotonic() - started < 1.5
    assert not server.connections
    frames = await client.frames_until(CLOSE)
    assert close_code(frames[-1]) == 4005
    assert await client.eof()
    status, _, _ = await half.read_response()
    assert status == 503


# --- write coalescing (fake transport, no socket) ------------------------------------------------

class FakeTransport:
    def __init__(self, buffered: int = 0) -> None:
        self.writes: list[bytes] = []
        self.buffered = buffered
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def _fake_open(limits: TransportLimits = FAST, server: GatewayServer | None = None,
                     fake: FakeTransport | None = None) -> tuple[WsTransport, FakeTransport,
                                                                 Recorder]:
    if server is None:
        server = GatewayServer(Recorder(), limits, WsLimits(), asyncio.get_running_loop())
    handler = cast(Recorder, server.handler)
    opened = len(handler.opened)
    conn = WsTransport(server)
    fake = fake if fake is not None else FakeTransport()
    conn.connection_made(fake)  # type: ignore[arg-type]
    conn.data_received(request_bytes())
    await eventually(lambda: len(handler.opened) > opened)
    assert fake.writes[0].startswith(b"HTTP/1.1 101 ")
    fake.writes.clear()
    return conn, fake, handler


async def test_writes_in_one_iteration_become_one_write() -> None:
    conn, fake, _ = await _fake_open()
    frames = [core_ext.build_frame(TEXT, f"m{i}".encode()) for i in range(3)]
    for frame in frames:
        assert conn.send(frame)
    assert conn.send_message("tail")
    assert core_ext.fanout_write([conn], frames[0], 1 << 20) == []
    assert fake.writes == []  # nothing before the end of the iteration
    assert conn.get_write_buffer_size() == sum(map(len, frames)) + 6 + len(frames[0])
    await asyncio.sleep(0)
    assert fake.writes == [b"".join(frames) + core_ext.build_frame(TEXT, b"tail") + frames[0]]
    assert conn.get_write_buffer_size() == 0


async def test_send_over_the_outbound_limit_closes_as_slow_consumer() -> None:
    limits = TransportLimits(max_outbound_bytes=1000, slow_consumer_code=4002)
    conn, fake, handler = await _fake_open(limits)
    fake.buffered = 990
    assert conn.send(core_ext.build_frame(BINARY, bytes(5)))  # 997 bytes: fine
    assert not conn.send(core_ext.build_frame(BINARY, bytes(5)))  # 1004: slow
    assert not conn.is_open
    assert not conn.send(b"more")
    await asyncio.sleep(0)
    # The queued data frames were dropped; only our close frame is written.
    (written,) = fake.writes
    assert written == core_ext.build_frame(CLOSE, b"\x0f\xa2slow consumer")
    await eventually(lambda: handler.closed)
    assert handler.closed[0][1:] == (4002, "slow consumer")


async def test_a_flush_is_written_in_slices_with_the_loop_running_between() -> None:
    limits = TransportLimits(flush_slice_connections=2)
    server = GatewayServer(Recorder(), limits, WsLimits(), asyncio.get_running_loop())
    opened = [await _fake_open(server=server) for _ in range(5)]
    conns = [conn for conn, _, _ in opened]
    fakes = [fake for _, fake, _ in opened]
    frame = core_ext.build_frame(BINARY, b"broadcast")
    assert core_ext.fanout_write(conns, frame, 1 << 20) == []
    written: list[int] = []
    for _ in range(3):
        await asyncio.sleep(0)  # one loop iteration: one slice
        written.append(sum(1 for fake in fakes if fake.writes))
    assert written == [2, 4, 5]
    # A frame queued to a connection still waiting for its turn joins its write.
    assert core_ext.fanout_write(conns, frame, 1 << 20) == []
    conns[4].send(frame)
    for _ in range(3):
        await asyncio.sleep(0)
    assert fakes[0].writes == [frame, frame]
    assert fakes[4].writes == [frame, frame + frame]


async def test_a_failing_write_aborts_that_connection_only() -> None:
    class Broken(FakeTransport):
        def write(self, data: bytes) -> None:
            if self.writes:  # the 101 goes through
                raise RuntimeError("transport bug")
            super().write(data)

    server = GatewayServer(Recorder(), FAST, WsLimits(), asyncio.get_running_loop())
    bad, bad_fake, _ = await _fake_open(server=server, fake=Broken())
    good, good_fake, _ = await _fake_open(server=server)
    bad_fake.writes.append(b"101")
    frame = core_ext.build_frame(BINARY, b"x")
    assert core_ext.fanout_write([bad, good], frame, 1 << 20) == []
    await asyncio.sleep(0)
    assert bad_fake.aborted and not good_fake.aborted
    assert good_fake.writes == [frame]


async def test_fanout_asks_a_paused_transport_for_its_buffer() -> None:
    class WithLimits(FakeTransport):
        queries = 0

        def get_write_buffer_limits(self) -> tuple[int, int]:
            return (16 * 1024, 64 * 1024)

        def get_write_buffer_size(self) -> int:
            self.queries += 1
            return self.buffered

    limits = TransportLimits(max_outbound_bytes=1 << 20, slow_consumer_code=4002)
    conn, fake, _ = await _fake_open(limits, fake=WithLimits())
    frame = core_ext.build_frame(BINARY, bytes(100))
    assert core_ext.fanout_write([conn], frame, 1 << 20) == []
    assert cast(WithLimits, fake).queries == 0  # far from the limit: not asked
    fake.buffered = (1 << 20) + 1
    conn.pause_writing()  # what asyncio does above the high-water mark
    assert core_ext.fanout_write([conn], frame, 1 << 20) == [0]
    assert cast(WithLimits, fake).queries == 1
    conn.resume_writing()


# --- timer wheel ---------------------------------------------------------------------------------

class _Timed:
    def __init__(self, loop: asyncio.AbstractEventLoop, due: list[float]) -> None:
        self._timer_slot = -1
        self.loop = loop
        self.due = due
        self.fired: list[float] = []
        self.calls = 0

    def _on_timer(self, now: float) -> float | None:
        self.calls += 1
        if now < self.due[0]:
            return self.due[0]  # a far deadline parked early: re-check (wheel contract)
        self.fired.append(self.loop.time())
        self.due.pop(0)
        return self.due[0] if self.due else None


async def test_timer_wheel_never_fires_early_and_handles_far_deadlines() -> None:
    loop = asyncio.get_running_loop()
    wheel = _TimerWheel(loop, 0.002)  # span: 512 slots * 2 ms ~= 1 s
    now = loop.time()
    due = [now + 0.05, now + 0.06, now + 1.5]
    timed = _Timed(loop, list(due))
    wheel.schedule(timed, due[0])  # type: ignore[arg-type]
    wheel.start()
    try:
        await eventually(lambda: len(timed.fired) == 3, timeout=5)
    finally:
        wheel.stop()
    for fired, deadline in zip(timed.fired, due, strict=True):
        assert deadline <= fired < deadline + 0.5
    assert timed.calls == 4  # the 1.5 s deadline was parked once


async def test_timer_wheel_cancel() -> None:
    loop = asyncio.get_running_loop()
    wheel = _TimerWheel(loop, 0.002)
    timed = _Timed(loop, [loop.time() + 0.02])
    wheel.schedule(timed, timed.due[0])  # type: ignore[arg-type]
    wheel.cancel(timed)  # type: ignore[arg-type]
    wheel.start()
    await asyncio.sleep(0.1)
    wheel.stop()
    assert timed.fired == [] and timed._timer_slot == -1


# --- memory --------------------------------------------------------------------------------------

_MEMORY_SERVER = """
import asyncio, gc, sys, tracemalloc
import uvloop
from gateway.transport import Accept, serve

class Handler:
    async def on_upgrade(self, request): return Accept()
    def on_open(self, conn): pass
    def on_message(self, conn, data): pass
    def on_close(self, conn, code, reason): pass

async def main():
    server = await serve(Handler(), "127.0.0.1", 0)
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        gc.collect()
        print(tracemalloc.get_traced_memory()[0], len(server.connections), flush=True)

tracemalloc.start()
uvloop.run(main())
"""


@pytest.mark.slow
async def test_memory_per_idle_connection_is_under_6_kb() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _MEMORY_SERVER, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    port = int(await proc.stdout.readline())

    async def measure() -> tuple[int, int]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"m\n")
        traced, count = (await proc.stdout.readline()).split()
        return int(traced), int(count)

    clients: list[RawClient] = []
    try:
        for _ in range(50):  # warm caches and free lists
            clients.append(await RawClient.connect(port))
            await clients[-1].upgrade()
        base, _ = await measure()
        extra = 400
        for _ in range(extra):
            clients.append(await RawClient.connect(port))
            await clients[-1].upgrade()
        await asyncio.sleep(0.2)
        after, count = await measure()
        assert count == 50 + extra
        per_connection = (after - base) / extra
        print(f"traced memory per idle connection: {per_connection:.0f} bytes")
        assert per_connection <= 6 * 1024
    finally:
        for client in clients:
            client.close()
        proc.kill()
        await proc.wait()
