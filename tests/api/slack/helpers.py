"""Set-up for the Web API tests: the collaboration cast (tests/api/helpers.py)
plus an app installed by Ada, and slack_sdk's real clients pointed at the
served Parley.  slack_sdk's WebClient is synchronous (urllib), so calls run
in a thread (``Bot.call``) while the server runs on the test's loop."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from parley import slack_ids as ids
from server.runner import Running
from tests.api.helpers import Team, User, expect, make_team

FULL_SCOPES = [
    "chat:write", "channels:read", "channels:history", "channels:join", "channels:manage",
    "groups:read", "groups:history", "groups:write", "im:read", "im:history", "im:write",
    "mpim:read", "mpim:write", "reactions:read", "reactions:write", "users:read",
    "users:read.email", "pins:read", "pins:write", "files:read", "files:write", "team:read",
    "incoming-webhook", "commands",
]


# Request URLs under .invalid (RFC 6761: never resolves), so the Events API's
# url_verification of apps that tests create never leaves the machine.  The
# slash command is named after the app: one installed app per command and
# workspace (parley/actions/commands.py).
def manifest(name: str = "Helper", scopes: list[str] | None = None, *,
             socket_mode: bool = False, bot_name: str | None = None) -> dict[str, Any]:
    return {
        "_metadata": {"major_version": 1},
        "display_information": {"name": name, "description": "A test app"},
        "features": {"bot_user": {"display_name": bot_name or name.lower()},
                     "app_home": {"home_tab_enabled": False},
                     "slash_commands": [{"command": command_of(name), "description": "Deploy",
                                         "url": "https://app.example.invalid/commands",
                                         "usage_hint": "[env]"}]},
        "oauth_config": {"scopes": {"bot": FULL_SCOPES if scopes is None else scopes}},
        "settings": {"event_subscriptions": {"request_url": "https://app.example.invalid/events",
                                             "bot_events": ["app_mention", "message.channels"]},
                     "interactivity": {"is_enabled": True,
                                       "request_url": "https://app.example.invalid/actions"},
                     "socket_mode_enabled": socket_mode, "org_deploy_enabled": False},
    }


def command_of(app_name: str) -> str:
    return "/" + (re.sub(r"[^a-z0-9_-]+", "-", app_name.lower()).strip("-") or "app")[:31]


@dataclass
class Bot:
    """An installed app: its native records and a WebClient with its token."""

    running: Running
    app: dict[str, Any]
    token: str
    app_token: str | None
    signing_secret: str
    client: WebClient

    @property
    def user_id(self) -> str:
        uid: str = self.app["slack"]["bot_user_id"]
        return uid

    @property
    def bot_id(self) -> str:
        bid: str = self.app["slack"]["bot_id"]
        return bid

    async def call(self, fn: Callable[..., SlackResponse], **kw: Any) -> SlackResponse:
        return await asyncio.to_thread(fn, **kw)


def base_url(running: Running) -> str:
    return f"http://127.0.0.1:{running.api_port}/api/"


def relax_limits(running: Running, **more: Any) -> None:
    """Rate limits out of the way (a test of them sets its own)."""
    running.rt.services.settings = dataclasses.replace(
        running.rt.services.settings, rest_rate_per_s=10_000.0, rest_burst=10_000,
        webapi_tier_scale=1_000.0, webapi_post_per_channel_per_s=1_000.0,
        webapi_post_burst=10_000, **more)


async def install(owner: User, ws: str, m: dict[str, Any], running: Running,
                  **install_body: Any) -> tuple[Bot, dict[str, Any]]:
    created = await expect(owner.api, "POST", f"/v1/workspaces/{ws}/apps", 201,
                           json={"manifest": m})
    app_id = created["app"]["id"]
    done = await expect(owner.api, "POST", f"/v1/workspaces/{ws}/apps/{app_id}/install", 200,
                        json=install_body)
    client = WebClient(base_url=base_url(running), token=done["bot_token"], timeout=10)
    return Bot(running, done["app"], done["bot_token"], done["app_token"],
               created["signing_secret"], client), done


async def team_with_bot(running: Running, m: dict[str, Any] | None = None) -> tuple[Team, Bot]:
    relax_limits(running)
    t = await make_team(running)
    bot, _ = await install(t.ada, t.ws, m or manifest(), running)
    return t, bot


def cid(kind: str, channel_id: str) -> str:
    """A native channel id (decimal string) in the Web API's shape."""
    return ids.channel(kind, int(channel_id))


def uid(user_id: str) -> str:
    return ids.user(int(user_id))


def native(slack_id: str) -> str:
    n = ids.dec(slack_id[1:])
    assert n is not None, slack_id
    return str(n)
