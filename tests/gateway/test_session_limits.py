"""Session limits through real sockets: expired tokens, a token expiring on a
live socket, the per-user connection cap, command rate limits, SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway import session as session_mod
from server.runner import Running
from tests.fixtures.parley import WsClient, register_and_login
from tests.fixtures.redis import free_ports


async def _workspace(parley: Running) -> tuple[str, str, int]:
    ada, user = await register_and_login(parley, "ada@example.com", "Ada")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    await ada.close()
    return ada.token or "", ws["id"], int(user["id"])


async def test_expired_token_is_refused_at_upgrade(parley: Running) -> None:
    token, wid, uid = await _workspace(parley)
    ident = parley.rt.services.tokens.verify(token)
    old, _ = parley.rt.services.tokens.issue(uid, ident.session_id, now=time.time() - 3600)
    with pytest.raises(InvalidStatus) as err:
        await websockets.connect(
            f"ws://127.0.0.1:{parley.gateway_port}/v1/connect?workspace_id={wid}",
            subprotocols=["parley.msgpack.v1"],  # type: ignore[list-item]
            additional_headers={"authorization": f"Bearer {old}"})
    assert err.value.response.status_code == 401
    assert json.loads(err.value.response.body or b"{}")["error"]["code"] == "token_expired"


async def test_socket_is_closed_when_its_token_expires(parley: Running) -> None:
    token, wid, uid = await _workspace(parley)
    svc = parley.rt.services
    ident = svc.tokens.verify(token)
    # A token with two seconds left to live.
    short, _ = svc.tokens.issue(uid, ident.session_id, now=time.time() - svc.tokens.ttl_s + 2)
    c = await WsClient.connect(parley, short, wid)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as err:
        while True:
            await c.recv(timeout=15)
    assert err.value.rcvd is not None and err.value.rcvd.code == 4001
    assert time.monotonic() - started < 2 + session_mod.EXPIRY_SWEEP_S + 2


async def test_per_user_connection_cap(parley: Running) -> None:
    svc = parley.rt.services
    svc.settings = dataclasses.replace(svc.settings, ws_max_connections_per_user=3)
    token, wid, _ = await _workspace(parley)
    clients = [await WsClient.connect(parley, token, wid) for _ in range(3)]
    with pytest.raises(InvalidStatus) as err:
        await WsClient.connect(parley, token, wid)
    assert err.value.response.status_code == 429
    assert json.loads(err.value.response.body or b"{}")["error"]["code"] == (
        "too_many_connections")
    await clients[0].close()
    await asyncio.sleep(0.1)
    clients[0] = await WsClient.connect(parley, token, wid)  # a slot is free again
    for c in clients:
        await c.close()


async def test_command_flood_is_rate_limited_then_closed(parley: Running,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    svc = parley.rt.services
    # Burst of 10 and no refill during the test.
    svc.settings = dataclasses.replace(svc.settings, ws_command_burst=10.0,
                                       ws_commands_per_s=0.01)
    monkeypatch.setattr(session_mod, "RATE_STRIKES_TO_CLOSE", 20)
    token, wid, _ = await _workspace(parley)
    c = await WsClient.connect(parley, token, wid)
    for i in range(12):
        await c.send_cmd("heartbeat", {}, ref=i)
    kinds = [(await c.recv())["t"] for _ in range(12)]
    assert kinds.count("heartbeat_ack") == 10 and kinds.count("error") == 2
    with pytest.raises(ConnectionClosed) as err:
        for i in range(100):
            await c.send_cmd("heartbeat", {}, ref=i)
            await c.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 4003
    assert json.loads(err.value.rcvd.reason)["retry_after_ms"] > 0


async def test_sigterm_drains_a_real_serve_process(tmp_path: Path, pg_dsn: str) -> None:
    api_port, gw_port = free_ports(2)
    env = {**os.environ, "PARLEY_DATABASE_URL": pg_dsn, "PARLEY_DATA_DIR": str(tmp_path),
           "PARLEY_API_PORT": str(api_port), "PARLEY_GATEWAY_PORT": str(gw_port)}
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            body = {"email": "ada@example.com", "password": "long enough",
                    "display_name": "Ada"}
            (await http.post("/v1/auth/register", json=body)).raise_for_status()
            login = {"email": body["email"], "password": body["password"]}
            tok = (await http.post("/v1/auth/login", json=login)).json()
            ws = (await http.post("/v1/workspaces", json={"name": "A"}, headers={
                "authorization": f"Bearer {tok['access_token']}"})).json()
        conn = await websockets.connect(
            f"ws://127.0.0.1:{gw_port}/v1/connect?workspace_id={ws['id']}",
            subprotocols=["parley.msgpack.v1"],  # type: ignore[list-item]
            additional_headers={"authorization": f"Bearer {tok['access_token']}"})
        await conn.recv()  # hello
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as err:
            while True:
                await asyncio.wait_for(conn.recv(), 15)
        assert err.value.rcvd is not None and err.value.rcvd.code == 4005
        hint = json.loads(err.value.rcvd.reason)["retry_after_ms"]
        assert 1_000 <= hint <= 10_000
        assert await asyncio.to_thread(proc.wait, 20) == 0
        out = (proc.stdout.read() if proc.stdout else b"").decode()
        assert "Parley stopped." in out
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_drain_acks_in_flight_sends_before_closing(parley: Running) -> None:
    token, wid, _ = await _workspace(parley)
    c = await WsClient.connect(parley, token, wid)
    cid = c.hello["d"]["channels"][0]["id"]
    writer = parley.rt.writer
    writer._window_s = 0.3  # keep the send in flight while the drain starts
    await c.send_cmd("send", {"channel_id": cid, "text": "last words"}, ref="last")
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(parley.stop(drain_deadline_s=4.0))
    ack = await c.recv_type("ack", timeout=5)
    assert ack["ref"] == "last" and ack["d"]["seq"] == 1
    with pytest.raises(ConnectionClosed) as err:
        while True:
            await c.recv(timeout=5)
    assert err.value.rcvd is not None and err.value.rcvd.code == 4005
    await stopping
