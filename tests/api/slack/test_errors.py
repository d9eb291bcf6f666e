"""The Web API's conventions for bad calls: Slack's error strings (HTTP 200,
``ok: false``), ``missing_scope`` with ``needed`` and ``provided``, the
token's places, and never a 500 for bad input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from slack_sdk.errors import SlackApiError

from server.runner import Running
from tests.api.helpers import expect
from tests.api.slack.helpers import Bot, base_url, cid, install, manifest, team_with_bot, uid


async def _error(bot: Bot, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        resp = await bot.call(bot.client.api_call, api_method=method, json=params or {})
    except SlackApiError as exc:
        data: dict[str, Any] = exc.response.data
        return data
    raise AssertionError(f"{method} answered ok: {resp.data}")


async def test_slack_error_strings(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    general = cid("public", t.general)
    await bot.call(bot.client.conversations_join, channel=general)
    by_carol = await t.post(t.carol, t.general, "mine")
    carol_ts = (await bot.call(bot.client.conversations_history,
                               channel=general))["messages"][0]["ts"]
    archived = await t.channel(t.ada, "old")
    await bot.call(bot.client.conversations_join, channel=cid("public", archived))
    await expect(t.ada.api, "POST", t.c(archived, "/archive"), 200)
    cases = [
        ("chat.postMessage", {"channel": general}, "no_text"),
        ("chat.postMessage", {"channel": general, "text": "x" * 40_001}, "msg_too_long"),
        ("chat.postMessage", {"channel": "C0", "text": "x"}, "channel_not_found"),
        ("chat.postMessage", {"channel": "nonsense", "text": "x"}, "channel_not_found"),
        ("chat.postMessage", {"channel": cid("public", archived), "text": "x"}, "is_archived"),
        ("chat.postMessage", {"channel": general, "text": "x", "thread_ts": "12.000001"},
         "message_not_found"),
        ("chat.postMessage", {"channel": general, "blocks": "not json"}, "invalid_arguments"),
        ("chat.postMessage", {"channel": general, "blocks": [1, 2]}, "invalid_blocks"),
        ("chat.postMessage", {"channel": general, "text": "x", "attachments": {"a": 1}},
         "invalid_attachments"),
        ("chat.update", {"channel": general, "ts": carol_ts, "text": "x"},
         "cant_update_message"),
        ("chat.delete", {"channel": general, "ts": carol_ts}, "cant_delete_message"),
        ("chat.update", {"channel": general, "ts": "nope", "text": "x"}, "message_not_found"),
        ("conversations.history", {}, "invalid_arguments"),
        ("conversations.history", {"channel": general, "cursor": "!!"}, "invalid_cursor"),
        ("conversations.history", {"channel": general, "latest": "yesterday"},
         "invalid_ts_latest"),
        ("conversations.create", {"name": "general"}, "name_taken"),
        ("conversations.create", {"name": "Has Spaces"}, "invalid_name_specials"),
        ("conversations.kick", {"channel": general, "user": uid(t.bob.id)},
         "cant_kick_from_general"),
        ("conversations.list", {"types": "everything"}, "invalid_types"),
        ("reactions.add", {"channel": general, "timestamp": carol_ts, "name": "no spaces!"},
         "invalid_name"),
        ("bots.info", {"bot": "Bnope!"}, "bot_not_found"),
        ("files.info", {"file": "F1"}, "file_not_found"),
    ]
    failures = []
    for method, params, expected in cases:
        got = await _error(bot, method, params)
        if got["error"] != expected:
            failures.append(f"{method} {params}: {got}")
    assert not failures, "\n".join(failures)
    missing = await _error(bot, "conversations.history")
    assert missing["response_metadata"]["messages"] == [
        "[ERROR] missing required field: channel"]
    assert by_carol["text"] == "mine"
    await t.close()


async def test_missing_scope_says_needed_and_provided(parley: Running) -> None:
    t, _ = await team_with_bot(parley)
    bot, _ = await install(t.ada, t.ws, manifest("Narrow", ["chat:write", "channels:read"]),
                           parley)
    got = await _error(bot, "conversations.history", {"channel": cid("public", t.general)})
    assert got["error"] == "missing_scope" and got["provided"] == "chat:write,channels:read"
    assert "channels:history" in got["needed"].split(",")
    private = cid("private", await t.channel(t.ada, "staff", "private"))
    got = await _error(bot, "conversations.create", {"name": "nope", "is_private": True})
    assert got["error"] == "missing_scope" and "groups:write" in got["needed"].split(",")
    assert private.startswith("G")
    assert (await _error(bot, "users.list"))["needed"] == "users:read"
    await t.close()


async def test_tokens_come_from_the_header_or_the_body_never_the_query(
        parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    url = base_url(parley)
    async with httpx.AsyncClient() as http:
        async def post(method: str, **kw: Any) -> httpx.Response:
            return await http.post(url + method, **kw)

        form = await post("auth.test", data={"token": bot.token})
        assert form.status_code == 200 and form.json()["ok"] is True
        assert form.headers["x-oauth-scopes"].startswith("chat:write")
        query = await post("auth.test", params={"token": bot.token})
        assert query.json() == {"ok": False, "error": "not_authed"}
        bad = await post("auth.test", headers={"authorization": "Bearer xoxb-1-2-nope"})
        assert bad.json()["error"] == "invalid_auth"
        forged = bot.token[:-4] + "AAAA"
        assert (await post("auth.test", headers={"authorization": f"Bearer {forged}"})
                ).json()["error"] == "invalid_auth"
        assert (await post("nope.nothing", data={"token": bot.token})).json()["error"] == (
            "unknown_method")
        wrong_verb = await http.get(url + "chat.postMessage",
                                    headers={"authorization": f"Bearer {bot.token}"})
        assert (wrong_verb.status_code, wrong_verb.json()["error"]) == (405,
                                                                       "method_not_allowed")
        # Arguments merge from query and body; multipart works like a form.
        auth = {"authorization": f"Bearer {bot.token}"}
        general = cid("public", t.general)
        await post("conversations.join", headers=auth, params={"channel": general})
        posted = await post("chat.postMessage", headers=auth, params={"channel": general},
                            files={"text": (None, "from multipart")})
        assert posted.json()["message"]["text"] == "from multipart"
        # Bad input is a clear error, never a 500: NUL, lone surrogates, bad JSON.
        ch = json.dumps(general)
        for body, err in (('{"channel": ' + ch + ', "text": "a\\u0000b"}', "invalid_arguments"),
                          ('{"channel": ' + ch + ', "text": "a\\ud800b"}', "invalid_arguments"),
                          ('{"channel": ' + ch + ', "blocks": [{"t": "\\udc00"}]}',
                           "invalid_blocks")):
            r = await post("chat.postMessage", content=body,
                           headers={**auth, "content-type": "application/json"})
            assert r.status_code == 200 and r.json()["error"] == err, body
        for raw, err in ((b"{not json", "invalid_json"), (b"[1]", "json_not_object")):
            r = await post("chat.postMessage", content=raw,
                           headers={**auth, "content-type": "application/json"})
            assert r.json()["error"] == err
        r = await post("chat.postMessage", content=b"text=%FF%FE&channel=" + general.encode(),
                       headers={**auth, "content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200 and r.json()["error"] == "invalid_form_data"
    await t.close()


@pytest.mark.parametrize("text", ["\x00", "a\x00b"])
async def test_nul_in_a_form_post_is_refused(parley: Running, text: str) -> None:
    t, bot = await team_with_bot(parley)
    general = cid("public", t.general)
    await bot.call(bot.client.conversations_join, channel=general)
    with pytest.raises(SlackApiError) as refused:
        await bot.call(bot.client.api_call, api_method="chat.postMessage",
                       data={"channel": general, "text": text})
    assert refused.value.response["error"] == "invalid_arguments"
    assert json.dumps(refused.value.response.data)
    await t.close()
