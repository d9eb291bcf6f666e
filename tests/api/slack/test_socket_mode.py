"""Socket Mode: the real slack_bolt app over ``SocketModeHandler`` (its
builtin client, as Bolt's documentation starts it), and the envelope
protocol checked frame by frame with a plain WebSocket client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from server.runner import Running
from tests.api.helpers import expect
from tests.api.slack.helpers import base_url, cid, manifest, team_with_bot

pytestmark = pytest.mark.timeout(60)


def socket_manifest(name: str = "Sockets") -> dict[str, Any]:
    m = manifest(name, socket_mode=True)
    del m["settings"]["event_subscriptions"]["request_url"]
    del m["settings"]["interactivity"]["request_url"]
    for c in m["features"]["slash_commands"]:
        del c["url"]
    return m


async def _open_url(bot: Any) -> str:
    answer = await asyncio.to_thread(bot.client.apps_connections_open, app_token=bot.app_token)
    url: str = answer["url"]
    return url


async def _linked(parley: Running, sockets: int = 1) -> None:
    """Until the gateway holds ``sockets`` app sockets (the handler's
    ``connect`` returns before the upgrade is through)."""
    async with asyncio.timeout(10):
        while True:
            gw = parley.gateway_app
            if gw is not None and sum(map(gw.links.sockets, gw.links.app_ids())) >= sockets:
                return
            await asyncio.sleep(0.05)


async def _until(ws: Any, pred: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            msg = json.loads(await ws.recv())
            if pred(msg):
                return dict(msg)


async def test_bolt_hello_app_in_socket_mode_replies_in_the_channel(parley: Running) -> None:
    t, bot = await team_with_bot(parley, socket_manifest())
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    seen: list[dict[str, Any]] = []

    def make_app() -> App:
        # As in Bolt's documentation; only the client's base URL is Parley's.
        app = App(client=WebClient(base_url=base_url(parley), token=bot.token))

        @app.message("hello")
        def message_hello(message: dict[str, Any], say: Any) -> None:
            seen.append(message)
            say(f"Hey there <@{message['user']}>!")

        return app

    app = await asyncio.to_thread(make_app)
    handler = SocketModeHandler(app, bot.app_token)
    await asyncio.to_thread(handler.connect)
    try:
        await _linked(parley)
        carol = await t.connect(t.carol, json_mode=True)
        posted = await t.post(t.bob, t.general, "hello")
        reply = None
        async with asyncio.timeout(15):
            while reply is None:
                ev = await carol.recv(timeout=15)
                if ev.get("t") == "message.created" and ev["d"]["text"].startswith("Hey there"):
                    reply = ev["d"]
        assert reply["bot_id"] is not None and reply["seq"] > posted["seq"]
        assert len(seen) == 1 and seen[0]["channel"] == cid("public", t.general)
        await carol.close()
    finally:
        await asyncio.to_thread(handler.close)
        await t.close()


async def test_envelopes_hello_ack_redelivery_and_single_use_urls(parley: Running) -> None:
    t, bot = await team_with_bot(parley, socket_manifest("Frames"))
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    url = await _open_url(bot)
    assert url.startswith("ws://127.0.0.1:") and "/link/?ticket=" in url
    async with websockets.connect(url) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["num_connections"] == 1
        assert hello["connection_info"]["app_id"] == bot.app["slack"]["app_id"]
        # The URL was single-use.
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        assert refused.value.response.status_code == 401
        posted = await t.post(t.bob, t.general, "first, not acked")
        env = await _until(ws, lambda m: m.get("type") == "events_api")
        assert env["payload"]["type"] == "event_callback"
        assert env["payload"]["event"]["text"] == "first, not acked"
        assert env["retry_attempt"] == 0 and env["accepts_response_payload"] is False
        # No ack: after the timeout the same event comes again, marked a retry.
        again = await _until(ws, lambda m: m.get("type") == "events_api", timeout_s=15)
        assert again["payload"]["event_id"] == env["payload"]["event_id"]
        assert again["envelope_id"] != env["envelope_id"]
        assert again["retry_attempt"] == 1 and again["retry_reason"] == "timeout"
        await ws.send(json.dumps({"envelope_id": again["envelope_id"]}))
        await t.post(t.bob, t.general, "second")
        nxt = await _until(ws, lambda m: m.get("type") == "events_api")
        assert nxt["payload"]["event"]["text"] == "second" and nxt["retry_attempt"] == 0
        await ws.send(json.dumps({"envelope_id": nxt["envelope_id"]}))
        assert posted["seq"] > 0
    await t.close()


async def test_socket_mode_refusals(parley: Running) -> None:
    t, bot = await team_with_bot(parley, socket_manifest("Refusals"))
    # A bot token cannot open a connection.
    with pytest.raises(SlackApiError) as err:
        await bot.call(bot.client.apps_connections_open, app_token=bot.token)
    assert err.value.response["error"] == "not_allowed_token_type"
    # A made-up ticket, and none at all.
    port = parley.gateway_port
    for query in ("?ticket=made-up", ""):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(f"ws://127.0.0.1:{port}/link/{query}"):
                pass
        assert refused.value.response.status_code == 401
    # A non-JSON frame closes the socket with 1007; a binary one with 1003.
    for frame, code in (("not json", 1007), (b"\x00", 1003)):
        async with websockets.connect(await _open_url(bot)) as ws:
            await ws.recv()  # hello
            await ws.send(frame)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    await t.close()


async def test_bolt_command_and_button_in_socket_mode(parley: Running) -> None:
    """Bolt's slash command (``ack()`` then ``respond()``) and button
    (``app.action``) examples, unchanged, over Socket Mode."""
    t, bot = await team_with_bot(parley, socket_manifest("Deploy"))
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    pressed: list[dict[str, Any]] = []

    def make_app() -> App:
        app = App(client=WebClient(base_url=base_url(parley), token=bot.token))

        @app.command("/deploy")
        def deploy(ack: Any, respond: Any, command: dict[str, Any]) -> None:
            ack()
            respond(response_type="in_channel", text=f"Deploying {command['text']}",
                    blocks=[{"type": "section",
                             "text": {"type": "mrkdwn", "text": f"Deploy {command['text']}?"}},
                            {"type": "actions", "block_id": "approve",
                             "elements": [{"type": "button", "action_id": "approve_button",
                                           "text": {"type": "plain_text", "text": "Approve"},
                                           "value": "yes"}]}])

        @app.action("approve_button")
        def approve_request(ack: Any, body: dict[str, Any], respond: Any) -> None:
            ack()
            pressed.append(body)
            respond(replace_original=True, text="Approved")

        return app

    app = await asyncio.to_thread(make_app)
    handler = SocketModeHandler(app, bot.app_token)
    await asyncio.to_thread(handler.connect)
    try:
        await _linked(parley)
        carol = await t.connect(t.carol, json_mode=True)
        out = await expect(t.bob.api, "POST", t.c(t.general, "/commands"), 200,
                           json={"command": "/deploy", "text": "staging"})
        assert out["response_type"] is None  # the socket's ack had no payload
        posted = None
        async with asyncio.timeout(15):
            while posted is None:
                ev = await carol.recv(timeout=15)
                if ev.get("t") == "message.created" and ev["d"]["text"] == "Deploying staging":
                    posted = ev["d"]
        await expect(t.bob.api, "POST", t.c(t.general, f"/messages/{posted['id']}/actions"),
                     200, json={"action_id": "approve_button"})
        async with asyncio.timeout(15):
            while True:
                ev = await carol.recv(timeout=15)
                if ev.get("t") == "message.updated":
                    assert ev["d"]["message"]["id"] == posted["id"]
                    assert ev["d"]["message"]["text"] == "Approved"
                    break
        assert pressed and pressed[0]["actions"][0]["value"] == "yes"
        await carol.close()
    finally:
        await asyncio.to_thread(handler.close)
        await t.close()


async def test_drain_sends_disconnect_first(parley: Running) -> None:
    t, bot = await team_with_bot(parley, socket_manifest("Drain"))
    async with websockets.connect(await _open_url(bot)) as ws:
        await ws.recv()  # hello
        gw = parley.gateway_app
        assert gw is not None
        gw.links.disconnect_all("refresh_requested")
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert msg["type"] == "disconnect" and msg["reason"] == "refresh_requested"
    await t.close()


async def test_a_socket_lives_its_announced_time_then_is_asked_to_reconnect(
        parley: Running) -> None:
    """As Slack's: ``hello`` announces the lifetime, ``disconnect``
    ``warning`` comes before its end, ``refresh_requested`` at it, and a
    socket that stays is closed (1000) after a grace."""
    t, bot = await team_with_bot(parley, socket_manifest("Lifetime"))
    gw = parley.gateway_app
    assert gw is not None
    gw.links.lifetime_s = 1.0
    began = time.monotonic()
    async with websockets.connect(await _open_url(bot)) as ws:
        hello = json.loads(await ws.recv())
        assert hello["debug_info"]["approximate_connection_time"] == 1
        warning = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert warning == {"type": "disconnect", "reason": "warning",
                           "debug_info": {"host": "parley-gateway"}}
        refresh = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert refresh["type"] == "disconnect" and refresh["reason"] == "refresh_requested"
        assert time.monotonic() - began >= 0.9
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert gw.links.sockets(int(bot.app["id"])) == 0
    await t.close()


async def test_several_sockets_of_one_app_share_the_commands(parley: Running) -> None:
    t, bot = await team_with_bot(parley, socket_manifest("Pair"))
    one = await websockets.connect(await _open_url(bot))
    two = await websockets.connect(await _open_url(bot))
    try:
        assert json.loads(await one.recv())["num_connections"] == 1
        assert json.loads(await two.recv())["num_connections"] == 2

        async def serve(ws: Any, name: str) -> str:
            env = await _until(ws, lambda m: m.get("type") == "slash_commands")
            await ws.send(json.dumps({"envelope_id": env["envelope_id"],
                                      "payload": {"text": name}}))
            return name

        tasks = [asyncio.create_task(serve(one, "one")), asyncio.create_task(serve(two, "two"))]
        answers = set()
        for _ in range(2):
            out = await expect(t.bob.api, "POST", t.c(t.general, "/commands"), 200,
                               json={"command": "/pair", "text": ""})
            answers.add(out["text"])
        assert answers == {"one", "two"}  # one envelope each, in turn
        assert {await task for task in tasks} == {"one", "two"}
    finally:
        await one.close()
        await two.close()
        await t.close()
