"""api/routes_auth.py through real HTTP: rotating refresh tokens with reuse
detection, logout, rate limits."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import websockets

from server.runner import Running
from tests.api.helpers import expect, make_team
from tests.fixtures.parley import Api, register_and_login

PASSWORD = "correct horse battery"


async def _login(api: Api, email: str) -> dict[str, str]:
    tokens: dict[str, str] = await expect(api, "POST", "/v1/auth/login", 200,
                                          json={"email": email, "password": PASSWORD})
    return tokens


async def test_refresh_rotates_and_the_new_tokens_work(parley: Running) -> None:
    user, _ = await register_and_login(parley, "ada@example.com")
    anon = Api(parley)
    first = await _login(anon, "ada@example.com")
    assert first["refresh_token"]
    second = await expect(anon, "POST", "/v1/auth/refresh", 200,
                          json={"refresh_token": first["refresh_token"]})
    assert second["refresh_token"] != first["refresh_token"]
    third = await expect(anon, "POST", "/v1/auth/refresh", 200,
                         json={"refresh_token": second["refresh_token"]})
    api = Api(parley, third["access_token"])
    assert (await expect(api, "GET", "/v1/me", 200))["email"] == "ada@example.com"
    for bad in ("", "x" * 300):
        await expect(anon, "POST", "/v1/auth/refresh", 400, json={"refresh_token": bad})
    await expect(anon, "POST", "/v1/auth/refresh", 401, "invalid_refresh_token",
                 json={"refresh_token": "not-a-token"})
    await expect(anon, "POST", "/v1/auth/refresh", 400, "invalid_request", json={})
    for c in (user, anon, api):
        await c.close()


async def test_reusing_a_refresh_token_revokes_the_session_and_its_sockets(
        parley: Running) -> None:
    t = await make_team(parley)
    anon = Api(parley)
    tokens = await _login(anon, t.bob.email)
    stolen = tokens["refresh_token"]
    fresh = await expect(anon, "POST", "/v1/auth/refresh", 200, json={"refresh_token": stolen})
    bob = Api(parley, fresh["access_token"])
    ws = await t.connect(dataclasses.replace(t.bob, api=bob))
    # The thief replays the old token: the whole family dies.
    await expect(anon, "POST", "/v1/auth/refresh", 401, "refresh_token_reused",
                 json={"refresh_token": stolen})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv_type("never", timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    await expect(bob, "GET", "/v1/me", 401, "session_revoked")
    await expect(anon, "POST", "/v1/auth/refresh", 401, "invalid_refresh_token",
                 json={"refresh_token": fresh["refresh_token"]})
    # Other sessions of the same user are untouched.
    await expect(t.bob.api, "GET", "/v1/me", 200)
    await anon.close()
    await bob.close()
    await t.close()


async def test_logout_ends_the_refresh_family_too(parley: Running) -> None:
    _, _ = await register_and_login(parley, "ada@example.com")
    anon = Api(parley)
    tokens = await _login(anon, "ada@example.com")
    api = Api(parley, tokens["access_token"])
    await expect(api, "POST", "/v1/auth/logout", 204)
    await expect(anon, "POST", "/v1/auth/refresh", 401, "invalid_refresh_token",
                 json={"refresh_token": tokens["refresh_token"]})
    await anon.close()
    await api.close()


async def test_concurrent_refreshes_rotate_once(parley: Running) -> None:
    await register_and_login(parley, "ada@example.com")
    anon = Api(parley)
    tokens = await _login(anon, "ada@example.com")
    results = await asyncio.gather(*(anon.http.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401]
    await anon.close()


async def test_mutations_are_rate_limited_with_retry_after(parley: Running) -> None:
    parley.rt.services.settings = dataclasses.replace(parley.rt.settings, rest_rate_per_s=0.5,
                                                      rest_burst=3)
    ada, _ = await register_and_login(parley, "ada@example.com")
    ws = await expect(ada, "POST", "/v1/workspaces", 201, json={"name": "Acme"})
    chans = await expect(ada, "GET", f"/v1/workspaces/{ws['id']}/channels", 200)
    path = f"/v1/workspaces/{ws['id']}/channels/{chans['channels'][0]['id']}/messages"
    statuses = [(await ada.http.post(path, json={"text": "x"})) for _ in range(4)]
    assert [r.status_code for r in statuses[:2]] == [201, 201]
    limited = statuses[-1]
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert limited.json()["error"]["retryable"] is True
    assert int(limited.headers["retry-after"]) >= 1
    # Reads are not limited.
    await expect(ada, "GET", path, 200)
    await ada.close()


async def test_login_is_rate_limited_per_address(parley: Running) -> None:
    parley.rt.services.settings = dataclasses.replace(parley.rt.settings, rest_rate_per_s=0.1,
                                                      rest_burst=2)
    anon = Api(parley)
    body = {"email": "nobody@example.com", "password": "whatever1"}
    codes = [(await anon.http.post("/v1/auth/login", json=body)).status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    await anon.close()


async def test_nul_and_oversized_ids_are_refused_not_500(parley: Running) -> None:
    anon = Api(parley)
    for body in ({"email": "a\x00@example.com", "password": PASSWORD, "display_name": "A"},):
        r = await anon.http.post("/v1/auth/register", json=body)
        assert r.status_code == 400, r.text
    r = await anon.http.post("/v1/auth/login", json={"email": "a\x00@x.io", "password": "p" * 9})
    assert r.status_code in {400, 401}, r.text
    r = await anon.http.post("/v1/auth/refresh", json={"refresh_token": "a\x00b"})
    assert r.status_code == 401, r.text
    t = await make_team(parley)
    for body in ({"user_ids": ["9999999999999999999"]}, {"user_ids": ["0"]}):
        await expect(t.bob.api, "POST", t.w("/dms"), 400, "invalid_request", json=body)
    await expect(t.bob.api, "POST", t.c(t.general, "/messages"), 400, "invalid_request",
                 json={"text": "x", "thread_root_id": "9223372036854775808"})
    await expect(t.bob.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                 json={"token": "1.\x00" + "a" * 20})
    await expect(t.ada.api, "POST", t.w("/members"), 404, "user_not_found",
                 json={"email": "a\x00@example.com"})
    await anon.close()
    await t.close()
