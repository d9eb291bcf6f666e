"""Private-channel confidentiality through every path: live events, history,
threads, reactions, pins, search, unread counts and the gateway's resume
replay; and a removed member stops receiving the channel at once.

The cast: Bob and Carol are in the private channel #secret.  Ada (the
owner), Ann (an admin) and Gus (a guest) are not, and must learn nothing
about it - not even that it exists.
"""

from __future__ import annotations

from typing import Any

from server.runner import Running
from tests.api.helpers import Team, User, drain, expect, make_team, settle
from tests.fixtures.parley import WsClient

SECRET_WORD = "zanzibar"


def _about(evs: list[dict[str, Any]], channel: str, message_ids: set[str],
           me: str | None = None) -> list[Any]:
    """Events that mention the channel or one of its messages, anywhere -
    except the news of one's own departure (``channel.member_left`` about
    ``me``), published in the same batch as ``channel.left`` and so possibly
    fanned out before the gateway's unsubscribe task runs (see the issue 5
    report: a synchronous detach in the gateway removes even that)."""
    out = []
    for e in evs:
        if e["t"] == "channel.member_left" and str(e["d"]["user_id"]) == me:
            continue
        flat = repr(e)
        if channel in flat or int(channel) in _ints(e) or SECRET_WORD in flat or any(
                m in flat or int(m) in _ints(e) for m in message_ids):
            out.append(e)
    return out


def _ints(obj: Any) -> set[int]:
    if isinstance(obj, dict):
        return set().union(*(_ints(v) for v in obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_ints(v) for v in obj)) if obj else set()
    return {obj} if isinstance(obj, int) and not isinstance(obj, bool) else set()


async def _activity(t: Team, secret: str, a: User, b: User) -> tuple[str, set[str]]:
    """Everything members ``a`` and ``b`` can do in a channel, mentioning
    outsiders; returns the root message id and every message id."""
    root = await t.post(a, secret, f"{SECRET_WORD} plans <@{t.ann.id}> @channel")
    reply = await t.post(b, secret, f"{SECRET_WORD} reply <@{t.carol.id}>",
                         thread_root_id=root["id"], also_in_channel=True)
    await expect(b.api, "PUT", t.m(secret, root["id"], "/reactions/eyes"), 204)
    await expect(b.api, "PUT", t.m(secret, reply["id"], "/reactions/eyes"), 204)
    await expect(b.api, "PUT", t.m(secret, root["id"], "/pin"), 204)
    await expect(a.api, "PATCH", t.m(secret, root["id"]), 200,
                 json={"text": f"{SECRET_WORD} edited <@{t.ada.id}>"})
    await expect(b.api, "DELETE", t.m(secret, root["id"], "/reactions/eyes"), 204)
    await expect(a.api, "DELETE", t.m(secret, root["id"], "/pin"), 204)
    await expect(b.api, "DELETE", t.m(secret, reply["id"]), 204)
    await expect(a.api, "PUT", t.m(secret, root["id"], "/follow"), 204)
    await expect(a.api, "PATCH", t.c(secret), 200, json={"topic": SECRET_WORD})
    await expect(a.api, "POST", t.c(secret, "/read"), 200, json={})
    return root["id"], {root["id"], reply["id"]}


async def test_outsiders_learn_nothing_through_any_path(parley: Running) -> None:
    t = await make_team(parley)
    secret = await t.channel(t.bob, "secret", "private", members=(t.carol,))
    outsiders = [t.ada, t.ann, t.gus]
    sockets = [await t.connect(u) for u in outsiders]
    sockets.append(await t.connect(t.ada, json_mode=True))
    carol_ws = await t.connect(t.carol)
    await settle()
    root, ids = await _activity(t, secret, t.bob, t.carol)

    # Live events: the members saw it all, the outsiders nothing.
    assert len(await drain(carol_ws)) >= 6
    for ws in sockets:
        leaked = _about(await drain(ws, 0.2), secret, ids)
        assert not leaked, leaked

    # REST, message by message and route by route: 404 like a missing channel.
    for u in outsiders:
        for path in (t.c(secret), t.c(secret, "/messages"), t.c(secret, "/members"),
                     t.c(secret, "/pins"), t.m(secret, root), t.m(secret, root, "/thread")):
            await expect(u.api, "GET", path, 404, "channel_not_found")
        for method, path, body in (
                ("PUT", t.m(secret, root, "/reactions/eyes"), None),
                ("PUT", t.m(secret, root, "/pin"), None),
                ("PUT", t.m(secret, root, "/follow"), None),
                ("POST", t.c(secret, "/messages"), {"text": "hi"}),
                ("POST", t.c(secret, "/read"), {}),
                ("POST", t.c(secret, "/join"), None),
                ("PATCH", t.c(secret), {"topic": "x"}),
                ("DELETE", t.m(secret, root), None)):
            kw = {"json": body} if body is not None else {}
            await expect(u.api, method, path, 404, "channel_not_found", **kw)
        # Search, lists, unread and mention counts.
        await t.indexed()
        hits = await expect(u.api, "GET", t.w("/search"), 200, params={"q": SECRET_WORD})
        assert hits["messages"] == []
        await expect(u.api, "GET", t.w("/search"), 404, "channel_not_found",
                     params={"q": SECRET_WORD, "channel_id": secret})
        for params in ({}, {"include_public": "true"}):
            chans = await expect(u.api, "GET", t.w("/channels"), 200, params=params)
            assert secret not in {c["id"] for c in chans["channels"]}
            general = next(c for c in chans["channels"] if c["id"] == t.general)
            assert general["mention_count"] == 0
        if u is not t.gus:
            public = await expect(u.api, "GET", t.w("/channels/public"), 200)
            assert secret not in {c["id"] for c in public["channels"]}

    # The gateway's resume replay only covers the caller's channels.  The ack
    # lists, as ``ignored``, the ids the client named that are not channels
    # of its session: its own ids echoed, the same for a secret channel as
    # for one that does not exist, so they are compared and left out.
    nowhere = str(int(secret) + 1)
    for u in outsiders:
        ws = await t.connect(u, resume=True)
        await ws.send_cmd("resume", {"channels": {secret: 0, nowhere: 0, t.general: 0}},
                          ref="r")
        evs = []
        while True:
            ev = await ws.recv()
            evs.append(ev)
            if ev["t"] == "ack":
                break
        ignored = evs[-1]["d"].pop("ignored")
        assert [str(i) for i in ignored] == [secret, nowhere]
        assert not _about(evs, secret, ids), evs
        await ws.close()
    # A thread reply in a channel one is not in is refused like the channel.
    await expect(t.ann.api, "POST", t.c(t.general, "/messages"), 404, "message_not_found",
                 json={"text": "x", "thread_root_id": root})
    for ws in [*sockets, carol_ws]:
        await ws.close()
    await t.close()


