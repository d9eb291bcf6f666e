"""gateway.echo: the Autobahn echo mode."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.echo import EchoHandler, _parse_args, echo_transport_limits, limits_from_args, run_echo
from gateway.handshake import HandshakeParser, UpgradeRequest
from gateway.websocket import WsLimits

MiB = 1024 * 1024


def upgrade_request(protocols: str | None) -> UpgradeRequest:
    lines = ["GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    request = HandshakeParser().feed(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert request is not None
    return request


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (None, None),
        ("chat, superchat", None),
        ("parley.json.v1, parley.msgpack.v1", "parley.json.v1"),
        ("other, parley.msgpack.v1", "parley.msgpack.v1"),
    ],
)
async def test_accepts_any_upgrade_and_picks_the_first_parley_subprotocol(
    offered: str | None, chosen: str | None
) -> None:
    decision = await EchoHandler().on_upgrade(upgrade_request(offered))
    assert decision.subprotocol == chosen  # type: ignore[union-attr]


async def _serve_echo(limits: WsLimits) -> tuple[asyncio.Task[None], int]:
    import socket

    with socket.socket() as probe:  # pick a free port for run_echo
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(run_echo("127.0.0.1", port, limits))
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return task, port
        except OSError:
            await asyncio.sleep(0.01)
    raise AssertionError("echo server did not start")


async def test_run_echo_echoes_text_as_text_and_binary_as_binary() -> None:
    task, port = await _serve_echo(WsLimits())
    try:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("texte ✓")
            assert await ws.recv() == "texte ✓"
            await ws.send(b"\x00bin")
            assert await ws.recv() == b"\x00bin"
            await ws.send(["a", "b", "c"])
            assert await ws.recv() == "abc"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_default_limits_close_large_messages_with_1009() -> None:
    task, port = await _serve_echo(WsLimits())
    try:
        async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            await ws.send(b"x" * MiB)  # exactly the limit: echoed
            assert len(await ws.recv()) == MiB
            await ws.send(b"x" * (MiB + 1))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1009
    finally:
        task.cancel()


async def test_raised_limit_echoes_messages_above_the_outbound_default() -> None:
    args = _parse_args(["--max-message-bytes", str(8 * MiB)])
    task, port = await _serve_echo(limits_from_args(args))
    try:
        async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            payload = bytes(range(256)) * (6 * MiB // 256)  # > the 4 MiB outbound default
            await ws.send(payload)
            assert await ws.recv() == payload
    finally:
        task.cancel()


def test_command_line_limits() -> None:
    assert limits_from_args(_parse_args([])) == WsLimits()
    raised = limits_from_args(_parse_args(["--max-message-bytes", str(16 * MiB)]))
    assert raised == WsLimits(max_frame_bytes=16 * MiB, max_message_bytes=16 * MiB,
                              max_fragments=16 * MiB // 64)
    explicit = limits_from_args(_parse_args(
        ["--max-message-bytes", "4096", "--max-frame-bytes", "1024", "--max-fragments", "9"]))
    assert explicit == WsLimits(max_frame_bytes=1024, max_message_bytes=4096, max_fragments=9)
    assert echo_transport_limits(WsLimits(max_message_bytes=16 * MiB)).max_outbound_bytes > 32 * MiB


def test_module_runs_as_a_script() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.echo", "--help"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0
    assert "--max-message-bytes" in result.stdout
