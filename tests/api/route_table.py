"""Every route of /openapi.json and how the isolation tests call it.

Shared by ``test_tenant_isolation.py`` (another workspace's ids must answer
404) and ``test_refusals.py`` (an object the caller cannot see must answer
exactly like a made-up id).  Both enumerate the spec and fail on a route
that is in neither ``MATRIX`` nor ``UNSCOPED``, so a new route is covered
(or explicitly excused) before it ships.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Ids = dict[str, str]
Body = Callable[[Ids], dict[str, Any] | None]


def _none(_: Ids) -> None:
    return None


def _empty(_: Ids) -> dict[str, Any]:
    return {}


# Routes that take no workspace-scoped id: why each is safe.
UNSCOPED: dict[str, str] = {
    "GET /healthz": "no data",
    "GET /readyz": "no data",
    "POST /v1/auth/register": "creates an account; no tenant ids",
    "POST /v1/auth/login": "no tenant ids",
    "POST /v1/auth/refresh": "a token of the caller's own session",
    "POST /v1/auth/logout": "the caller's own session",
    "GET /v1/me": "the caller's own account",
    "GET /v1/workspaces": "lists only the caller's workspaces (checked below)",
    "POST /v1/workspaces": "creates a new tenant",
    "POST /v1/invites/accept": "the token names its workspace; knowing it is the grant "
                               "(a forged token is checked below)",
    "GET /v1/blobs/{key}": "a signed URL of the local blob store: the signature is the grant, "
                           "issued only after authorization (tests/api/test_routes_files.py)",
    "PUT /v1/blobs/{key}": "a signed upload URL of the local blob store: the signature is the "
                           "grant for one key (tests/api/test_routes_files.py)",
    "POST /upload/v1/{ticket}": "a signed upload URL of the Web API: the signature is the grant "
                                "for one file (tests/api/slack/test_web_api.py)",
    "POST /services/{team}/{hook}/{secret}": "an incoming webhook: the URL's secret is the grant "
                                             "(tests/api/slack/test_webhooks.py)",
    "POST /commands/{team}/{ref}/{secret}": "a slash command's or an interaction's "
                                               "response_url: the URL's secret is the grant "
                                               "(tests/api/slack/test_commands.py, "
                                               "test_interactions.py)",
    "GET /files-pri/{team_file}/{name}": "authenticated by an app token, scoped to its workspace "
                                         "(tests/api/slack/test_isolation.py)",
}
# The Web API's methods take no workspace id: the token names the workspace.
# Their isolation (a bot of another workspace, every method) is checked by
# tests/api/slack/test_isolation.py.
TOKEN_SCOPED_PREFIX = "/api/"
# Routes that answer in Slack's conventions (HTTP 200 with ``ok: false``, or
# Slack's webhook statuses and text), not Parley's error envelope: their
# bad input is tested by tests/api/slack/test_errors.py and test_webhooks.py.
SLACK_SHAPED_PREFIXES = (TOKEN_SCOPED_PREFIX, "/upload/", "/services/", "/files-pri/",
                         "/commands/")

_MANIFEST = {"display_information": {"name": "Intruder"},
             "oauth_config": {"scopes": {"bot": ["chat:write", "incoming-webhook"]}}}

# Workspace-scoped routes: the request body to send (with Acme's ids where
# the body carries ids).
MATRIX: dict[str, Body] = {
    "GET /v1/workspaces/{workspace_id}": _none,
    "GET /v1/workspaces/{workspace_id}/members": _none,
    "POST /v1/workspaces/{workspace_id}/members": lambda i: {"email": "bob@example.com"},
    "PATCH /v1/workspaces/{workspace_id}/members/{user_id}": lambda i: {"role": "guest"},
    "POST /v1/workspaces/{workspace_id}/members/{user_id}/deactivate": _none,
    "POST /v1/workspaces/{workspace_id}/leave": _none,
    "POST /v1/workspaces/{workspace_id}/invites": _empty,
    "GET /v1/workspaces/{workspace_id}/invites": _none,
    "DELETE /v1/workspaces/{workspace_id}/invites/{invite_id}": _none,
    "POST /v1/workspaces/{workspace_id}/connect-ticket": _none,
    "POST /v1/workspaces/{workspace_id}/channels": lambda i: {"name": "intruder"},
    "GET /v1/workspaces/{workspace_id}/channels": _none,
    "GET /v1/workspaces/{workspace_id}/channels/public": _none,
    "POST /v1/workspaces/{workspace_id}/dms": lambda i: {"user_ids": [i["user_id"]]},
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}": _none,
    "PATCH /v1/workspaces/{workspace_id}/channels/{channel_id}": lambda i: {"topic": "pwned"},
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/archive": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/unarchive": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/make-private": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/join": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/leave": _none,
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}/members": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/members":
        lambda i: {"user_ids": [i["user_id"]]},
    "DELETE /v1/workspaces/{workspace_id}/channels/{channel_id}/members/{user_id}": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/read": _empty,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/messages":
        lambda i: {"text": "hi", "thread_root_id": i["message_id"]},
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}/messages": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/commands":
        lambda i: {"command": "/deploy", "text": "prod"},
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}": _none,
    "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/actions":
        lambda i: {"action_id": "approve_button"},
    "PATCH /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}":
        lambda i: {"text": "pwned"},
    "DELETE /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}": _none,
    "PUT /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/pin": _none,
    "DELETE /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/pin":
        _none,
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}/pins": _none,
    "PUT /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/reactions/"
    "{emoji}": _none,
    "DELETE /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/"
    "reactions/{emoji}": _none,
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/thread":
        _none,
    "PUT /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/follow":
        _none,
    "DELETE /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}/follow":
        _none,
    "GET /v1/workspaces/{workspace_id}/search": _none,
    "GET /v1/workspaces/{workspace_id}/file-limits": _none,
    "PUT /v1/workspaces/{workspace_id}/file-limits": lambda i: {"max_file_bytes": 1},
    "POST /v1/workspaces/{workspace_id}/files":
        lambda i: {"name": "x.txt", "size": 1, "content_type": "text/plain"},
    "GET /v1/workspaces/{workspace_id}/files/{file_id}": _none,
    "DELETE /v1/workspaces/{workspace_id}/files/{file_id}": _none,
    "POST /v1/workspaces/{workspace_id}/files/{file_id}/complete": _none,
    "PUT /v1/workspaces/{workspace_id}/files/{file_id}/content": _none,
    "GET /v1/workspaces/{workspace_id}/files/{file_id}/download": _none,
    "GET /v1/workspaces/{workspace_id}/files/{file_id}/thumbnail": _none,
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}/files": _none,
    "POST /v1/workspaces/{workspace_id}/apps": lambda i: {"manifest": _MANIFEST},
    "GET /v1/workspaces/{workspace_id}/apps": _none,
    "GET /v1/workspaces/{workspace_id}/apps/{app_id}": _none,
    "PATCH /v1/workspaces/{workspace_id}/apps/{app_id}": lambda i: {"manifest": _MANIFEST},
    "DELETE /v1/workspaces/{workspace_id}/apps/{app_id}": _none,
    "POST /v1/workspaces/{workspace_id}/apps/{app_id}/install":
        lambda i: {"webhook_channel_id": i["channel_id"]},
    "POST /v1/workspaces/{workspace_id}/apps/{app_id}/uninstall": _none,
    "POST /v1/workspaces/{workspace_id}/apps/{app_id}/signing-secret": _empty,
    "POST /v1/workspaces/{workspace_id}/apps/{app_id}/events/enable": _none,
    "GET /v1/workspaces/{workspace_id}/apps/{app_id}/tokens": _none,
    "DELETE /v1/workspaces/{workspace_id}/apps/{app_id}/tokens/{token_id}": _none,
    "POST /v1/workspaces/{workspace_id}/apps/{app_id}/webhooks":
        lambda i: {"channel_id": i["channel_id"]},
    "GET /v1/workspaces/{workspace_id}/apps/{app_id}/webhooks": _none,
    "DELETE /v1/workspaces/{workspace_id}/apps/{app_id}/webhooks/{webhook_id}": _none,
}

# Query parameters that carry ids, per route (sent with Acme's ids).
QUERY_IDS: dict[str, dict[str, str]] = {
    "GET /v1/workspaces/{workspace_id}/search": {"channel_id": "channel_id"},
}
QUERY_BASE: dict[str, dict[str, str]] = {
    "GET /v1/workspaces/{workspace_id}/search": {"q": "classified"},
}

PARAM = re.compile(r"{(\w+)}")


def fill(path: str, ids: Ids) -> str:
    return PARAM.sub(lambda m: ids[m.group(1)], path)


def spec_routes(spec: dict[str, Any]) -> list[str]:
    """``METHOD /path`` of every operation in an OpenAPI document, but the
    Web API's (``TOKEN_SCOPED_PREFIX``: tested by tests/api/slack/)."""
    return [f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops
            if not path.startswith(TOKEN_SCOPED_PREFIX)]


async def install_app(user: Any, ws: str, channel: str, name: str) -> Ids:
    """An installed app of ``ws`` with a webhook into ``channel``, through the
    API: its ``app_id``, first ``token_id`` and ``webhook_id``."""
    from tests.api.helpers import expect

    manifest = {"display_information": {"name": name},
                "oauth_config": {"scopes": {"bot": ["chat:write", "incoming-webhook"]}}}
    app = await expect(user.api, "POST", f"/v1/workspaces/{ws}/apps", 201,
                       json={"manifest": manifest})
    app_id = app["app"]["id"]
    await expect(user.api, "POST", f"/v1/workspaces/{ws}/apps/{app_id}/install", 200,
                 json={"webhook_channel_id": channel})
    tokens = await expect(user.api, "GET", f"/v1/workspaces/{ws}/apps/{app_id}/tokens", 200)
    hooks = await expect(user.api, "GET", f"/v1/workspaces/{ws}/apps/{app_id}/webhooks", 200)
    return {"app_id": app_id, "token_id": tokens["tokens"][0]["id"],
            "webhook_id": hooks["webhooks"][0]["id"]}
