"""The REST API through real HTTP: happy paths, negative paths, one error
envelope, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.runner import Running
from tests.fixtures.parley import Api, register_and_login


def _code(resp: httpx.Response) -> str:
    body: dict[str, Any] = resp.json()
    assert set(body["error"]) >= {"code", "message", "retryable"}
    code: str = body["error"]["code"]
    return code


async def test_health_and_readiness(parley: Running) -> None:
    api = Api(parley)
    assert (await api.call("GET", "/healthz", 200))["status"] == "ok"
    ready = await api.call("GET", "/readyz", 200)
    assert ready["checks"] == {"database": True, "hub": True}
    await api.close()


async def test_register_and_login_validate_input(parley: Running) -> None:
    api = Api(parley)
    h = api.http
    ok = {"email": "ada@example.com", "password": "long enough", "display_name": "Ada"}
    assert (await h.post("/v1/auth/register", json=ok)).status_code == 201
    cases = [
        ({**ok, "email": "nope"}, 400, "invalid_email"),
        ({**ok, "password": "short"}, 400, "invalid_password"),
        ({**ok, "display_name": " "}, 400, "invalid_display_name"),
        ({**ok, "display_name": "a\x00b"}, 400, "invalid_display_name"),
        ({**ok, "email": "ADA@example.com "}, 409, "email_taken"),
        ({**ok, "extra": 1}, 400, "invalid_request"),
        ({"email": "x@y.io"}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        r = await h.post("/v1/auth/register", json=body)
        assert (r.status_code, _code(r)) == (status, code), body
    r = await h.post("/v1/auth/login", json={"email": "ada@example.com", "password": "wrong one"})
    assert (r.status_code, _code(r)) == (401, "invalid_credentials")
    r = await h.post("/v1/auth/login", json={"email": "who@example.com", "password": "whatever1"})
    assert (r.status_code, _code(r)) == (401, "invalid_credentials")
    r = await h.post("/v1/auth/login", json={"email": "Ada@Example.com", "password": "long enough"})
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"
    await api.close()


async def test_malformed_requests_are_4xx_in_the_envelope(parley: Running) -> None:
    ada, _ = await register_and_login(parley, "ada@example.com")
    h = ada.http
    checks = [
        (await h.get("/v1/nothing-here"), 404, "not_found"),
        (await h.delete("/v1/workspaces"), 405, "method_not_allowed"),
        (await h.post("/v1/workspaces", content=b"{not json",
                      headers={"content-type": "application/json"}), 400, "invalid_request"),
        (await h.get("/v1/workspaces/abc/channels"), 400, "invalid_request"),
        (await h.get("/v1/workspaces/0/channels"), 400, "invalid_request"),
        (await h.get(f"/v1/workspaces/{2**64}/channels"), 400, "invalid_request"),
        (await h.post("/v1/workspaces", content=b"x" * (2 << 20),
                      headers={"content-type": "application/json"}), 413, "payload_too_large"),
        (await h.get("/v1/workspaces", headers={"authorization": "Basic abc"}), 401,
         "invalid_token"),
        (await httpx.AsyncClient(base_url=ada.base).get("/v1/workspaces"), 401, "missing_token"),
    ]
    for resp, status, code in checks:
        assert (resp.status_code, _code(resp)) == (status, code), resp.request.url
    await ada.close()


async def test_workspace_channel_and_history_flow(parley: Running) -> None:
    ada, _ = await register_and_login(parley, "ada@example.com", "Ada")
    bob, bob_user = await register_and_login(parley, "bob@example.com", "Bob")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    assert (await ada.call("GET", "/v1/workspaces", 200))["workspaces"][0]["id"] == ws["id"]
    base = f"/v1/workspaces/{ws['id']}"
    # Bob is not a member yet: the workspace does not exist for him.
    await bob.call("GET", f"{base}/channels", 404)
    member = await ada.call("POST", f"{base}/members", 201, json={"email": "bob@example.com"})
    assert member["user_id"] == bob_user["id"] and member["role"] == "member"
    r = await bob.http.post(f"{base}/members", json={"email": "ada@example.com"})
    assert (r.status_code, _code(r)) == (403, "permission_denied")
    r = await ada.http.post(f"{base}/members", json={"email": "ghost@example.com"})
    assert (r.status_code, _code(r)) == (404, "user_not_found")

    chan = await ada.call("POST", f"{base}/channels", 201, json={"name": "Launch"})
    assert chan["name"] == "launch"
    r = await ada.http.post(f"{base}/channels", json={"name": "launch"})
    assert (r.status_code, _code(r)) == (409, "name_taken")
    r = await ada.http.post(f"{base}/channels", json={"name": "bad name!"})
    assert (r.status_code, _code(r)) == (400, "invalid_channel_name")
    public = await bob.call("GET", f"{base}/channels/public", 200)
    assert {c["name"] for c in public["channels"]} == {"general", "launch"}
    await bob.call("POST", f"{base}/channels/{chan['id']}/join", 200)

    msgs = f"{base}/channels/{chan['id']}/messages"
    for i in range(7):
        m = await (ada if i % 2 else bob).call("POST", msgs, 201, json={"text": f"m{i}"})
        assert m["seq"] == i + 1
    again = await ada.call("POST", msgs, 201, json={"text": "idem", "client_msg_id": "k"})
    assert (await ada.call("POST", msgs, 201, json={"text": "idem", "client_msg_id": "k"}))[
        "id"] == again["id"]
    newest = await bob.call("GET", msgs, 200, params={"limit": 3})
    assert [m["seq"] for m in newest["messages"]] == [6, 7, 8] and newest["has_more"]
    older = await bob.call("GET", msgs, 200, params={"limit": 3, "before": 6})
    assert [m["seq"] for m in older["messages"]] == [3, 4, 5] and older["has_more"]
    first = await bob.call("GET", msgs, 200, params={"limit": 3, "before": 3})
    assert [m["seq"] for m in first["messages"]] == [1, 2] and not first["has_more"]
    after = await bob.call("GET", msgs, 200, params={"after": 6})
    assert [m["seq"] for m in after["messages"]] == [7, 8] and not after["has_more"]
    r = await bob.http.get(msgs, params={"after": 1, "before": 5})
    assert r.status_code == 400
    mine = await bob.call("GET", f"{base}/channels", 200)
    launch = next(c for c in mine["channels"] if c["name"] == "launch")
    # Unread counts others' messages only: Ada posted 4 of the 8 (issue 5).
    assert launch["last_seq"] == 8 and launch["unread_count"] == 4
    r = await ada.http.post(msgs, json={"text": "x" * 40_001})
    assert (r.status_code, _code(r)) == (413, "message_too_long")
    await ada.close()
    await bob.close()


async def test_openapi_documents_every_route_and_error_envelope(parley: Running) -> None:
    api = Api(parley)
    spec = await api.call("GET", "/openapi.json", 200)
    paths = spec["paths"]
    for path in ("/v1/auth/register", "/v1/auth/login", "/v1/workspaces",
                 "/v1/workspaces/{workspace_id}/channels/{channel_id}/messages",
                 "/v1/workspaces/{workspace_id}/connect-ticket", "/healthz", "/readyz"):
        assert path in paths, path
    for path, ops in paths.items():
        for method, op in ops.items():
            assert "400" in op["responses"] or (method == "get" and "{" not in path), (path, method)
    assert "ErrorEnvelope" in spec["components"]["schemas"]
    await api.close()


@pytest.mark.parametrize("text", ["\x00", "a\x00b"])
async def test_nul_characters_are_refused_not_500(parley: Running, text: str) -> None:
    ada, _ = await register_and_login(parley, "ada@example.com")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    chans = await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels", 200)
    r = await ada.http.post(
        f"/v1/workspaces/{ws['id']}/channels/{chans['channels'][0]['id']}/messages",
        json={"text": text})
    assert (r.status_code, _code(r)) == (400, "invalid_text")
    await ada.close()


async def test_openapi_documents_every_parameter_and_error(parley: Running) -> None:
    api = Api(parley)
    spec = await api.call("GET", "/openapi.json", 200)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("description"), f"{where} has no description"
            for p in op.get("parameters", []):
                if p["in"] != "header":
                    assert p.get("description"), f"{where}: parameter {p['name']}"
            slack = "Slack Web API" in op.get("tags", [])
            for status in ("400", "401", "403", "404", "409", "413", "429", "503"):
                content = op["responses"][status]["content"]
                if slack and "application/json" not in content:
                    # Incoming webhooks answer in Slack's text/plain (ok, no_text, ...).
                    assert "text/plain" in content, (where, status)
                    continue
                ref = content["application/json"]["schema"]["$ref"]
                if where == "GET /readyz" and status == "503":
                    continue  # not ready: the health body says which check failed
                if path.startswith("/commands/") and status in {"400", "403", "404", "409",
                                                                 "503"}:
                    # A response_url answers what it decides itself in Slack's
                    # shape, as Slack's does (the rest come from the shared layers).
                    assert ref.endswith("/SlackAnswer"), (where, status)
                    continue
                if path.startswith("/api/") and status in {"429", "503"}:
                    # The Web API's methods answer these themselves, in Slack's shape.
                    assert ref.endswith("/SlackAnswer"), (where, status)
                    continue
                assert ref.endswith("/ErrorEnvelope"), (where, status)
    await api.close()


async def test_history_around_a_message(parley: Running) -> None:
    ada, _ = await register_and_login(parley, "ada@example.com")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    general = (await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels", 200))["channels"][0]
    msgs = f"/v1/workspaces/{ws['id']}/channels/{general['id']}/messages"
    for i in range(20):
        await ada.call("POST", msgs, 201, json={"text": f"m{i}"})
    page = await ada.call("GET", msgs, 200, params={"around": 10, "limit": 6})
    assert [m["seq"] for m in page["messages"]] == [7, 8, 9, 10, 11, 12]
    assert page["has_more"]
    edge = await ada.call("GET", msgs, 200, params={"around": 2, "limit": 6})
    assert [m["seq"] for m in edge["messages"]] == [1, 2, 3, 4, 5, 6] and not edge["has_more"]
    r = await ada.http.get(msgs, params={"around": 3, "after": 1})
    assert r.status_code == 400
    await ada.close()
