"""Interactivity (block_actions) against the real slack_bolt: Bolt's
documentation button example, unchanged apart from its WebClient's base URL
and its secret, served by Bolt's own adapter on loopback (Bolt checks the
signature, so its response_url post proves it); the payload's fields with a
scripted app; the refusals; response_url originals (replace / delete, also
for slash commands) and limits; the gateway's ``action`` op."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import httpx
from aiohttp import web
from slack_bolt import App
from slack_sdk import WebClient

from server.runner import Running
from tests.api.helpers import Team, drain, expect
from tests.api.slack.events_helpers import BoltServer, fast_events, free_port, signed_by
from tests.api.slack.helpers import Bot, base_url, cid, native, team_with_bot, uid
from tests.api.slack.test_commands import Scripted, point_commands, wait_event

BLOCKS = [
    {"type": "section", "block_id": "ask", "text": {"type": "mrkdwn", "text": "Deploy?"},
     "accessory": {"type": "button", "action_id": "details",
                   "text": {"type": "plain_text", "text": "Details"}, "value": "d-1"}},
    {"type": "actions", "elements": [
        {"type": "button", "action_id": "approve_button", "style": "primary",
         "text": {"type": "plain_text", "text": "Approve", "emoji": True}, "value": "yes"},
        {"type": "static_select", "action_id": "pick",
         "placeholder": {"type": "plain_text", "text": "Pick"},
         "options": [{"text": {"type": "plain_text", "text": "A"}, "value": "a"}]}]},
]


async def point_actions(t: Team, bot: Bot, url: str | None, enabled: bool = True) -> None:
    """Set (or, with ``url`` None, drop) the app's interactivity URL."""
    app = await expect(t.ada.api, "GET", t.w(f"/apps/{bot.app['id']}"), 200)
    m = app["manifest"]
    m["settings"]["interactivity"] = ({"is_enabled": enabled, "request_url": url} if url
                                      else {"is_enabled": False})
    await expect(t.ada.api, "PATCH", t.w(f"/apps/{bot.app['id']}"), 200, json={"manifest": m})


async def buttons_message(t: Team, bot: Bot, text: str = "Deploy?") -> str:
    """The bot posts BLOCKS in general; the message's native id."""
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    await bot.call(bot.client.chat_postMessage, channel=cid("public", t.general), text=text,
                   blocks=BLOCKS)
    page = await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200)
    mid: str = [m for m in page["messages"] if m["text"] == text][-1]["id"]
    return mid


def press_path(t: Team, mid: str, channel: str | None = None) -> str:
    return t.c(channel or t.general, f"/messages/{mid}/actions")


def payload_of(app: Scripted, i: int = -1) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(app.forms[i]["payload"])
    return out