async def test_removed_member_stops_receiving_at_once(parley: Running) -> None:
    t = await make_team(parley)
    secret = await t.channel(t.bob, "secret", "private", members=(t.carol, t.ann))
    carol_ws = await t.connect(t.carol)
    carol_json = await t.connect(t.carol, json_mode=True)
    await settle()
    first = await t.post(t.bob, secret, "before")
    for ws in (carol_ws, carol_json):
        assert (await ws.recv_type("message.created"))["d"]["text"] == "before"
    await expect(t.bob.api, "DELETE", t.c(secret, f"/members/{t.carol.id}"), 204)
    for ws in (carol_ws, carol_json):
        left = await ws.recv_type("channel.left")
        assert str(left["d"]["id"]) == secret
    # Immediately afterwards, everything in the channel passes her by.
    _, ids = await _activity(t, secret, t.bob, t.ann)
    await expect(t.bob.api, "PUT", t.m(secret, first["id"], "/reactions/tada"), 204)
    for ws in (carol_ws, carol_json):
        leaked = _about(await drain(ws, 0.3), secret, ids | {first["id"]}, t.carol.id)
        assert not leaked, leaked
    await expect(t.carol.api, "GET", t.c(secret, "/messages"), 404, "channel_not_found")
    await t.indexed()
    hits = await expect(t.carol.api, "GET", t.w("/search"), 200, params={"q": SECRET_WORD})
    assert hits["messages"] == []
    # Resume after removal replays nothing of the channel.
    again = await t.connect(t.carol, resume=True)
    assert secret not in {str(c["id"]) for c in again.hello["d"]["channels"]}
    await again.send_cmd("resume", {"channels": {secret: 0}}, ref="r")
    ack = await again.recv_type("ack")
    assert ack["d"]["replayed"] == 0
    for ws in (carol_ws, carol_json, again):
        await ws.close()
    await t.close()


async def test_leaving_stops_delivery_for_every_socket_of_the_user(parley: Running) -> None:
    t = await make_team(parley)
    chan = await t.channel(t.bob, "launch", members=(t.carol,))
    sockets: list[WsClient] = [await t.connect(t.carol) for _ in range(3)]
    await settle()
    await expect(t.carol.api, "POST", t.c(chan, "/leave"), 204)
    for ws in sockets:
        await ws.recv_type("channel.left")
    await t.post(t.bob, chan, "gone")
    for ws in sockets:
        assert not _about(await drain(ws, 0.2), chan, set(), t.carol.id)
        await ws.close()
    await t.close()


async def test_making_a_channel_private_hides_it_from_non_members(parley: Running) -> None:
    t = await make_team(parley)
    chan = await t.channel(t.bob, "launch", members=(t.carol,))
    await t.post(t.bob, chan, f"{SECRET_WORD} was public")
    await t.indexed()
    hits = await expect(t.ada.api, "GET", t.w("/search"), 200, params={"q": SECRET_WORD})
    assert len(hits["messages"]) == 1, "public channels are searchable by full members"
    await expect(t.ann.api, "POST", t.c(chan, "/join"), 200)
    await expect(t.ann.api, "POST", t.c(chan, "/make-private"), 200)
    hits = await expect(t.ada.api, "GET", t.w("/search"), 200, params={"q": SECRET_WORD})
    assert hits["messages"] == []
    await expect(t.ada.api, "GET", t.c(chan, "/messages"), 404, "channel_not_found")
    await expect(t.ada.api, "POST", t.c(chan, "/join"), 404, "channel_not_found")
    # Members keep access.
    for u in (t.bob, t.carol, t.ann):
        await expect(u.api, "GET", t.c(chan, "/messages"), 200)
    await t.close()


async def test_guests_see_only_the_channels_they_are_in(parley: Running) -> None:
    t = await make_team(parley)
    chan = await t.channel(t.bob, "launch")
    await t.post(t.bob, chan, f"{SECRET_WORD} public talk")
    await expect(t.gus.api, "GET", t.c(chan, "/messages"), 404, "channel_not_found")
    await t.indexed()
    hits = await expect(t.gus.api, "GET", t.w("/search"), 200, params={"q": SECRET_WORD})
    assert hits["messages"] == []
    await expect(t.bob.api, "POST", t.c(chan, "/members"), 200, json={"user_ids": [t.gus.id]})
    hits = await expect(t.gus.api, "GET", t.w("/search"), 200, params={"q": SECRET_WORD})
    assert len(hits["messages"]) == 1
    await t.close()
