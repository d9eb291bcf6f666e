"""The tenant-isolation matrix: every route of /openapi.json is called with
another workspace's ids, and each must refuse (404, like an id that does not
exist).  The route list comes from the OpenAPI document, so a new route that
is not in ``MATRIX`` fails this test until someone decides how it is checked.

Eve owns workspace "other" (every permission there).  She attacks Acme:

* with Acme's workspace id and Acme's channel/message/user/invite ids;
* with her own workspace id and Acme's channel/message/user/invite ids
  (the ids are real, only in the wrong tenant);
* with her own workspace and channel, but Acme's ids in the body or query.

Afterwards Acme's data must be exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from parley.runner import Running
from tests.api.helpers import Team, User, expect, make_team

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
    "GET /files-pri/{team_file}/{name}": "authenticated by an app token, scoped to its workspace "
                                         "(tests/api/slack/test_isolation.py)",
}
# The Web API's methods take no workspace id: the token names the workspace.
# Their isolation (a bot of another workspace, every method) is checked by
# tests/api/slack/test_isolation.py.
TOKEN_SCOPED_PREFIX = "/api/"

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
    "GET /v1/workspaces/{workspace_id}/channels/{channel_id}/messages/{message_id}": _none,
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

_PARAM = re.compile(r"{(\w+)}")


def _fill(path: str, ids: Ids) -> str:
    return _PARAM.sub(lambda m: ids[m.group(1)], path)


async def _file(user: User, ws: str, data: bytes) -> str:
    """A ready file, uploaded through the API."""
    started = await expect(user.api, "POST", f"/v1/workspaces/{ws}/files", 201,
                           json={"name": "plan.txt", "size": len(data),
                                 "content_type": "text/plain"})
    await expect(user.api, "PUT", started["content_url"], 200, content=data)
    fid: str = started["file"]["id"]
    return fid


async def _app(user: User, ws: str, channel: str, name: str) -> Ids:
    """An installed app with a webhook, through the API."""
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


async def _acme(t: Team) -> Ids:
    secret = await t.channel(t.bob, "secret", "private", members=(t.carol,))
    msg = await t.post(t.bob, secret, "classified")
    await t.post(t.bob, t.general, "classified general")
    invite = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={})
    file_id = await _file(t.bob, t.ws, b"classified file")
    await t.post(t.bob, secret, "the file", file_ids=[file_id])
    app = await _app(t.ada, t.ws, t.general, "Acme bot")
    return {"workspace_id": t.ws, "channel_id": secret, "message_id": msg["id"],
            "user_id": t.bob.id, "invite_id": invite["invite"]["id"], "emoji": "tada",
            "general": t.general, "token": invite["token"], "file_id": file_id, **app}


async def _eve(t: Team) -> Ids:
    msg = await expect(t.eve.api, "POST", t.c(t.other_general, "/messages", t.other), 201,
                       json={"text": "eve's own"})
    invite = await expect(t.eve.api, "POST", t.w("/invites", t.other), 201, json={})
    file_id = await _file(t.eve, t.other, b"eve's file")
    app = await _app(t.eve, t.other, t.other_general, "Eve bot")
    return {"workspace_id": t.other, "channel_id": t.other_general, "message_id": msg["id"],
            "user_id": t.eve.id, "invite_id": invite["invite"]["id"], "emoji": "tada",
            "file_id": file_id, **app}


async def _snapshot(t: Team, acme: Ids) -> Any:
    """What Acme looks like to its own members."""
    return (
        await expect(t.bob.api, "GET", t.c(acme["channel_id"], "/messages"), 200),
        await expect(t.bob.api, "GET", t.c(acme["channel_id"]), 200),
        await expect(t.bob.api, "GET", t.c(acme["channel_id"], "/members"), 200),
        await expect(t.bob.api, "GET", t.c(acme["channel_id"], "/pins"), 200),
        await expect(t.ada.api, "GET", t.w("/members"), 200),
        await expect(t.ada.api, "GET", t.w("/invites"), 200),
        await expect(t.bob.api, "GET", t.w(f"/files/{acme['file_id']}"), 200),
        (await t.bob.api.http.get(t.w(f"/files/{acme['file_id']}/download"))).content,
        await expect(t.bob.api, "GET", t.c(acme["channel_id"], "/files"), 200),
        await expect(t.ada.api, "GET", t.w("/file-limits"), 200),
        await expect(t.ada.api, "GET", t.w("/apps"), 200),
        await expect(t.ada.api, "GET", t.w(f"/apps/{acme['app_id']}/tokens"), 200),
        await expect(t.ada.api, "GET", t.w(f"/apps/{acme['app_id']}/webhooks"), 200),
        sorted(c["name"] for c in (await expect(t.ada.api, "GET", t.w("/channels"), 200,
                                                params={"include_public": "true"}))["channels"]),
    )


async def test_every_route_refuses_another_workspaces_ids(parley: Running) -> None:
    t = await make_team(parley)
    acme = await _acme(t)
    eve = await _eve(t)
    before = await _snapshot(t, acme)
    spec = await expect(t.eve.api, "GET", "/openapi.json", 200)
    routes = [f"{method.upper()} {path}" for path, ops in spec["paths"].items()
              for method in ops]
    missing = [r for r in routes if r not in MATRIX and r not in UNSCOPED
               and not r.split(" ", 1)[1].startswith(TOKEN_SCOPED_PREFIX)]
    assert not missing, f"routes missing from the tenant-isolation matrix: {missing}"
    stale = [r for r in (*MATRIX, *UNSCOPED) if r not in routes]
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"

    failures: list[str] = []
    checked = 0
    for route, body_of in MATRIX.items():
        method, path = route.split(" ", 1)
        names = _PARAM.findall(path)
        attempts: list[tuple[str, Ids, Ids]] = [("acme ids", acme, acme)]
        if len(names) > 1:  # her own workspace, Acme's other ids
            attempts.append(("own workspace", {**acme, "workspace_id": eve["workspace_id"]},
                             acme))
        if route in QUERY_IDS or body_of(acme) != body_of(eve):  # ids in the body or query
            attempts.append(("own ids, acme body/query", eve, acme))
        for label, path_ids, payload_ids in attempts:
            params = dict(QUERY_BASE.get(route, {}))
            params.update({k: payload_ids[v] for k, v in QUERY_IDS.get(route, {}).items()})
            body = body_of(payload_ids)
            resp = await t.eve.api.http.request(method, _fill(path, path_ids), params=params,
                                                json=body)
            checked += 1
            if resp.status_code != 404:
                failures.append(f"{route} [{label}] -> {resp.status_code} {resp.text[:200]}")
    assert not failures, "\n".join(failures)
    assert checked > len(MATRIX)

    # Unscoped routes: only her own things.
    mine = await expect(t.eve.api, "GET", "/v1/workspaces", 200)
    assert [w["id"] for w in mine["workspaces"]] == [t.other]
    forged = acme["token"].split(".")[1]
    await expect(t.eve.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                 json={"token": f"{t.other}.{forged}"})  # Acme's secret under her id
    await expect(t.eve.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                 json={"token": f"{t.ws}.{'A' * 32}"})
    # Search from her workspace never shows Acme's messages.
    hits = await expect(t.eve.api, "GET", t.w("/search", t.other), 200,
                        params={"q": "classified", "user_id": t.bob.id})
    assert hits["messages"] == []
    # And Acme is untouched.
    assert await _snapshot(t, acme) == before
    await t.close()


async def test_gateway_refuses_another_workspace(parley: Running) -> None:
    import pytest
    import websockets

    t = await make_team(parley)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await t.connect(t.eve, t.ws)
    assert refused.value.response.status_code == 404
    ws = await t.connect(t.eve, t.other)
    await ws.send_cmd("send", {"channel_id": t.general, "text": "hi"})
    err = await ws.recv_type("error")
    assert err["d"]["code"] == "channel_not_found"
    await ws.close()
    await t.close()