async def test_payload_fields_and_signature(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    app = await Scripted().start()
    try:
        await point_actions(t, bot, app.url)
        mid = await buttons_message(t, bot)
        answer = await expect(t.bob.api, "POST", press_path(t, mid), 200,
                              json={"action_id": "approve_button"})
        assert answer == {"ok": True}
        assert signed_by(bot.signing_secret, app.headers[0], app.bodies[0])
        assert app.headers[0]["content-type"] == "application/x-www-form-urlencoded"
        assert set(app.forms[0]) == {"payload"}
        p = payload_of(app)
        team, channel = bot.app["slack"]["team_id"], cid("public", t.general)
        assert p["type"] == "block_actions" and p["api_app_id"] == bot.app["slack"]["app_id"]
        assert p["user"]["id"] == uid(t.bob.id) and p["user"]["team_id"] == team
        assert p["user"]["username"] and p["user"]["name"] == p["user"]["username"]
        assert p["team"]["id"] == team and p["team"]["domain"]
        assert p["channel"] == {"id": channel, "name": "general"}
        assert p["token"] and p["trigger_id"] and p["state"] == {"values": {}}
        msg = p["message"]
        assert msg["type"] == "message" and msg["text"] == "Deploy?"
        assert msg["bot_id"] == bot.bot_id and msg["blocks"] == BLOCKS
        assert p["container"] == {"type": "message", "message_ts": msg["ts"],
                                  "channel_id": channel, "is_ephemeral": False}
        history = await bot.call(bot.client.conversations_history, channel=channel)
        assert [m for m in history["messages"] if m["ts"] == msg["ts"]] == [msg]
        [action] = p["actions"]
        assert action["action_id"] == "approve_button" and action["type"] == "button"
        assert action["block_id"] == "b1"  # the block has none: named by its position
        assert action["value"] == "yes" and action["style"] == "primary"
        assert action["text"] == {"type": "plain_text", "text": "Approve", "emoji": True}
        assert float(action["action_ts"]) > 0
        assert p["response_url"].startswith(f"http://127.0.0.1:{parley.api_port}/commands/")
        # A section's accessory; block_id and value pick the button.
        app.answer = web.Response(status=200)  # an aiohttp answer is sent once
        await expect(t.bob.api, "POST", press_path(t, mid), 200,
                     json={"action_id": "details", "block_id": "ask", "value": "d-1"})
        assert payload_of(app)["actions"][0]["block_id"] == "ask"
        assert payload_of(app)["actions"][0]["value"] == "d-1"
    finally:
        await app.stop()
        await t.close()


async def test_refusals(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    fast_events(parley)  # 0.5 s to answer
    app = await Scripted().start()
    try:
        await point_actions(t, bot, app.url)
        mid = await buttons_message(t, bot)

        async def refused(path: str, body: dict[str, Any], status: int, code: str) -> None:
            r = await t.bob.api.http.post(path, json=body)
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] == code

        await refused(press_path(t, mid), {"action_id": "nope"}, 404, "action_not_found")
        await refused(press_path(t, mid), {"action_id": "details", "block_id": "b1"}, 404,
                      "action_not_found")
        await refused(press_path(t, mid), {"action_id": "approve_button", "value": "no"}, 404,
                      "action_not_found")
        await refused(press_path(t, mid), {"action_id": "pick"}, 400, "unsupported_element")
        await refused(press_path(t, "999999999"), {"action_id": "approve_button"}, 404,
                      "message_not_found")
        vault = await t.channel(t.ann, "vault", "private")
        hidden = await t.bob.api.http.post(press_path(t, mid, vault),
                                           json={"action_id": "approve_button"})
        made_up = await t.bob.api.http.post(press_path(t, mid, "999999999"),
                                            json={"action_id": "approve_button"})
        assert hidden.status_code == made_up.status_code == 404
        assert hidden.json() == made_up.json()
        assert hidden.json()["error"]["code"] == "channel_not_found"
        # A person's message with the same blocks: no app to tell.
        own = await expect(t.bob.api, "POST", t.c(t.general, "/messages"), 201,
                           json={"text": "mine", "blocks": BLOCKS})
        await refused(press_path(t, own["id"]), {"action_id": "approve_button"}, 409,
                      "app_not_interactive")
        assert not app.forms  # nothing was sent for any of them
        app.sleep_s = 2.0
        await refused(press_path(t, mid), {"action_id": "approve_button"}, 424,
                      "app_did_not_respond")
        app.sleep_s = 0
        app.answer = web.Response(status=500)
        await refused(press_path(t, mid), {"action_id": "approve_button"}, 424,
                      "app_did_not_respond")
        await point_actions(t, bot, None)
        await refused(press_path(t, mid), {"action_id": "approve_button"}, 409,
                      "app_not_interactive")
        bad = await t.bob.api.http.post(press_path(t, mid), json={"action_id": ""})
        assert bad.status_code == 400
        await point_actions(t, bot, app.url)
        await expect(t.ada.api, "POST", t.w(f"/apps/{bot.app['id']}/uninstall"), 200, json={})
        await refused(press_path(t, mid), {"action_id": "approve_button"}, 404,
                      "app_not_installed")
        assert not app.forms[2:]  # only the two that timed out / failed were sent
    finally:
        await app.stop()
        await t.close()


async def _bolt(parley: Running, bot: Bot) -> BoltServer:
    def make_app() -> App:
        # As in Bolt's documentation; only the client's base URL is Parley's.
        app = App(client=WebClient(base_url=base_url(parley), token=bot.token),
                  signing_secret=bot.signing_secret)

        @app.action("approve_button")
        def approve(ack: Any, body: dict[str, Any], respond: Any) -> None:
            ack()
            respond(replace_original=True, text="Approved")

        return app

    app = await asyncio.to_thread(make_app)  # App() calls auth.test, a blocking request
    return BoltServer(app, free_port()).start()


async def test_bolt_button_replaces_the_message(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    server = await _bolt(parley, bot)
    try:
        await point_actions(t, bot, server.url)
        mid = await buttons_message(t, bot)
        carol = await t.connect(t.carol, json_mode=True)
        await expect(t.bob.api, "POST", press_path(t, mid), 200,
                     json={"action_id": "approve_button"})
        ev = await wait_event(carol, lambda e: e.get("t") == "message.updated")
        assert ev["d"]["message"]["id"] == mid and ev["d"]["message"]["text"] == "Approved"
        assert "blocks" not in ev["d"]["message"]  # replaced: the buttons are gone
        assert ev["d"]["message"]["bot_id"] == native(bot.bot_id)
        page = await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200)
        assert [m["text"] for m in page["messages"] if m["id"] == mid] == ["Approved"]
        await carol.close()
    finally:
        await asyncio.to_thread(server.stop)
        await t.close()


async def test_response_url_originals_and_limit(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    app = await Scripted().start()
    try:
        await point_actions(t, bot, app.url)
        mid = await buttons_message(t, bot)
        await expect(t.bob.api, "POST", press_path(t, mid), 200,
                     json={"action_id": "approve_button"})
        url = payload_of(app)["response_url"]
        bob = await t.connect(t.bob, json_mode=True)
        async with httpx.AsyncClient() as http:
            r = await http.post(url, json={"text": "Working on it", "replace_original": True,
                                           "blocks": [{"type": "divider"}]})
            assert r.status_code == 200 and r.json() == {"ok": True}
            r = await http.post(url, json={"text": "just bob"})
            assert r.status_code == 200
            r = await http.post(url, json={"text": "for all", "response_type": "in_channel"})
            assert r.status_code == 200
            r = await http.post(url, json={"delete_original": True})
            assert r.status_code == 200
            r = await http.post(url, json={"text": "again", "replace_original": True})
            assert r.status_code == 409 and r.json()["error"] == "message_deleted"
            r = await http.post(url, json={"text": "one too many"})  # the 6th post
            assert r.status_code == 404 and r.json() == {"ok": False, "error": "expired_url"}
        got = await drain(bob, 0.5)
        updated = [e["d"]["message"] for e in got if e["t"] == "message.updated"]
        assert [(m["id"], m["text"], m["blocks"]) for m in updated] == [
            (mid, "Working on it", [{"type": "divider"}])]
        assert [e["d"]["text"] for e in got if e["t"] == "message.ephemeral"] == ["just bob"]
        assert "for all" in [e["d"]["text"] for e in got if e["t"] == "message.created"]
        assert [e["d"]["message"]["id"] for e in got if e["t"] == "message.deleted"] == [mid]
        page = await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200)
        texts = [m["text"] for m in page["messages"] if not m["deleted"]]
        assert "for all" in texts and "Working on it" not in texts
        await bob.close()
    finally:
        await app.stop()
        await t.close()


async def test_command_response_url_replaces_its_in_channel_reply(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    app = await Scripted().start()
    try:
        await point_commands(t.ada, t.ws, bot, app.url)
        app.answer = web.json_response({"response_type": "in_channel", "text": "deploying"})
        answer = await expect(t.bob.api, "POST", t.c(t.general, "/commands"), 200,
                              json={"command": "/echo"})
        first = answer["message"]["id"]
        url = app.forms[-1]["response_url"]
        async with httpx.AsyncClient() as http:
            r = await http.post(url, json={"text": "deployed", "replace_original": True})
            assert r.status_code == 200
            r = await http.post(url, json={"text": "bye", "delete_original": True})
            assert r.status_code == 200  # deletes, then shows "bye" (ephemeral) as new
        page = await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200)
        mine = [m for m in page["messages"] if m["id"] == first]
        assert mine[0]["deleted"] and "deployed" not in [m["text"] for m in page["messages"]
                                                         if not m["deleted"]]
        # An ephemeral original was never stored: replace shows a new one, delete is a no-op.
        app.answer = web.Response(status=200)
        await expect(t.bob.api, "POST", t.c(t.general, "/commands"), 200,
                     json={"command": "/echo"})
        url = app.forms[-1]["response_url"]
        bob = await t.connect(t.bob, json_mode=True)
        async with httpx.AsyncClient() as http:
            r = await http.post(url, json={"text": "instead", "replace_original": "true"})
            assert r.status_code == 200
            r = await http.post(url, json={"delete_original": True})
            assert r.status_code == 200
        got = await drain(bob, 0.5)
        assert [e["d"]["text"] for e in got if e["t"] == "message.ephemeral"] == ["instead"]
        assert not [e for e in got if e["t"] in {"message.updated", "message.deleted"}]
        await bob.close()
    finally:
        await app.stop()
        await t.close()


async def test_gateway_action_op(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    parley.rt.services.settings = dataclasses.replace(
        parley.rt.services.settings, public_api_url=f"http://127.0.0.1:{parley.api_port}/")
    server = await _bolt(parley, bot)
    try:
        await point_actions(t, bot, server.url)
        mid = await buttons_message(t, bot)
        carol = await t.connect(t.carol, json_mode=True)
        ref = await carol.send_cmd("action", {"channel_id": t.general, "message_id": mid,
                                              "action_id": "approve_button"})
        ack = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert ack["t"] == "ack"
        ev = await wait_event(carol, lambda e: e.get("t") == "message.updated")
        assert ev["d"]["message"]["text"] == "Approved"  # Bolt's respond(), via response_url
        ref = await carol.send_cmd("action", {"channel_id": t.general, "message_id": mid,
                                              "action_id": "nope"})
        err = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert (err["t"], err["d"]["code"]) == ("error", "action_not_found")
        vault = await t.channel(t.ann, "vault", "private")
        ref = await carol.send_cmd("action", {"channel_id": vault, "message_id": mid,
                                              "action_id": "approve_button"})
        err = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert (err["t"], err["d"]["code"]) == ("error", "channel_not_found")
        ref = await carol.send_cmd("action", {"channel_id": t.general, "message_id": mid,
                                              "action_id": 7})
        err = await wait_event(carol, lambda e: e.get("ref") == ref)
        assert err["t"] == "error" and err["d"]["code"] == "invalid_field"
        await carol.close()
    finally:
        await asyncio.to_thread(server.stop)
        await t.close()
