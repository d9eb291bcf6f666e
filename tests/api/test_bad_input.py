"""Bad input is a 4xx in Parley's envelope, never a 500 (api.params, api.errors).

The parameters and body fields come from /openapi.json, so a new one is
covered without touching this file: every integer a client can send must
document both bounds, and a value just outside either one (or beyond
2**63, or not a number) must be refused with 400 ``invalid_request`` whose
``details`` name it; so must every id string beyond 2**63 - 1 and every
timestamp outside the years 1 to 9999 in UTC (``+14:00`` on 0001-01-01 is
year 0) or without a time zone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from server.runner import Running
from tests.api.helpers import Team, expect, make_team
from tests.api.route_table import SLACK_SHAPED_PREFIXES, install_app

INT64_MAX = 2**63 - 1
ID_PATTERN = "^[0-9]{1,19}$"
# Values that are fine for required parameters the test does not probe.
REQUIRED_QUERY = {"q": "hello"}
BAD_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2024-05-01T12:00:00",
             "10000-01-01T00:00:00Z", "yesterday")
EDGE_TIMES = ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00-14:00",
              "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59+14:00")


def _variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a schema (``anyOf`` of a nullable one)."""
    return [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]


def _bad_integers(s: dict[str, Any], where: str) -> list[Any]:
    assert "minimum" in s and "maximum" in s, f"{where}: an unbounded integer {s}"
    assert isinstance(s["maximum"], int) and s["maximum"] <= INT64_MAX, where
    return [s["minimum"] - 1, s["maximum"] + 1, 2**64, "1.5", "ten"]


def _envelope(resp: httpx.Response, loc: list[Any] | None = None) -> str | None:
    """Why ``resp`` is not a 400 ``invalid_request`` naming ``loc`` (None if it is)."""
    if resp.status_code != 400:
        return f"status {resp.status_code}: {resp.text[:200]}"
    body = resp.json()
    err = body.get("error", {})
    if set(body) != {"error"} or err.get("code") != "invalid_request" or not isinstance(
            err.get("message"), str) or err.get("retryable") is not False:
        return f"not the envelope: {body}"
    if loc is not None and loc not in [d["loc"] for d in err.get("details", [])]:
        return f"details do not name {loc}: {err.get('details')}"
    return None


@dataclasses.dataclass
class Probe:
    t: Team
    ids: dict[str, str]
    failures: list[str] = dataclasses.field(default_factory=list)
    sent: int = 0

    async def send(self, method: str, path: str, params: dict[str, Any], body: Any,
                   loc: list[Any] | None, what: str) -> None:
        url = path.format(**self.ids)
        resp = await self.t.ada.api.http.request(method, url, params=params, json=body)
        self.sent += 1
        why = _envelope(resp, loc)
        if why is not None:
            self.failures.append(f"{method} {path} {what}: {why}")


async def _seed(t: Team) -> dict[str, str]:
    msg = await t.post(t.ada, t.general, "hello")
    invite = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={})
    app = await install_app(t.ada, t.ws, t.general, "Probe bot")
    return {"workspace_id": t.ws, "channel_id": t.general, "message_id": msg["id"],
            "user_id": t.bob.id, "invite_id": invite["invite"]["id"], "file_id": msg["id"],
            "emoji": "tada", "key": "w/1/2/upload", **app}


