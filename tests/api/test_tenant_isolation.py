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

from typing import Any

from server.runner import Running
from tests.api.helpers import Team, expect, make_team, upload_file
from tests.api.route_table import (
    MATRIX,
    PARAM,
    QUERY_BASE,
    QUERY_IDS,
    UNSCOPED,
    Ids,
    fill,
    install_app,
    spec_routes,
)


async def _acme(t: Team) -> Ids:
    secret = await t.channel(t.bob, "secret", "private", members=(t.carol,))
    msg = await t.post(t.bob, secret, "classified")
    await t.post(t.bob, t.general, "classified general")
    invite = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={})
    file_id = await upload_file(t.bob, t.ws, b"classified file")
    await t.post(t.bob, secret, "the file", file_ids=[file_id])
    app = await install_app(t.ada, t.ws, t.general, "Acme bot")
    return {"workspace_id": t.ws, "channel_id": secret, "message_id": msg["id"],
            "user_id": t.bob.id, "invite_id": invite["invite"]["id"], "emoji": "tada",
            "general": t.general, "token": invite["token"], "file_id": file_id, **app}


async def _eve(t: Team) -> Ids:
    msg = await expect(t.eve.api, "POST", t.c(t.other_general, "/messages", t.other), 201,
                       json={"text": "eve's own"})
    invite = await expect(t.eve.api, "POST", t.w("/invites", t.other), 201, json={})
    file_id = await upload_file(t.eve, t.other, b"eve's file")
    app = await install_app(t.eve, t.other, t.other_general, "Eve bot")
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
    routes = spec_routes(spec)
    missing = [r for r in routes if r not in MATRIX and r not in UNSCOPED]
    assert not missing, f"routes missing from the tenant-isolation matrix: {missing}"
    stale = [r for r in (*MATRIX, *UNSCOPED) if r not in routes]
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"

    failures: list[str] = []
    checked = 0
    for route, body_of in MATRIX.items():
        method, path = route.split(" ", 1)
        names = PARAM.findall(path)
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
            resp = await t.eve.api.http.request(method, fill(path, path_ids), params=params,
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
    await t.indexed()
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
