"""Text PostgreSQL cannot store, through real HTTP: every user string the API
stores (or hashes) refuses a NUL with its field's typed 4xx error and a lone
surrogate (a ``\\ud800`` JSON escape, which ``json.loads`` accepts) with
``invalid_text`` as the JSON gateway does (its field's code where no length
limit makes pydantic refuse it first); never a 500 or a retryable 503
(parley/actions/validate.py ``storable``, api/errors.py)."""

from __future__ import annotations

from typing import Any

import pytest

from server.runner import Running
from tests.api.helpers import User, code, expect, make_user

# Raw JSON escapes: httpx's json= could not even encode a lone surrogate.
SURROGATE = "x\\ud800y"
NUL = "x\\u0000y"


async def _raw(user: User, method: str, path: str, body: str) -> tuple[int, str, bool]:
    resp = await user.api.http.request(method, path, content=body.encode(),
                                       headers={"content-type": "application/json"})
    err: dict[str, Any] = resp.json().get("error", {}) if resp.content else {}
    return resp.status_code, code(resp) if err else "", bool(err.get("retryable"))


@pytest.mark.parametrize("bad", [SURROGATE, NUL], ids=["lone_surrogate", "nul"])
async def test_every_stored_string_refuses_text_postgres_cannot_hold(
        parley: Running, bad: str) -> None:
    ada = await make_user(parley, "ada")
    ws = await expect(ada.api, "POST", "/v1/workspaces", 201, json={"name": "Acme"})
    w = f"/v1/workspaces/{ws['id']}"
    chans = await expect(ada.api, "GET", f"{w}/channels", 200)
    c = f"{w}/channels/{chans['channels'][0]['id']}"
    msg = await expect(ada.api, "POST", f"{c}/messages", 201, json={"text": "fine"})
    m = f"{c}/messages/{msg['id']}"
    cases = [
        ("POST", "/v1/auth/register",
         f'{{"email": "new@example.com", "password": "long enough", "display_name": "{bad}"}}',
         400, "invalid_display_name"),
        ("POST", "/v1/auth/register",
         f'{{"email": "n{bad}@example.com", "password": "long enough", "display_name": "N"}}',
         400, "invalid_email"),
        ("POST", "/v1/auth/login",
         f'{{"email": "ada@example.com", "password": "pass{bad}word"}}',
         401, "invalid_credentials"),
        ("POST", "/v1/auth/refresh", f'{{"refresh_token": "{bad}"}}',
         401, "invalid_refresh_token"),
        ("POST", "/v1/workspaces", f'{{"name": "{bad}"}}', 400, "invalid_workspace_name"),
        ("POST", f"{w}/members", f'{{"email": "{bad}@example.com"}}', 404, "user_not_found"),
        ("POST", "/v1/invites/accept", f'{{"token": "{ws["id"]}.{bad}{"a" * 20}"}}',
         404, "invite_not_found"),
        ("POST", f"{w}/channels", f'{{"name": "{bad}", "kind": "public"}}',
         400, "invalid_channel_name"),
        ("PATCH", c, f'{{"topic": "{bad}"}}', 400, "invalid_topic"),
        ("PATCH", c, f'{{"purpose": "{bad}"}}', 400, "invalid_purpose"),
        ("POST", f"{c}/messages", f'{{"text": "{bad}"}}', 400, "invalid_text"),
        ("POST", f"{c}/messages", f'{{"text": "ok", "client_msg_id": "{bad}"}}',
         400, "invalid_client_msg_id"),
        ("PATCH", m, f'{{"text": "{bad}"}}', 400, "invalid_text"),
        ("POST", f"{w}/files", f'{{"name": "{bad}.txt", "size": 3}}', 400, "invalid_file_name"),
        ("POST", f"{w}/files", f'{{"name": "a.txt", "size": 3, "content_type": "{bad}"}}',
         400, "invalid_content_type"),
        ("PUT", f"{w}/file-limits", f'{{"allowed_types": ["{bad}"]}}', 400, "invalid_limits"),
    ]
    got = [(method, path, *await _raw(ada, method, path, body))
           for method, path, body, _, _ in cases]
    unconstrained = {"invalid_limits"}  # list[str] items: no length limit, the action refuses
    want = [(method, path, status, err, False) if bad == NUL or err in unconstrained
            else (method, path, 400, "invalid_text", False)
            for method, path, _, status, err in cases]
    assert got == want
    # What arrives in the path or the query: percent-decoding cannot make a
    # surrogate (invalid UTF-8 becomes U+FFFD) but "%00" is a NUL.
    await expect(ada.api, "PUT", f"{m}/reactions/x%00", 400, "invalid_request")  # a pattern
    await expect(ada.api, "GET", f"{w}/search?q=x%00y", 400, "invalid_query")
    # "²" passes str.isdigit but not int(): an unknown invite, not a 500.
    await expect(ada.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                 json={"token": "\u00b2." + "a" * 20})
    # Nothing of it was stored: the channel still holds the one message.
    page = await expect(ada.api, "GET", f"{c}/messages", 200)
    assert [x["text"] for x in page["messages"]] == ["fine"]
    await ada.api.close()
