"""Refusals never reveal existence: until the caller is shown to be allowed
to see an object, every refusal is exactly the one for an id that does not
exist (same status, code and body), whatever the object's state.

For every route of /openapi.json with an id in its path (enumerated from the
spec, so a new route is covered automatically; one missing from
``route_table.MATRIX`` fails), the answer for a real object the caller
cannot see is compared with the answer for made-up ids:

* an outsider (Eve, owner of another workspace) with Acme's workspace id,
  and with her own workspace id and Acme's other ids;
* members of Acme who are not in the channel: Carol (member) and Ann
  (admin) for the private channels #vault and #attic (archived), Gus
  (guest) for those and for the public #lobby, which guests cannot browse.

Each channel holds a message, a thread reply and a shared file, so
messages, threads, reactions, pins and files are reached through it.  The
gateway's ``send`` is compared the same way, in both codecs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from server.runner import Running
from tests.api.helpers import Team, User, expect, make_team, upload_file
from tests.api.route_table import (
    MATRIX,
    PARAM,
    QUERY_BASE,
    QUERY_IDS,
    Body,
    Ids,
    fill,
    install_app,
    spec_routes,
)

# Ids no object will ever have: snowflakes of the year ~2090 (2**62 ms after
# the epoch), one per parameter name.
MADE_UP: Ids = {name: str(2**62 + i) for i, name in enumerate(
    ("workspace_id", "channel_id", "message_id", "user_id", "invite_id", "file_id", "app_id",
     "token_id", "webhook_id"))}
MADE_UP["emoji"] = "tada"  # not an id: the same in both requests
# What a member of the workspace may be unable to see.  Members, invites and
# apps of one's own workspace are not secret from its members (lists show them).
CHANNEL_SCOPED = ("channel_id", "message_id", "file_id")
POST_MESSAGE = "POST /v1/workspaces/{workspace_id}/channels/{channel_id}/messages"
# Bodies tried besides ``MATRIX``'s: a plain post reaches the writer's own
# checks (the thread root in MATRIX's body is checked before it).
EXTRA_BODIES: dict[str, list[Body]] = {POST_MESSAGE: [lambda _: {"text": "probe"}]}


@dataclasses.dataclass(frozen=True)
class Case:
    """One comparison: ``caller`` asks ``route`` with ``real`` ids and again
    with ``fake`` ids; both answers must be the same refusal."""

    label: str
    caller: User
    route: str
    real: Ids
    fake: Ids
    body: Body


async def _channel_with_content(t: Team, name: str, kind: str) -> Ids:
    """A channel of Bob's with a thread (root and reply) and a shared file."""
    cid = await t.channel(t.bob, name, kind)
    file_id = await upload_file(t.bob, t.ws, f"{name} file".encode(), f"{name}.txt")
    root = await t.post(t.bob, cid, f"{name} root", file_ids=[file_id])
    reply = await t.post(t.bob, cid, f"{name} reply", thread_root_id=root["id"])
    await expect(t.bob.api, "PUT", t.m(cid, root["id"], "/reactions/tada"), 204)
    return {"channel_id": cid, "message_id": root["id"], "reply_id": reply["id"],
            "file_id": file_id}


async def _world(t: Team) -> dict[str, Ids]:
    invite = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={})
    app = await install_app(t.ada, t.ws, t.general, "Acme bot")
    base = {"workspace_id": t.ws, "user_id": t.bob.id, "invite_id": invite["invite"]["id"],
            "emoji": "tada", **app}
    vault = await _channel_with_content(t, "vault", "private")
    attic = await _channel_with_content(t, "attic", "private")
    await expect(t.bob.api, "POST", t.c(attic["channel_id"], "/archive"), 200)
    lobby = await _channel_with_content(t, "lobby", "public")
    targets = {}
    for name, chan in (("vault", vault), ("attic", attic), ("lobby", lobby)):
        targets[name] = {**base, **chan}
        # The thread routes behave differently for a reply (thread_not_found
        # once visible), so a reply is a target of its own.
        targets[f"{name} reply"] = {**base, **chan, "message_id": chan["reply_id"]}
    return targets


def _routes_with_ids(spec: dict[str, Any]) -> list[str]:
    routes = [r for r in spec_routes(spec) if any(p.endswith("_id") for p in PARAM.findall(r))]
    missing = [r for r in routes if r not in MATRIX]
    assert not missing, f"routes with an id that no refusal test covers: {missing}"
    return routes


