"""The Web API through slack_sdk's own WebClient against a served Parley:
every first-tier method, each effect checked through Parley's native API
and a person's gateway socket."""

from __future__ import annotations

import time
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from server.runner import Running
from tests.api.helpers import drain, expect, settle
from tests.api.slack.helpers import base_url, cid, native, team_with_bot, uid


def _created(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["d"] for e in evs if e["t"] == "message.created"]


async def test_bot_messages_are_messages_for_people(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    c = bot.client
    general = cid("public", t.general)
    await bot.call(c.conversations_join, channel=general)
    carol = await t.connect(t.carol, json_mode=True)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deploy* done"},
               "accessory": {"type": "button", "action_id": "redo", "value": "v1",
                             "text": {"type": "plain_text", "text": "Redo"}}}]
    attachments = [{"fallback": "build 42", "color": "#36a64f", "text": "build 42 passed"}]
    first = await bot.call(c.chat_postMessage, channel=general, text="Deploy done",
                           blocks=blocks, attachments=attachments)
    assert first["message"]["blocks"] == blocks and first["message"]["bot_id"] == bot.bot_id
    mention = await bot.call(c.chat_postMessage, channel=general,
                             text=f"<@{uid(t.carol.id)}> please review")
    reply = await bot.call(c.chat_postMessage, channel=general, text="in the thread",
                           thread_ts=first["ts"])
    broadcast = await bot.call(c.chat_postMessage, channel=general, text="for everyone",
                               thread_ts=first["ts"], reply_broadcast=True)
    # A person's socket: every message, in seq order, the bot as sender.
    evs = await drain(carol)
    created = _created(evs)
    assert [d["text"] for d in created] == ["Deploy done", f"<@{t.carol.id}> please review",
                                            "in the thread", "for everyone"]
    assert [d["seq"] for d in created] == sorted(d["seq"] for d in created)
    assert all(d["bot_id"] == native(bot.bot_id) and d["user_id"] == native(bot.user_id)
               for d in created)
    assert created[0]["blocks"] == blocks and created[0]["attachments"] == attachments
    assert "mention.created" in [e["t"] for e in evs]  # Slack's <@U...> became a mention
    # History, unread counts and search through the native API.
    page = await expect(t.carol.api, "GET", t.c(t.general, "/messages"), 200)
    native_first = page["messages"][0]
    assert native_first["blocks"] == blocks and native_first["bot_id"] == native(bot.bot_id)
    chans = await expect(t.carol.api, "GET", t.w("/channels"), 200)
    assert [ch["unread_count"] for ch in chans["channels"] if ch["id"] == t.general] == [3]
    await t.indexed()
    hits = await expect(t.carol.api, "GET", t.w("/search"), 200, params={"q": "review"})
    assert [h["id"] for h in hits["messages"]] == [created[1]["id"]]
    # Web API history: newest first, parents (and broadcast replies) only.
    hist = await bot.call(c.conversations_history, channel=general)
    assert [m["ts"] for m in hist["messages"]] == [broadcast["ts"], mention["ts"], first["ts"]]
    assert hist["messages"][0]["subtype"] == "thread_broadcast"
    assert hist["messages"][0]["thread_ts"] == first["ts"]
    assert hist["messages"][1]["text"] == f"<@{uid(t.carol.id)}> please review"
    root = hist["messages"][2]
    assert root["reply_count"] == 2 and root["reply_users"] == [bot.user_id]
    assert root["attachments"] == attachments
    # oldest / latest / inclusive, and cursor pagination one message at a time.
    between = await bot.call(c.conversations_history, channel=general, oldest=first["ts"],
                             latest=broadcast["ts"])
    assert [m["ts"] for m in between["messages"]] == [mention["ts"]]
    inclusive = await bot.call(c.conversations_history, channel=general, oldest=first["ts"],
                               latest=broadcast["ts"], inclusive=True)
    assert len(inclusive["messages"]) == 3
    since = await bot.call(c.conversations_history, channel=general,
                           oldest=str(float(first["ts"].split(".")[0]) - 5))
    assert len(since["messages"]) == 3  # a time that names no message bounds by time
    # (A SlackResponse iterates in place: read each page while iterating.)
    pages = await bot.call(
        lambda: [p["messages"] for p in c.conversations_history(channel=general, limit=1)])
    assert [m[0]["ts"] for m in pages] == [broadcast["ts"], mention["ts"], first["ts"]]
    thread = await bot.call(c.conversations_replies, channel=general, ts=first["ts"])
    assert [m["ts"] for m in thread["messages"]] == [first["ts"], reply["ts"], broadcast["ts"]]
    assert thread["messages"][1]["thread_ts"] == first["ts"]
    # Update, permalink, delete: events on the socket, state in the native API.
    new_blocks = [{"type": "section", "text": {"type": "plain_text", "text": "v2"}}]
    upd = await bot.call(c.chat_update, channel=general, ts=mention["ts"], text="reviewed",
                         blocks=new_blocks)
    assert upd["message"]["blocks"] == new_blocks and "edited" in upd["message"]
    link = await bot.call(c.chat_getPermalink, channel=general, message_ts=reply["ts"])
    assert link["permalink"].endswith(f"/archives/{general}/p{reply['ts'].replace('.', '')}"
                                      f"?thread_ts={first['ts']}&cid={general}")
    await bot.call(c.chat_delete, channel=general, ts=broadcast["ts"])
    evs = await drain(carol)
    kinds = [e["t"] for e in evs]
    assert "message.updated" in kinds and "message.deleted" in kinds
    updated = next(e["d"]["message"] for e in evs if e["t"] == "message.updated")
    assert updated["text"] == "reviewed" and updated["blocks"] == new_blocks
    got = await expect(t.carol.api, "GET", t.m(t.general, created[1]["id"]), 200)
    assert got["text"] == "reviewed" and got["edited_ts"] is not None
    gone = await expect(t.carol.api, "GET", t.m(t.general, created[3]["id"]), 200)
    assert gone["deleted"] is True
    await carol.close()
    await t.close()


