"""Slash commands against the real slack_bolt: the documentation's
``@app.command("/echo")`` app, unchanged apart from its WebClient's base URL
and its secret, served in HTTP mode by Bolt's own adapter on loopback (Bolt
checks the signature: a reply proves it); plus the refusals, the
registration rule and the response_url limits with a scripted app."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from urllib.parse import parse_qs

import httpx
from aiohttp import web
from slack_bolt import App
from slack_sdk import WebClient

from parley.actions import commands
from server.runner import Running
from tests.api.helpers import Team, User, WsClient, drain, expect
from tests.api.slack.events_helpers import BoltServer, fast_events, free_port, signed_by
from tests.api.slack.helpers import Bot, base_url, cid, install, manifest, native, team_with_bot


async def point_commands(owner: User, ws: str, bot: Bot, url: str,
                         names: tuple[str, ...] = ("/echo",)) -> dict[str, Any]:
    m = manifest(bot.app["name"])
    m["features"]["slash_commands"] = [{"command": n, "url": url, "description": "Echo",
                                        "usage_hint": "[text]"} for n in names]
    app: dict[str, Any] = await expect(
        owner.api, "PATCH", f"/v1/workspaces/{ws}/apps/{bot.app['id']}", 200,
        json={"manifest": m})
    return app


def run_path(t: Team, channel: str, ws: str | None = None) -> str:
    return t.c(channel, "/commands", ws)


async def wait_event(sock: WsClient, pred: Any, timeout: float = 15) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            ev = await sock.recv(timeout=timeout)
            if pred(ev):
                return ev


async def _bolt(parley: Running, bot: Bot, in_channel: bool) -> BoltServer:
    def make_app() -> App:
        # As in Bolt's documentation; only the client's base URL is Parley's.
        app = App(client=WebClient(base_url=base_url(parley), token=bot.token),
                  signing_secret=bot.signing_secret)

        if in_channel:
            @app.command("/echo")
            def repeat_text(ack: Any, respond: Any, command: dict[str, Any]) -> None:
                ack()
                respond(response_type="in_channel", text=f"{command['text']}")
        else:
            @app.command("/echo")
            def repeat_text(ack: Any, respond: Any, command: dict[str, Any]) -> None:
                ack()
                respond(f"{command['text']}")

        return app

    app = await asyncio.to_thread(make_app)  # App() calls auth.test, a blocking request
    return BoltServer(app, free_port()).start()


async def test_bolt_echo_responds_to_the_invoker_only(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    server = await _bolt(parley, bot, in_channel=False)
    try:
        await point_commands(t.ada, t.ws, bot, server.url)
        carol = await t.connect(t.carol, json_mode=True)
        bob = await t.connect(t.bob, json_mode=True)
        answer = await expect(t.carol.api, "POST", run_path(t, t.general), 200,
                              json={"command": "/echo", "text": "hello there"})
        assert answer["response_type"] is None  # Bolt acks with an empty body
        ev = await wait_event(carol, lambda e: e.get("t") == "message.ephemeral")
        assert ev["d"]["text"] == "hello there"
        assert ev["d"]["bot_id"] == native(bot.bot_id)
        assert ev["d"]["channel_id"] == t.general and "seq" not in ev["d"]
        assert not [e for e in await drain(bob) if e["t"].startswith("message.")]
        page = await expect(t.carol.api, "GET", t.c(t.general, "/messages"), 200)
        assert "hello there" not in [m["text"] for m in page["messages"]]
        await carol.close()
        await bob.close()
    finally:
        await asyncio.to_thread(server.stop)
        await t.close()


async def test_bolt_echo_in_channel_lands_in_the_channel(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    server = await _bolt(parley, bot, in_channel=True)
    try:
        await point_commands(t.ada, t.ws, bot, server.url)
        bob = await t.connect(t.bob, json_mode=True)
        await expect(t.carol.api, "POST", run_path(t, t.general), 200,
                     json={"command": "/echo", "text": "for everyone"})
        ev = await wait_event(bob, lambda e: e.get("t") == "message.created"
                              and e["d"]["text"] == "for everyone")
        assert ev["d"]["bot_id"] is not None and ev["d"]["seq"] >= 1
        page = await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200)
        seqs = [m["seq"] for m in page["messages"] if m["text"] == "for everyone"]
        assert seqs == [ev["d"]["seq"]]
        await bob.close()
    finally:
        await asyncio.to_thread(server.stop)
        await t.close()


class Scripted:
    """A loopback app for commands: records each form and answers as told."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.answer: web.StreamResponse = web.Response(status=200)
        self.sleep_s = 0.0
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cmd"

    async def start(self) -> Scripted:
        app = web.Application()
        app.router.add_post("/cmd", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.bodies.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.forms.append({k: v[0] for k, v in parse_qs(body.decode(),
                                                        keep_blank_values=True).items()})
        if self.sleep_s:
            await asyncio.sleep(self.sleep_s)
        return self.answer


async def test_request_fields_signature_and_json_reply(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    app = await Scripted().start()
    try:
        await point_commands(t.ada, t.ws, bot, app.url)
        app.answer = web.json_response({"text": "pong", "blocks": [{"type": "divider"}]})
        answer = await expect(t.bob.api, "POST", run_path(t, t.general), 200,
                              json={"command": "/ECHO", "text": "ping <@1>"})
        assert answer["response_type"] == "ephemeral" and answer["text"] == "pong"
        assert answer["blocks"] == [{"type": "divider"}] and answer["message"] is None
        form, headers = app.forms[0], app.headers[0]
        assert signed_by(bot.signing_secret, headers, app.bodies[0])
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        assert set(form) >= {"token", "team_id", "team_domain", "channel_id", "channel_name",
                             "user_id", "user_name", "command", "text", "response_url",
                             "trigger_id", "api_app_id"}
        assert form["command"] == "/echo" and form["text"] == "ping <@1>"
        assert form["channel_id"] == cid("public", t.general)
        assert form["channel_name"] == "general"
        assert form["user_id"] == "U" + native_b36(t.bob.id)
        assert form["team_id"] == bot.app["slack"]["team_id"]
        assert form["api_app_id"] == bot.app["slack"]["app_id"]
        assert form["response_url"].startswith(f"http://127.0.0.1:{parley.api_port}/commands/")
        app.answer = web.Response(text="plain words")
        answer = await expect(t.bob.api, "POST", run_path(t, t.general), 200,
                              json={"command": "/echo"})
        assert (answer["response_type"], answer["text"]) == ("ephemeral", "plain words")
    finally:
        await app.stop()
        await t.close()


def native_b36(decimal_id: str) -> str:
    from parley import slack_ids

    return slack_ids.enc(int(decimal_id))


async def test_unknown_command_invisible_channel_and_timeout(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    fast_events(parley)  # 0.5 s to answer
    app = await Scripted().start()
    try:
        await point_commands(t.ada, t.ws, bot, app.url)
        r = await t.bob.api.http.post(run_path(t, t.general),
                                      json={"command": "/nope", "text": ""})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_command"
        vault = await t.channel(t.ann, "vault", "private")
        hidden = await t.bob.api.http.post(run_path(t, vault), json={"command": "/echo"})
        made_up = await t.bob.api.http.post(run_path(t, "999999999"), json={"command": "/echo"})
        assert hidden.status_code == made_up.status_code == 404
        assert hidden.json() == made_up.json()
        assert not app.forms  # nothing was sent for either
        app.sleep_s = 2.0
        r = await t.bob.api.http.post(run_path(t, t.general), json={"command": "/echo"})
        assert r.status_code == 424 and r.json()["error"]["code"] == "app_did_not_respond"
        app.sleep_s = 0
        app.answer = web.Response(status=500)
        r = await t.bob.api.http.post(run_path(t, t.general), json={"command": "/echo"})
        assert r.status_code == 424 and r.json()["error"]["code"] == "app_did_not_respond"
        bad = await t.bob.api.http.post(run_path(t, t.general), json={"command": "echo"})
        assert bad.status_code == 400
    finally:
        await app.stop()
        await t.close()


async def test_one_installed_app_per_command_and_workspaces_are_isolated(
        parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    app = await Scripted().start()
    try:
        await point_commands(t.ada, t.ws, bot, app.url)
        rival = manifest("Rival")
        rival["features"]["slash_commands"][0]["command"] = "/echo"
        created = await expect(t.ada.api, "POST", t.w("/apps"), 201, json={"manifest": rival})
        r = await t.ada.api.http.post(t.w(f"/apps/{created['app']['id']}/install"), json={})
        assert r.status_code == 409 and r.json()["error"]["code"] == "command_taken"
        assert "/echo" in r.json()["error"]["message"]
        # Workspace B's app with /other is unknown in A, and A's /echo unknown in B.
        other, _ = await install(t.eve, t.other, manifest("Other side"), parley)
        await point_commands(t.eve, t.other, other, app.url, ("/other",))
        r = await t.bob.api.http.post(run_path(t, t.general), json={"command": "/other"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_command"
        r = await t.eve.api.http.post(run_path(t, t.other_general, t.other),
                                      json={"command": "/echo"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_command"
        await expect(t.eve.api, "POST", run_path(t, t.other_general, t.other), 200,
                     json={"command": "/other"})
        assert app.forms[-1]["team_id"] == other.app["slack"]["team_id"]
    finally:
        await app.stop()
        await t.close()


async def test_response_url_five_posts_then_expired(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    app = await Scripted().start()
    try:
        await point_commands(t.ada, t.ws, bot, app.url)
        await expect(t.bob.api, "POST", run_path(t, t.general), 200, json={"command": "/echo"})
        url = app.forms[0]["response_url"]
        bob = await t.connect(t.bob, json_mode=True)
        async with httpx.AsyncClient() as http:
            r = await http.post(url, json={"text": "to the channel",
                                           "response_type": "in_channel"})
            assert r.status_code == 200 and r.json() == {"ok": True}
            for i in range(4):
                r = await http.post(url, json={"text": f"just bob {i}"})
                assert r.status_code == 200
            r = await http.post(url, json={"text": "one too many"})
            assert r.status_code == 404 and r.json() == {"ok": False, "error": "expired_url"}
            forged = url[:-4] + "AAAA"
            r = await http.post(forged, json={"text": "x"})
            assert r.status_code == 404
        got = await drain(bob, 0.5)
        assert [e["d"]["text"] for e in got if e["t"] == "message.ephemeral"] == [
            f"just bob {i}" for i in range(4)]
        assert "to the channel" in [e["d"]["text"] for e in got if e["t"] == "message.created"]
        await bob.close()
    finally:
        await app.stop()
        await t.close()


async def test_response_url_expires_after_its_lifetime(parley: Running,
                                                       monkeypatch: Any) -> None:
    monkeypatch.setattr(commands, "RESPONSE_URL_TTL_S", 0.3)
    t, bot = await team_with_bot(parley)
    app = await Scripted().start()
    try:
        await point_commands(t.ada, t.ws, bot, app.url)
        await expect(t.bob.api, "POST", run_path(t, t.general), 200, json={"command": "/echo"})
        await asyncio.sleep(0.6)
        async with httpx.AsyncClient() as http:
            r = await http.post(app.forms[0]["response_url"], json={"text": "late"})
        assert r.status_code == 404 and r.json()["error"] == "expired_url"
    finally:
        await app.stop()
        await t.close()




async def test_gateway_command_op(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    parley.rt.services.settings = dataclasses.replace(
        parley.rt.services.settings, public_api_url=f"http://127.0.0.1:{parley.api_port}/")
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    server = await _bolt(parley, bot, in_channel=False)
    app = await Scripted().start()
    try:
        await point_commands(t.ada, t.ws, bot, server.url, ("/echo",))
        carol = await t.connect(t.carol, json_mode=True)
        ref = await carol.send_cmd("command", {"channel_id": t.general, "command": "/echo",
                                               "text": "over the socket"})
        ack = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert ack["t"] == "ack" and ack["d"]["response_type"] is None
        ev = await wait_event(carol, lambda e: e.get("t") == "message.ephemeral")
        assert ev["d"]["text"] == "over the socket"  # Bolt's respond(), via response_url
        ref = await carol.send_cmd("command", {"channel_id": t.general, "command": "/nope"})
        err = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert (err["t"], err["d"]["code"]) == ("error", "unknown_command")
        vault = await t.channel(t.ann, "vault", "private")
        ref = await carol.send_cmd("command", {"channel_id": vault, "command": "/echo"})
        err = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert (err["t"], err["d"]["code"]) == ("error", "channel_not_found")
        ref = await carol.send_cmd("command", {"channel_id": t.general, "command": 7})
        err = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert err["t"] == "error" and err["d"]["code"] == "invalid_field"
        # An in_channel JSON reply: posted as the bot, the ack names the message.
        await point_commands(t.ada, t.ws, bot, app.url, ("/echo",))
        app.answer = web.json_response({"response_type": "in_channel", "text": "all of you"})
        ref = await carol.send_cmd("command", {"channel_id": t.general, "command": "/echo"})
        ack = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert ack["t"] == "ack" and ack["d"]["response_type"] == "in_channel"
        page = await expect(t.carol.api, "GET", t.c(t.general, "/messages"), 200)
        mine = [m for m in page["messages"] if m["text"] == "all of you"]
        assert [m["seq"] for m in mine] == [ack["d"]["seq"]]
        assert mine[0]["bot_id"] == native(bot.bot_id)
        await carol.close()
    finally:
        await app.stop()
        await asyncio.to_thread(server.stop)
        await t.close()
