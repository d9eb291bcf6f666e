"""The Events API against the real slack_bolt: the documentation's
``app.message("hello")`` app, unchanged apart from its WebClient's base
URL, served in HTTP mode by Bolt's own adapter on loopback.  Bolt checks
every request's signature itself (it answers 401 otherwise), so a reply
proves the signature too."""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from server.runner import Running
from tests.api.helpers import expect
from tests.api.slack.events_helpers import BoltServer, free_port, point_events
from tests.api.slack.helpers import base_url, cid, team_with_bot


async def test_bolt_hello_app_replies_in_the_channel(parley: Running) -> None:
    t, bot = await team_with_bot(parley)
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    seen: list[dict[str, Any]] = []

    def make_app() -> App:
        # As in Bolt's documentation; only the client's base URL is Parley's.
        app = App(client=WebClient(base_url=base_url(parley), token=bot.token),
                  signing_secret=bot.signing_secret)

        @app.message("hello")
        def message_hello(message: dict[str, Any], say: Any) -> None:
            seen.append(message)
            say("Hi there!")

        return app

    app = await asyncio.to_thread(make_app)  # App() calls auth.test, a blocking request
    server = BoltServer(app, free_port()).start()
    try:
        shown = await point_events(t.ada, t.ws, bot, server.url)
        assert shown["event_request_url_verified"] is True  # Bolt echoed the challenge
        carol = await t.connect(t.carol, json_mode=True)
        posted = await t.post(t.bob, t.general, "hello")
        reply = None
        async with asyncio.timeout(15):
            while reply is None:
                ev = await carol.recv(timeout=15)
                if ev.get("t") == "message.created" and ev["d"]["text"] == "Hi there!":
                    reply = ev["d"]
        assert reply["bot_id"] is not None and reply["seq"] > posted["seq"]
        page = await expect(t.carol.api, "GET", t.c(t.general, "/messages"), 200)
        texts = {m["seq"]: m["text"] for m in page["messages"]}
        assert texts[posted["seq"]] == "hello" and texts[reply["seq"]] == "Hi there!"
        assert len(seen) == 1 and seen[0]["user"] == "U" + _b36(t.bob.id)
        assert seen[0]["channel"] == cid("public", t.general)
        assert seen[0]["channel_type"] == "channel"
        await asyncio.sleep(0.5)  # the bot's own reply reaches Bolt too, which ignores it
        assert len(seen) == 1
        await carol.close()
    finally:
        await asyncio.to_thread(server.stop)
        await t.close()


def _b36(decimal_id: str) -> str:
    from parley import slack_ids

    return slack_ids.enc(int(decimal_id))