async def test_conversation_methods(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    c = bot.client
    created = await bot.call(c.conversations_create, name="bot-room")
    room = created["channel"]["id"]
    assert room.startswith("C") and created["channel"]["is_member"] is True
    secret = await bot.call(c.conversations_create, name="bot-secret", is_private=True)
    assert secret["channel"]["id"].startswith("G") and secret["channel"]["is_private"]
    await bot.call(c.conversations_invite, channel=room,
                   users=f"{uid(t.bob.id)},{uid(t.carol.id)}")
    native_members = await expect(t.bob.api, "GET", t.c(native(room), "/members"), 200)
    assert {m["user_id"] for m in native_members["members"]} == {
        native(bot.user_id), t.bob.id, t.carol.id}
    with pytest.raises(SlackApiError) as again:
        await bot.call(c.conversations_invite, channel=room, users=uid(t.bob.id))
    assert again.value.response["error"] == "already_in_channel"
    info = await bot.call(c.conversations_info, channel=room, include_num_members=True)
    assert info["channel"]["num_members"] == 3 and info["channel"]["name"] == "bot-room"
    member_pages = await bot.call(
        lambda: [p["members"] for p in c.conversations_members(channel=room, limit=1)])
    assert sorted(m for page in member_pages for m in page) == sorted(
        [bot.user_id, uid(t.bob.id), uid(t.carol.id)])
    await bot.call(c.conversations_kick, channel=room, user=uid(t.carol.id))
    assert uid(t.carol.id) not in (await bot.call(c.conversations_members,
                                                  channel=room))["members"]
    # conversations.list: cursor iteration, one channel per page, and types.
    pages = await bot.call(lambda: [p["channels"] for p in c.conversations_list(limit=1)])
    names = [ch["name"] for page in pages for ch in page]
    assert sorted(names) == ["bot-room", "general"] and all(len(p) <= 1 for p in pages)
    private = await bot.call(c.conversations_list, types="private_channel")
    assert [ch["name"] for ch in private["channels"]] == ["bot-secret"]
    mine = await bot.call(c.users_conversations, types="public_channel,private_channel")
    assert sorted(ch["name"] for ch in mine["channels"]) == ["bot-room", "bot-secret"]
    # join (with Slack's warning when already in), mark, leave.
    general = cid("public", t.general)
    await bot.call(c.conversations_join, channel=general)
    warned = await bot.call(c.conversations_join, channel=general)
    assert warned["warning"] == "already_in_channel"
    assert warned["response_metadata"]["warnings"] == ["already_in_channel"]
    p1 = await t.post(t.bob, t.general, "one")
    await t.post(t.bob, t.general, "two")
    hist = await bot.call(c.conversations_history, channel=general)
    oldest = hist["messages"][-1]
    assert oldest["text"] == "one" and oldest["user"] == uid(t.bob.id)
    await bot.call(c.conversations_mark, channel=general, ts=oldest["ts"])
    await bot.call(c.conversations_leave, channel=room)
    left = await bot.call(c.conversations_leave, channel=room)
    assert left["not_in_channel"] is True
    with pytest.raises(SlackApiError) as general_leave:
        await bot.call(c.conversations_leave, channel=general)
    assert general_leave.value.response["error"] == "cant_leave_general"
    # conversations.open: a DM with Carol that reaches her socket.
    carol = await t.connect(t.carol, json_mode=True)
    dm = await bot.call(c.conversations_open, users=uid(t.carol.id))
    assert dm["channel"]["id"].startswith("D") and dm["already_open"] is False
    again_dm = await bot.call(c.conversations_open, users=uid(t.carol.id), return_im=True)
    assert again_dm["already_open"] is True and again_dm["channel"]["user"] == uid(t.carol.id)
    await settle()
    await bot.call(c.chat_postMessage, channel=dm["channel"]["id"], text="psst")
    evs = await drain(carol)
    assert [d["text"] for d in _created(evs)] == ["psst"]
    direct = await bot.call(c.chat_postMessage, channel=uid(t.carol.id), text="by user id")
    assert direct["channel"] == dm["channel"]["id"]
    by_name = await bot.call(c.chat_postMessage, channel="#general", text="by name")
    assert by_name["channel"] == general
    assert p1["seq"] == 1
    await carol.close()
    await t.close()


async def test_people_team_and_bot_methods(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    c = bot.client
    me = await bot.call(c.auth_test)
    assert (me["user_id"], me["bot_id"], me["team_id"]) == (
        bot.user_id, bot.bot_id, bot.app["slack"]["team_id"])
    assert me["team"] == "Acme" and me.headers["x-oauth-scopes"].split(",")[0] == "chat:write"
    bob = await bot.call(c.users_info, user=uid(t.bob.id))
    assert bob["user"]["profile"]["email"] == "bob@example.com"
    assert bob["user"]["is_bot"] is False and bob["user"]["real_name"] == "Bob"
    ada = await bot.call(c.users_info, user=uid(t.ada.id))
    assert ada["user"]["is_owner"] and ada["user"]["is_admin"]
    self_info = await bot.call(c.users_info, user=bot.user_id)
    assert self_info["user"]["is_bot"] and self_info["user"]["profile"]["bot_id"] == bot.bot_id
    assert "email" not in self_info["user"]["profile"]
    listed = await bot.call(lambda: [m["id"] for p in c.users_list(limit=2)
                                     for m in p["members"]])
    assert set(listed) == {uid(u.id) for u in (t.ada, t.ann, t.bob, t.carol, t.gus)} | {
        bot.user_id}
    found = await bot.call(c.users_lookupByEmail, email="carol@example.com")
    assert found["user"]["id"] == uid(t.carol.id)
    for email in ("nobody@example.com", f"{native(bot.user_id)}@bots.parley.invalid"):
        with pytest.raises(SlackApiError) as missing:
            await bot.call(c.users_lookupByEmail, email=email)
        assert missing.value.response["error"] == "users_not_found"
    team = await bot.call(c.team_info)
    assert team["team"]["id"] == me["team_id"] and team["team"]["name"] == "Acme"
    b = await bot.call(c.bots_info, bot=bot.bot_id)
    assert b["bot"]["user_id"] == bot.user_id and b["bot"]["deleted"] is False
    with pytest.raises(SlackApiError) as unknown:
        await bot.call(c.users_info, user="U0")
    assert unknown.value.response["error"] == "user_not_found"
    await t.close()


async def test_reactions_and_pins(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    c = bot.client
    general = cid("public", t.general)
    await bot.call(c.conversations_join, channel=general)
    msg = await t.post(t.bob, t.general, "react to me")
    ts = (await bot.call(c.conversations_history, channel=general))["messages"][0]["ts"]
    carol = await t.connect(t.carol, json_mode=True)
    await bot.call(c.reactions_add, channel=general, timestamp=ts, name="tada")
    with pytest.raises(SlackApiError) as twice:
        await bot.call(c.reactions_add, channel=general, timestamp=ts, name="tada")
    assert twice.value.response["error"] == "already_reacted"
    got = await bot.call(c.reactions_get, channel=general, timestamp=ts)
    assert got["message"]["reactions"] == [{"name": "tada", "users": [bot.user_id], "count": 1}]
    native_msg = await expect(t.bob.api, "GET", t.m(t.general, msg["id"]), 200)
    assert native_msg["reactions"][0]["user_ids"] == [native(bot.user_id)]
    await bot.call(c.reactions_remove, channel=general, timestamp=ts, name="tada")
    with pytest.raises(SlackApiError) as none:
        await bot.call(c.reactions_remove, channel=general, timestamp=ts, name="tada")
    assert none.value.response["error"] == "no_reaction"
    await bot.call(c.pins_add, channel=general, timestamp=ts)
    with pytest.raises(SlackApiError) as pinned:
        await bot.call(c.pins_add, channel=general, timestamp=ts)
    assert pinned.value.response["error"] == "already_pinned"
    pins = await bot.call(c.pins_list, channel=general)
    assert [(i["message"]["ts"], i["created_by"]) for i in pins["items"]] == [(ts, bot.user_id)]
    assert (await expect(t.bob.api, "GET", t.c(t.general, "/pins"), 200))["pins"][0][
        "message"]["id"] == msg["id"]
    await bot.call(c.pins_remove, channel=general, timestamp=ts)
    with pytest.raises(SlackApiError) as unpinned:
        await bot.call(c.pins_remove, channel=general, timestamp=ts)
    assert unpinned.value.response["error"] == "no_pin"
    kinds = [e["t"] for e in await drain(carol)]
    assert kinds == ["reaction.added", "reaction.removed", "message.pinned", "message.unpinned"]
    with pytest.raises(SlackApiError) as bad:
        await bot.call(c.reactions_add, channel=general, timestamp="1.000001", name="tada")
    assert bad.value.response["error"] == "message_not_found"
    await carol.close()
    await t.close()


async def test_files_upload_v2_shares_the_file(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    c = bot.client
    general = cid("public", t.general)
    await bot.call(c.conversations_join, channel=general)
    root = await bot.call(c.chat_postMessage, channel=general, text="report thread")
    carol = await t.connect(t.carol, json_mode=True)
    data = b"quarterly numbers\n" * 100
    up = await bot.call(c.files_upload_v2, channel=general, content=data,
                        filename="report.txt", title="Q3 report", initial_comment="the report",
                        thread_ts=root["ts"])
    f = up["file"]
    assert f["title"] == "Q3 report" and f["size"] == len(data) and f["mimetype"] == "text/plain"
    created = _created(await drain(carol))
    assert len(created) == 1 and created[0]["text"] == "the report"
    assert created[0]["thread_root_id"] is not None
    assert [x["id"] for x in created[0]["files"]] == [native(f["id"])]
    info = await bot.call(c.files_info, file=f["id"])
    assert info["file"]["name"] == "report.txt"
    # url_private: the bytes for the bot token.
    import httpx

    async with httpx.AsyncClient() as http:
        got = await http.get(f["url_private"], headers={"authorization": f"Bearer {bot.token}"})
        assert got.status_code == 200 and got.content == data
        anon = await http.get(f["url_private"])
        assert anon.status_code == 401
    download = await t.carol.api.http.get(t.w(f"/files/{native(f['id'])}/download"))
    assert download.content == data
    await bot.call(c.files_delete, file=f["id"])
    assert (await t.carol.api.http.get(t.w(f"/files/{native(f['id'])}"))).status_code == 404
    await carol.close()
    await t.close()


async def test_ephemeral_reaches_one_user_and_is_never_stored(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    c = bot.client
    general = cid("public", t.general)
    await bot.call(c.conversations_join, channel=general)
    carol = await t.connect(t.carol, json_mode=True)
    bob = await t.connect(t.bob, json_mode=True)
    r = await bot.call(c.chat_postEphemeral, channel=general, user=uid(t.carol.id),
                       text="only you", blocks=[{"type": "divider"}])
    assert r["message_ts"]
    mine = [e for e in await drain(carol) if e["t"] == "message.ephemeral"]
    assert [(e["d"]["text"], e["d"]["blocks"], e["d"]["bot_id"]) for e in mine] == [
        ("only you", [{"type": "divider"}], native(bot.bot_id))]
    assert "seq" not in mine[0]["d"]
    assert not [e for e in await drain(bob) if e["t"].startswith("message.")]
    assert (await expect(t.ada.api, "GET", t.c(t.general, "/messages"), 200))["messages"] == []
    with pytest.raises(SlackApiError) as outsider:  # Eve is in another workspace
        await bot.call(c.chat_postEphemeral, channel=general, user=uid(t.eve.id), text="x")
    assert outsider.value.response["error"] == "user_not_found"
    quiet = cid("public", await t.channel(t.ada, "quiet"))  # Carol is not in it
    await bot.call(c.conversations_join, channel=quiet)
    with pytest.raises(SlackApiError) as not_there:
        await bot.call(c.chat_postEphemeral, channel=quiet, user=uid(t.carol.id), text="x")
    assert not_there.value.response["error"] == "user_not_in_channel"
    await carol.close()
    await bob.close()
    await t.close()


async def test_async_client_sends_reads_as_get(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    ac = AsyncWebClient(base_url=base_url(parley), token=bot.token)
    listed = await ac.conversations_list()
    assert [ch["name"] for ch in listed["channels"]] == ["general"]
    me = await ac.auth_test()
    assert me["user_id"] == bot.user_id
    await ac.conversations_join(channel=cid("public", t.general))
    posted = await ac.chat_postMessage(channel=cid("public", t.general), text="async")
    hist = await ac.conversations_history(channel=cid("public", t.general))
    assert hist["messages"][0]["ts"] == posted["ts"]
    await t.close()


async def test_rate_limit_answers_429_and_the_retry_handler_recovers(parley: Running) -> None:
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    t, bot = await team_with_bot(parley)
    general = cid("public", t.general)
    await bot.call(bot.client.conversations_join, channel=general)
    import dataclasses

    parley.rt.services.settings = dataclasses.replace(
        parley.rt.services.settings, webapi_post_per_channel_per_s=1.0, webapi_post_burst=1)
    plain = bot.client
    await bot.call(plain.chat_postMessage, channel=general, text="first")
    with pytest.raises(SlackApiError) as limited:
        await bot.call(plain.chat_postMessage, channel=general, text="too soon")
    resp = limited.value.response
    assert resp.status_code == 429 and resp["error"] == "ratelimited"
    assert int(resp.headers["Retry-After"]) >= 1
    patient = WebClient(base_url=base_url(parley), token=bot.token,
                        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])
    started = time.monotonic()
    ok = await bot.call(patient.chat_postMessage, channel=general, text="after waiting")
    assert ok["ok"] and time.monotonic() - started >= 1.0
    texts = [m["text"] for m in (await expect(t.bob.api, "GET", t.c(t.general, "/messages"),
                                              200))["messages"]]
    assert texts == ["first", "after waiting"]
    await t.close()


async def test_a_bolt_app_starts_and_posts_against_parley(parley: Running) -> None:
    """slack_bolt's App verifies its token with auth.test at start-up and keeps
    the bot's ids; its client then works like any WebClient."""
    import asyncio

    from slack_bolt import App

    t, bot = await team_with_bot(parley)
    general = cid("public", t.general)

    def start_and_post() -> tuple[App, str]:
        app = App(client=WebClient(base_url=base_url(parley), token=bot.token),
                  signing_secret=bot.signing_secret)
        app.client.conversations_join(channel=general)
        posted = app.client.chat_postMessage(channel=general, text="from bolt")
        return app, str(posted["ts"])

    app, ts = await asyncio.to_thread(start_and_post)
    from slack_bolt.middleware.authorization import SingleTeamAuthorization

    auth = next(m for m in app._middleware_list  # what Bolt verified at start-up
                if isinstance(m, SingleTeamAuthorization))
    assert auth.auth_test_result is not None
    assert (auth.auth_test_result["user_id"], auth.auth_test_result["bot_id"]) == (
        bot.user_id, bot.bot_id)
    texts = [m["text"] for m in (await expect(t.bob.api, "GET", t.c(t.general, "/messages"),
                                              200))["messages"]]
    assert texts == ["from bolt"] and ts
    await t.close()
