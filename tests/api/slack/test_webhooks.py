"""Incoming webhooks through slack_sdk's WebhookClient: a post is a message
of the app's bot (seq, sockets, history), and refusals are Slack's
statuses and text/plain strings."""

from __future__ import annotations

import json

import httpx
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from server.runner import Running
from tests.api.helpers import drain, expect, settle
from tests.api.slack.helpers import base_url, cid, install, manifest, native, team_with_bot


async def test_webhook_client_posts_a_bot_message(parley: Running) -> None:
    t, _ = await team_with_bot(parley)
    bot, done = await install(t.ada, t.ws,
                              manifest("Hooks", ["incoming-webhook", "channels:history"]),
                              parley, webhook_channel_id=t.general)
    url = done["webhook"]["url"]
    assert "/services/T" in url and done["webhook"]["webhook"]["channel_id"] == t.general
    carol = await t.connect(t.carol, json_mode=True)
    hook = WebhookClient(url, timeout=10)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*build* green"}}]
    resp = await bot.call(hook.send, text="build green", blocks=blocks)
    assert (resp.status_code, resp.body) == (200, "ok")
    created = [e["d"] for e in await drain(carol) if e["t"] == "message.created"]
    assert len(created) == 1
    d = created[0]
    assert (d["text"], d["subtype"], d["bot_id"], d["user_id"]) == (
        "build green", "bot_message", native(bot.bot_id), native(bot.user_id))
    assert d["blocks"] == blocks
    # Threads, and the form encoding (payload=...).
    client = WebClient(base_url=base_url(parley), token=done["bot_token"], timeout=10)
    hist = await bot.call(client.conversations_history, channel=cid("public", t.general))
    root_ts = hist["messages"][0]["ts"]
    threaded = await bot.call(hook.send_dict, body={"text": "a reply", "thread_ts": root_ts})
    assert threaded.body == "ok"
    async with httpx.AsyncClient() as http:
        form = await http.post(url, data={"payload": json.dumps({"text": "from a form"})})
        assert (form.status_code, form.text) == (200, "ok")
    page = await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200)
    texts = [(m["text"], m["thread_root_id"] is not None, m["subtype"])
             for m in page["messages"]]
    assert texts == [("build green", False, "bot_message"), ("a reply", True, "bot_message"),
                     ("from a form", False, "bot_message")]
    await carol.close()
    await t.close()


async def test_webhook_refusals_are_slacks(parley: Running) -> None:
    t, _ = await team_with_bot(parley)
    room = await t.channel(t.ada, "room")
    bot, done = await install(t.ada, t.ws, manifest("Hooks", ["incoming-webhook"]), parley,
                              webhook_channel_id=room)
    url = done["webhook"]["url"]
    async with httpx.AsyncClient() as http:
        async def post(**kw: object) -> tuple[int, str]:
            r = await http.post(url, **kw)  # type: ignore[arg-type]
            return r.status_code, r.text

        assert await post(content=b"{nope", headers={"content-type": "application/json"}) == (
            400, "invalid_payload")
        assert await post(json={"text": ""}) == (400, "no_text")
        assert await post(json={"text": 5}) == (400, "invalid_payload")
        assert await post(json={"text": "a\u0000b"}) == (400, "invalid_payload")
        assert await post(json=[1]) == (400, "invalid_payload")
        secretless = url.rsplit("/", 1)[0] + "/" + "x" * 32
        assert (await http.post(secretless, json={"text": "hi"})).status_code == 404
        # The bot removed from the channel: action_prohibited.
        await expect(t.ada.api, "DELETE", t.c(room, f"/members/{native(bot.user_id)}"), 204)
        await settle()
        assert await post(json={"text": "hi"}) == (403, "action_prohibited")
        await expect(t.ada.api, "POST", t.c(room, "/members"), 200,
                     json={"user_ids": [native(bot.user_id)]})
        assert await post(json={"text": "back"}) == (200, "ok")
        # Archived: 410.
        await expect(t.ada.api, "POST", t.c(room, "/archive"), 200)
        assert await post(json={"text": "hi"}) == (410, "channel_is_archived")
        await expect(t.ada.api, "POST", t.c(room, "/unarchive"), 200)
        # Revoked: the URL stops at once (404 no_service); so does uninstalling.
        app_id = done["app"]["id"]
        hook_id = done["webhook"]["webhook"]["id"]
        await expect(t.ada.api, "DELETE", t.w(f"/apps/{app_id}/webhooks/{hook_id}"), 204)
        assert await post(json={"text": "hi"}) == (404, "no_service")
        other = await expect(t.ada.api, "POST", t.w(f"/apps/{app_id}/webhooks"), 201,
                             json={"channel_id": room})
        assert (await http.post(other["url"], json={"text": "new url"})).text == "ok"
        await expect(t.ada.api, "POST", t.w(f"/apps/{app_id}/uninstall"), 200)
        assert (await http.post(other["url"], json={"text": "hi"})).status_code == 404
    texts = [m["text"] for m in (await expect(t.ada.api, "GET", t.c(room, "/messages"),
                                              200))["messages"]]
    assert texts == ["back", "new url"]
    await t.close()


async def test_webhooks_need_the_scope_and_an_installed_app(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    narrow, _ = await install(t.ada, t.ws, manifest("Narrow", ["chat:write"]), parley)
    r = await t.ada.api.http.post(t.w(f"/apps/{native(narrow.app['slack']['app_id'])}/webhooks"),
                                  json={"channel_id": t.general})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "missing_scope")
    r = await t.bob.api.http.post(t.w(f"/apps/{native(bot.app['slack']['app_id'])}/webhooks"),
                                  json={"channel_id": t.general})
    assert r.status_code == 403  # a member may not manage apps
    await t.close()