def _component(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    node: dict[str, Any] = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


async def _probe_parameters(p: Probe, method: str, path: str, op: dict[str, Any]) -> None:
    params = op.get("parameters", [])
    base = {q["name"]: REQUIRED_QUERY[q["name"]] for q in params
            if q["in"] == "query" and q.get("required")}
    for param in params:
        name, where = param["name"], param["in"]
        if where not in {"path", "query"}:
            continue
        for s in _variants(param["schema"]):
            bad: list[Any] = []
            if s.get("type") == "integer":
                bad = _bad_integers(s, f"{method} {path} {name}")
            elif s.get("format") == "date-time":
                bad = list(BAD_TIMES)
            for value in bad:
                if where == "path":
                    await p.send(method, path.replace("{" + name + "}", str(value)), base, None,
                                 [where, name], f"{name}={value}")
                else:
                    await p.send(method, path, {**base, name: value}, None, [where, name],
                                 f"{name}={value}")


async def _probe_body(p: Probe, spec: dict[str, Any], method: str, path: str,
                      op: dict[str, Any]) -> None:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return
    model = _component(spec, content["application/json"]["schema"]["$ref"])
    for name, prop in model.get("properties", {}).items():
        for s in _variants(prop):
            values: list[tuple[Any, list[Any]]] = []
            if s.get("type") == "integer":
                values = [(v, ["body", name]) for v in _bad_integers(s, f"{path} {name}")]
            elif s.get("pattern") == ID_PATTERN:
                values = [(str(2**63), ["body", name]), ("0", ["body", name])]
            elif s.get("type") == "array" and s["items"].get("pattern") == ID_PATTERN:
                values = [([str(2**63)], ["body", name, "0"]), (["0"], ["body", name, "0"])]
            for value, loc in values:
                # Other fields may be missing too: the details must still name this one.
                await p.send(method, path, {}, {name: value}, loc, f"body {name}={value!r}")


async def test_every_number_id_and_time_a_client_sends_is_range_checked(
        parley: Running) -> None:
    parley.rt.services.settings = dataclasses.replace(
        parley.rt.settings, rest_rate_per_s=100_000.0, rest_burst=100_000)
    t = await make_team(parley)
    p = Probe(t, await _seed(t))
    spec = await expect(t.ada.api, "GET", "/openapi.json", 200)
    for path, ops in spec["paths"].items():
        if path.startswith(SLACK_SHAPED_PREFIXES):
            continue  # Slack's error conventions (tests/api/slack/test_errors.py)
        for method, op in ops.items():
            await _probe_parameters(p, method.upper(), path, op)
            await _probe_body(p, spec, method.upper(), path, op)
    assert not p.failures, f"{len(p.failures)} of {p.sent}:\n" + "\n".join(p.failures)
    assert p.sent > 300
    # The edges themselves are accepted (and reach PostgreSQL).
    for value in EDGE_TIMES:
        for name in ("since", "until"):
            await expect(t.ada.api, "GET", t.w("/search"), 200, params={"q": "x", name: value})
    # Ids inside strings: "²" is a digit to str.isdigit() but not to int().
    for token in ("²." + "a" * 32, f"{2**63}." + "a" * 32, "0." + "a" * 32):
        await expect(t.ada.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                     json={"token": token})
    # The connection that carried all of this still works: nothing was a 500.
    await expect(t.ada.api, "GET", "/v1/me", 200)
    await t.close()


async def test_malformed_or_oversized_bodies_are_4xx_in_the_envelope(
        parley: Running) -> None:
    t = await make_team(parley)
    h = t.ada.api.http
    # FastAPI's own refusals (parsing, the model) come in Parley's envelope.
    cases: list[tuple[dict[str, Any], str]] = [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "json"),
        ({"content": b'{"name": "x"}', "headers": {"content-type": "text/plain"}}, "type"),
        ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, "array"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, "empty"),
        ({"json": {"name": "x", "extra": 1}}, "extra field"),
        ({"content": b'{"name": 1e999}', "headers": {"content-type": "application/json"}},
         "infinity"),
    ]
    for kw, what in cases:
        why = _envelope(await h.post(t.w("/channels"), **kw))
        assert why is None, (what, why)
    # Over 1 MiB: 413 whether the length is declared or the body is chunked
    # (which used to be 400 "There was an error parsing the body").
    big = b'{"name": "' + b"x" * (2 << 20) + b'"}'

    async def chunked(data: bytes) -> Any:
        for i in range(0, len(data), 64 * 1024):
            yield data[i:i + 64 * 1024]

    json_type = {"content-type": "application/json"}
    for resp in (await h.post("/v1/workspaces", content=big, headers=json_type),
                 await h.post("/v1/workspaces", content=chunked(big), headers=json_type)):
        assert resp.status_code == 413, resp.text
        assert resp.json()["error"]["code"] == "payload_too_large"
    # A chunked body under the limit reaches the route whole.
    ok = await h.post("/v1/workspaces", content=chunked(b'{"name": "' + b"y" * 40 + b'"}'),
                      headers=json_type)
    assert ok.status_code == 201 and ok.json()["name"] == "y" * 40
    await t.close()
