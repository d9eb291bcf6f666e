"""Isolation through the Web API: a bot of another workspace learns nothing
about Acme's channels, messages, users or files; a bot of Acme sees only
what a member sees and reads only the channels it is in; a revoked token
and an uninstalled app's tokens stop at once, on every method."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError

from api.slack import registry
from server.runner import Running
from tests.api.helpers import drain, expect
from tests.api.slack.helpers import Bot, cid, install, manifest, native, team_with_bot, uid


async def _error(bot: Bot, method: str, params: dict[str, Any]) -> str:
    try:
        resp = await bot.call(bot.client.api_call, api_method=method, params=params)
    except SlackApiError as exc:
        return str(exc.response["error"])
    raise AssertionError(f"{method} answered ok: {resp.data}")


def _channel_calls(channel: str, ts: str, user: str) -> dict[str, dict[str, Any]]:
    """Every method that names a conversation, with a real message of it."""
    return {
        "conversations.info": {"channel": channel},
        "conversations.history": {"channel": channel},
        "conversations.replies": {"channel": channel, "ts": ts},
        "conversations.join": {"channel": channel},
        "conversations.invite": {"channel": channel, "users": user},
        "conversations.kick": {"channel": channel, "user": user},
        "conversations.leave": {"channel": channel},
        "conversations.members": {"channel": channel},
        "conversations.mark": {"channel": channel, "ts": ts},
        "conversations.open": {"channel": channel},
        "chat.postMessage": {"channel": channel, "text": "pwned"},
        "chat.update": {"channel": channel, "ts": ts, "text": "pwned"},
        "chat.delete": {"channel": channel, "ts": ts},
        "chat.postEphemeral": {"channel": channel, "user": user, "text": "pwned"},
        "chat.getPermalink": {"channel": channel, "message_ts": ts},
        "reactions.add": {"channel": channel, "timestamp": ts, "name": "eyes"},
        "reactions.remove": {"channel": channel, "timestamp": ts, "name": "eyes"},
        "reactions.get": {"channel": channel, "timestamp": ts},
        "pins.add": {"channel": channel, "timestamp": ts},
        "pins.remove": {"channel": channel, "timestamp": ts},
        "pins.list": {"channel": channel},
    }


async def test_a_bot_of_another_workspace_gets_channel_not_found(parley: Running) -> None:
    t, acme = await team_with_bot(parley)
    general = cid("public", t.general)
    await acme.call(acme.client.conversations_join, channel=general)
    posted = await acme.call(acme.client.chat_postMessage, channel=general, text="classified")
    secret = cid("private", await t.channel(t.bob, "secret", "private"))
    upload = await acme.call(acme.client.files_upload_v2, channel=general, content=b"plans",
                             filename="plans.txt")
    rival, _ = await install(t.eve, t.other, manifest("Rival"), parley)
    before = await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200)

    failures = []
    for channel in (general, secret):
        for method, params in _channel_calls(channel, posted["ts"], uid(t.bob.id)).items():
            got = await _error(rival, method, params)
            if got != "channel_not_found":
                failures.append(f"{method} on {channel}: {got}")
    assert not failures, failures
    assert await _error(rival, "files.completeUploadExternal", {
        "files": f'[{{"id": "{upload["file"]["id"]}"}}]', "channel_id": general}) in {
        "channel_not_found", "file_not_found"}
    for method, params, expected in (
            ("users.info", {"user": uid(t.bob.id)}, "user_not_found"),
            ("users.info", {"user": acme.user_id}, "user_not_found"),
            ("bots.info", {"bot": acme.bot_id}, "bot_not_found"),
            ("files.info", {"file": upload["file"]["id"]}, "file_not_found"),
            ("files.delete", {"file": upload["file"]["id"]}, "file_not_found"),
            ("users.lookupByEmail", {"email": "bob@example.com"}, "users_not_found"),
            ("team.info", {"team": acme.app["slack"]["team_id"]}, "team_not_found")):
        assert await _error(rival, method, params) == expected, (method, params)
    listed = await rival.call(rival.client.conversations_list,
                              types="public_channel,private_channel,im,mpim")
    assert [ch["id"] for ch in listed["channels"]] == [cid("public", t.other_general)]
    users = await rival.call(rival.client.users_list)
    assert {m["id"] for m in users["members"]} == {uid(t.eve.id), rival.user_id}
    # Acme is untouched.
    assert await expect(t.bob.api, "GET", t.c(t.general, "/messages"), 200) == before
    await t.close()


async def test_a_bot_sees_what_a_member_sees_and_reads_only_its_channels(
        parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    secret = cid("private", await t.channel(t.bob, "secret", "private"))
    posted = await t.post(t.bob, t.general, "in general")
    general = cid("public", t.general)
    # Public metadata yes, content no, until it joins; private: not at all.
    info = await bot.call(bot.client.conversations_info, channel=general)
    assert info["channel"]["is_member"] is False
    assert await _error(bot, "conversations.history", {"channel": general}) == "not_in_channel"
    assert await _error(bot, "chat.postMessage", {"channel": general, "text": "x"}) == (
        "not_in_channel")
    for method, params in _channel_calls(secret, "1.000001", uid(t.bob.id)).items():
        assert await _error(bot, method, params) == "channel_not_found", method
    await bot.call(bot.client.conversations_join, channel=general)
    hist = await bot.call(bot.client.conversations_history, channel=general)
    assert [m["text"] for m in hist["messages"]] == [posted["text"]]
    assert await _error(bot, "conversations.join", {"channel": secret}) == "channel_not_found"
    await t.close()


async def test_revoked_and_uninstalled_tokens_stop_at_once_on_every_method(
        parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    general = cid("public", t.general)
    await bot.call(bot.client.conversations_join, channel=general)
    revoked = await bot.call(bot.client.auth_revoke)
    assert revoked["revoked"] is True
    every = sorted(registry.REGISTRY)
    for method in every:
        assert await _error(bot, method, {"channel": general}) == "token_revoked", method
    # Uninstalling revokes every token of a fresh install and takes the bot out.
    again = await expect(t.ada.api, "POST", t.w(f"/apps/{native(bot.app['slack']['app_id'])}"
                                                f"/install"), 200, json={})
    bot.client.token = again["bot_token"]
    await bot.call(bot.client.conversations_join, channel=general)
    carol = await t.connect(t.carol, json_mode=True)
    await expect(t.ada.api, "POST", t.w(f"/apps/{again['app']['id']}/uninstall"), 200)
    evs = await drain(carol)
    assert {(e["t"], e["d"]["user_id"]) for e in evs if e["t"] == "channel.member_left"} == {
        ("channel.member_left", native(bot.user_id))}
    for method in every:
        assert await _error(bot, method, {"channel": general}) == "token_revoked", method
    members = await expect(t.bob.api, "GET", t.c(t.general, "/members"), 200)
    assert native(bot.user_id) not in {m["user_id"] for m in members["members"]}
    tokens = await expect(t.ada.api, "GET", t.w(f"/apps/{again['app']['id']}/tokens"), 200)
    assert [tok["revoked"] for tok in tokens["tokens"]] == [True, True]
    await carol.close()
    await t.close()


async def test_app_level_tokens_only_identify_the_app(parley: Running) -> None:
    t, _ = await team_with_bot(parley)
    sock, done = await install(t.ada, t.ws, manifest("Sockets", socket_mode=True), parley)
    assert done["app_token"].startswith("xapp-") and done["bot_token"].startswith("xoxb-")
    sock.client.token = done["app_token"]
    me = await sock.call(sock.client.auth_test)
    assert me["app_id"] == sock.app["slack"]["app_id"]
    assert await _error(sock, "chat.postMessage", {"channel": cid("public", t.general),
                                                   "text": "x"}) == "not_allowed_token_type"
    await t.close()