def _hides(route: str, keys: tuple[str, ...]) -> bool:
    """Whether ``route`` carries one of ``keys`` in its path, query or body."""
    names = set(PARAM.findall(route)) | set(QUERY_IDS.get(route, {}).values())
    body = MATRIX[route](MADE_UP)
    return bool(names & set(keys)) or (body != MATRIX[route]({**MADE_UP, **{
        k: "1" for k in keys}}))


def _cases(t: Team, routes: list[str], targets: dict[str, Ids]) -> list[Case]:
    own = {"workspace_id": t.other}
    other_ids = tuple(k for k in MADE_UP if k not in {"workspace_id", "emoji"})
    cases: list[Case] = []
    for route in routes:
        # An outsider, with Acme's workspace id: no target is needed.
        pairs: list[tuple[str, User, Ids, Ids]] = [
            ("outsider, acme workspace", t.eve, targets["vault"], MADE_UP)]
        if _hides(route, other_ids):  # her own workspace, Acme's other ids
            pairs += [(f"outsider, own workspace, {name}", t.eve, {**targets[name], **own},
                       {**MADE_UP, **own})
                      for name in ("vault", "vault reply", "attic", "attic reply")]
        if _hides(route, CHANNEL_SCOPED):
            for caller, names in ((t.carol, ("vault", "vault reply", "attic", "attic reply")),
                                  (t.ann, ("vault", "attic")),
                                  (t.gus, ("vault", "attic", "lobby", "lobby reply"))):
                pairs += [(f"non-member {caller.email}, {name}", caller, targets[name],
                           {**targets[name], **{k: MADE_UP[k] for k in CHANNEL_SCOPED}})
                          for name in names]
        cases += [Case(label, caller, route, real, fake, body)
                  for body in (MATRIX[route], *EXTRA_BODIES.get(route, ()))
                  for label, caller, real, fake in pairs]
    return cases


async def _ask(user: User, route: str, ids: Ids, body: Body) -> httpx.Response:
    method, path = route.split(" ", 1)
    params = dict(QUERY_BASE.get(route, {}))
    params.update({k: ids[v] for k, v in QUERY_IDS.get(route, {}).items()})
    return await user.api.http.request(method, fill(path, ids), params=params,
                                       json=body(ids))


def _answer(resp: httpx.Response) -> tuple[int, Any]:
    is_json = resp.headers.get("content-type", "").startswith("application/json")
    return resp.status_code, resp.json() if is_json else resp.content


async def test_an_invisible_object_is_refused_like_a_made_up_id(parley: Running) -> None:
    parley.rt.services.settings = dataclasses.replace(
        parley.rt.settings, rest_rate_per_s=100_000.0, rest_burst=100_000)
    t = await make_team(parley)
    targets = await _world(t)
    spec = await expect(t.eve.api, "GET", "/openapi.json", 200)
    routes = _routes_with_ids(spec)
    cases = _cases(t, routes, targets)
    failures: list[str] = []
    for case in cases:
        real = _answer(await _ask(case.caller, case.route, case.real, case.body))
        fake = _answer(await _ask(case.caller, case.route, case.fake, case.body))
        if real != fake or not 400 <= real[0] < 500:
            failures.append(f"{case.route} [{case.label}]: real {real} != made-up {fake}")
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures)
    assert {c.route for c in cases} == set(routes)
    await t.close()


async def test_gateway_send_refuses_an_invisible_channel_like_a_made_up_one(
        parley: Running) -> None:
    t = await make_team(parley)
    targets = await _world(t)
    # (who, their workspace, the channels they cannot see)
    cast = ((t.eve, t.other, ("vault", "attic", "lobby")),
            (t.carol, t.ws, ("vault", "attic")),
            (t.gus, t.ws, ("vault", "attic", "lobby")))
    failures: list[str] = []
    for user, ws_id, names in cast:
        for json_mode in (False, True):
            ws = await t.connect(user, ws_id, json_mode=json_mode)
            for name in names:
                real = targets[name]
                for fields in ({}, {"thread_root_id": "message_id"}):
                    answers = []
                    for ids in (real, MADE_UP):
                        d: dict[str, Any] = {"channel_id": ids["channel_id"], "text": "probe"}
                        d.update({k: ids[v] for k, v in fields.items()})
                        await ws.send_cmd("send", d, ref="probe")
                        ev = await ws.recv_type("error")
                        answers.append((ev["ref"], ev["d"]))
                    if answers[0] != answers[1]:
                        failures.append(f"{user.email} json={json_mode} {name} {fields}: "
                                        f"{answers[0]} != {answers[1]}")
            await ws.close()
    assert not failures, "\n".join(failures)
    await t.close()
