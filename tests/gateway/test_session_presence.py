"""Presence and typing wired into the gateway, end to end over WebSockets,
with the in-process store and with Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.composition import build
from server.runner import Running, start
from tests.fixtures.parley import WsClient, make_settings, register_and_login
from tests.fixtures.postgres import PgFactory


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, pg_factory: PgFactory,
                 tmp_path: Path) -> AsyncIterator[Running]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    rt = await build(make_settings(tmp_path, redis_url=redis_url), dsns=[await pg_factory.new()])
    running = await start(rt, api_port=0, gateway_port=0)
    yield running
    await running.stop(drain_deadline_s=0.5)


async def test_presence_subscription_and_typing(server: Running) -> None:
    ada, ada_user = await register_and_login(server, "ada@example.com", "Ada")
    bob, bob_user = await register_and_login(server, "bob@example.com", "Bob")
    eve, eve_user = await register_and_login(server, "eve@example.com", "Eve")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    await ada.call("POST", f"/v1/workspaces/{ws['id']}/members", 201,
                   json={"email": "bob@example.com"})
    general = (await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels", 200))["channels"][0]
    b = await WsClient.connect(server, bob.token or "", ws["id"])
    await b.send_cmd("presence.subscribe", {"user_ids": [int(ada_user["id"])]}, ref=1)
    ack = await b.recv_type("ack")
    assert ack["d"]["presences"][0]["status"] == "offline"
    # Someone outside the workspace cannot be watched.
    await b.send_cmd("presence.subscribe", {"user_ids": [int(eve_user["id"])]}, ref=2)
    assert (await b.recv_type("error"))["d"]["code"] == "user_not_found"

    a = await WsClient.connect(server, ada.token or "", ws["id"])
    changed = await b.recv_type("presence.changed", timeout=10)
    assert changed["d"]["user_id"] == int(ada_user["id"]) and changed["d"]["status"] == "online"
    await a.send_cmd("presence.set", {"dnd": True}, ref=3)
    assert (await a.recv_type("ack"))["d"]["dnd"] is True
    dnd = await b.recv_type("presence.changed", timeout=10)
    assert dnd["d"]["dnd"] is True

    await a.send_cmd("typing", {"channel_id": general["id"]}, ref=4)
    assert (await a.recv_type("ack"))["d"]["sent"] is True
    typing = await b.recv_type("typing", timeout=5)
    assert typing["d"]["user_id"] == int(ada_user["id"])
    await a.send_cmd("typing", {"channel_id": general["id"]}, ref=5)
    again = await a.recv_type("ack")
    assert again["d"] == {"sent": False, "reason": "throttled"}
    assert bob_user["id"] != ada_user["id"]
    for c in (a, b):
        await c.close()
    for api in (ada, bob, eve):
        await api.close()
