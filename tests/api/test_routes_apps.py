"""The native app routes: create from a manifest, read, change, install
(tokens), rotate the signing secret, revoke tokens, uninstall, delete; who
may; and clear errors for bad manifests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from parley.actions import apps
from server.runner import Running
from tests.api.helpers import expect, make_team
from tests.api.slack.helpers import base_url, manifest, relax_limits


async def _auth_test(running: Running, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        r = await http.post(base_url(running) + "auth.test",
                            headers={"authorization": f"Bearer {token}"})
        body: dict[str, Any] = r.json()
        return body


async def test_create_read_change_and_delete(parley: Running) -> None:
    relax_limits(parley)
    t = await make_team(parley)
    created = await expect(t.ann.api, "POST", t.w("/apps"), 201,
                           json={"manifest": manifest("Deployer", bot_name="deploy-bot")})
    app = created["app"]
    assert len(created["signing_secret"]) == 32
    assert (app["name"], app["bot_name"], app["installed"]) == ("Deployer", "deploy-bot", False)
    assert app["slack"]["app_id"].startswith("A") and app["slack"]["bot_id"].startswith("B")
    assert app["manifest"]["features"]["app_home"] == {"home_tab_enabled": False}  # kept
    assert "signing_secret" not in await expect(t.ann.api, "GET", t.w(f"/apps/{app['id']}"), 200)
    listed = await expect(t.ada.api, "GET", t.w("/apps"), 200)
    assert [a["id"] for a in listed["apps"]] == [app["id"]]
    await expect(t.ada.api, "POST", t.w("/apps"), 409, "app_name_taken",
                 json={"manifest": manifest("deployer")})
    changed = manifest("Deployer 2", ["chat:write"], bot_name="deployer")
    patched = await expect(t.ada.api, "PATCH", t.w(f"/apps/{app['id']}"), 200,
                           json={"manifest": changed})
    assert (patched["name"], patched["bot_scopes"]) == ("Deployer 2", ["chat:write"])
    await expect(t.ada.api, "DELETE", t.w(f"/apps/{app['id']}"), 204)
    await expect(t.ada.api, "GET", t.w(f"/apps/{app['id']}"), 404, "app_not_found")
    await expect(t.ada.api, "DELETE", t.w(f"/apps/{app['id']}"), 404, "app_not_found")
    # The name is free again once the app is deleted.
    await expect(t.ada.api, "POST", t.w("/apps"), 201, json={"manifest": manifest("Deployer 2")})
    await t.close()


async def test_only_admins_manage_apps(parley: Running) -> None:
    relax_limits(parley)
    t = await make_team(parley)
    for user in (t.bob, t.gus):
        await expect(user.api, "POST", t.w("/apps"), 403, "permission_denied",
                     json={"manifest": manifest()})
        await expect(user.api, "GET", t.w("/apps"), 403, "permission_denied")
    await expect(t.eve.api, "POST", t.w("/apps"), 404, "workspace_not_found",
                 json={"manifest": manifest()})
    await t.close()


async def test_bad_manifests_name_the_field(parley: Running) -> None:
    relax_limits(parley)
    t = await make_team(parley)
    base = manifest()
    cases: list[tuple[Any, str]] = [
        ({}, "display_information.name: is required"),
        ({**base, "display_information": {"name": "x" * 36}},
         "display_information.name: must have 1 to 35 characters"),
        ({**base, "oauth_config": {"scopes": {"bot": ["chat:write", "chat:wrte"]}}},
         "oauth_config.scopes.bot[1]: unknown scope 'chat:wrte'"),
        ({**base, "features": {"slash_commands": [{"command": "/x", "description": "d"}]}},
         "features.slash_commands[0].url: is required unless Socket Mode is on"),
        ({**base, "features": {"slash_commands": [{"command": "nope", "description": "d",
                                                   "url": "https://x.io"}]}},
         "features.slash_commands[0].command"),
        ({**base, "settings": {"event_subscriptions": {"bot_events": ["app_mention"]}}},
         "settings.event_subscriptions.request_url: is required for events"),
        ({**base, "settings": {"event_subscriptions": {"request_url": "ftp://x.io"}}},
         "settings.event_subscriptions.request_url: must be an absolute http(s) URL"),
        ({**base, "settings": {"socket_mode_enabled": "yes"}},
         "settings.socket_mode_enabled: must be true or false"),
        ({**base, "display_information": {"name": "ok", "description": "a\u0000b"}},
         "NUL"),
    ]
    for body, message in cases:
        r = await t.ada.api.http.post(t.w("/apps"), json={"manifest": body})
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_manifest" and message in err["message"], (message, err)
    # Socket Mode needs no request URLs.
    sockets = manifest("Sockets", socket_mode=True)
    sockets["settings"]["event_subscriptions"].pop("request_url")
    sockets["features"]["slash_commands"][0].pop("url")
    await expect(t.ada.api, "POST", t.w("/apps"), 201, json={"manifest": sockets})
    await t.close()


async def test_install_tokens_and_revocation(parley: Running) -> None:
    relax_limits(parley)
    t = await make_team(parley)
    app = (await expect(t.ada.api, "POST", t.w("/apps"), 201,
                        json={"manifest": manifest("Sockets", socket_mode=True)}))["app"]
    first = await expect(t.ada.api, "POST", t.w(f"/apps/{app['id']}/install"), 200, json={})
    assert first["bot_token"].startswith(f"xoxb-{t.ws}-") and first["app"]["installed"]
    assert first["app_token"].startswith(f"xapp-{t.ws}-")
    assert (await _auth_test(parley, first["bot_token"]))["ok"] is True
    # The bot is a member: listed, marked as a bot, in no channel.
    members = await expect(t.ada.api, "GET", t.w("/members"), 200)
    assert app["bot_user_id"] in [m["user_id"] for m in members["members"]]
    general = await expect(t.ada.api, "GET", t.c(t.general, "/members"), 200)
    assert app["bot_user_id"] not in [m["user_id"] for m in general["members"]]
    # Reinstalling issues new tokens and revokes the old ones at once.
    second = await expect(t.ada.api, "POST", t.w(f"/apps/{app['id']}/install"), 200, json={})
    assert (await _auth_test(parley, first["bot_token"]))["error"] == "token_revoked"
    assert (await _auth_test(parley, second["bot_token"]))["ok"] is True
    tokens = (await expect(t.ada.api, "GET", t.w(f"/apps/{app['id']}/tokens"), 200))["tokens"]
    assert [(tok["kind"], tok["revoked"]) for tok in tokens] == [
        ("bot", True), ("app", True), ("bot", False), ("app", False)]
    assert tokens[2]["scopes"][0] == "chat:write" and tokens[3]["scopes"] == ["connections:write"]
    live = tokens[2]["id"]
    await expect(t.ada.api, "DELETE", t.w(f"/apps/{app['id']}/tokens/{live}"), 204)
    await expect(t.ada.api, "DELETE", t.w(f"/apps/{app['id']}/tokens/{live}"), 204)
    assert (await _auth_test(parley, second["bot_token"]))["error"] == "token_revoked"
    await expect(t.ada.api, "DELETE", t.w(f"/apps/{app['id']}/tokens/1"), 404, "token_not_found")
    # Uninstalled: the app-level token stops too; the account is inactive.
    await expect(t.ada.api, "POST", t.w(f"/apps/{app['id']}/uninstall"), 200)
    assert (await _auth_test(parley, second["app_token"]))["error"] == "token_revoked"
    again = await expect(t.ada.api, "POST", t.w(f"/apps/{app['id']}/uninstall"), 200)
    assert again["installed"] is False
    await t.close()


async def test_signing_secret_rotation_keeps_the_old_one_for_the_grace(
        parley: Running) -> None:
    relax_limits(parley)
    t = await make_team(parley)
    created = await expect(t.ada.api, "POST", t.w("/apps"), 201, json={"manifest": manifest()})
    app_id = created["app"]["id"]
    old = created["signing_secret"]
    rotated = await expect(t.ada.api, "POST", t.w(f"/apps/{app_id}/signing-secret"), 200,
                           json={"grace_s": 3600})
    new = rotated["signing_secret"]
    assert new != old and rotated["app"]["previous_signing_secret_valid_until_ts"] is not None
    svc = parley.rt.services
    record = await svc.store.apps.app(int(t.ws), int(app_id))
    assert record is not None
    assert apps.signing_secrets(svc, record) == [new, old]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3601)
    assert apps.signing_secrets(svc, record, now=later) == [new]
    ended = await expect(t.ada.api, "POST", t.w(f"/apps/{app_id}/signing-secret"), 200,
                         json={"grace_s": 0})
    record = await svc.store.apps.app(int(t.ws), int(app_id))
    assert record is not None and apps.signing_secrets(svc, record) == [ended["signing_secret"]]
    await expect(t.ada.api, "POST", t.w(f"/apps/{app_id}/signing-secret"), 400,
                 "invalid_request", json={"grace_s": -1})
    await t.close()
