"""Event verification in the style of Zulip's ``verify_action``: take a
client's state (REST), perform an action, apply the events the client's
socket received to the stale state, and compare with a fresh fetch.

``ClientModel.apply`` is the reference client: it is exactly what a client
must do with each event type (docs/protocol.md).  The only fetch it makes is
the history of a channel it has just joined, as real clients do.  Every
event type in ``parley.events.EVENT_TYPES`` must be exercised here, except
``session.revoked`` (tests/api/test_routes_auth.py) and ``message.ephemeral``
(never stored, so no state to verify: tests/api/slack/test_web_api.py).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from parley import events
from server.runner import Running
from tests.api.helpers import Team, User, drain, expect, make_team, settle
from tests.fixtures.parley import WsClient

State = dict[str, Any]
_MESSAGE_FIELDS = ("id", "channel_id", "seq", "user_id", "text", "client_msg_id",
                   "thread_root_id", "ts", "edited_ts", "deleted", "also_in_channel", "files")
# Present in message events only when the message has them (docs/protocol.md):
# a client reads a missing one as null, as the REST API shows it.
_OPTIONAL_MESSAGE_FIELDS = ("blocks", "attachments", "bot_id", "app_id", "subtype")
_CHANNEL_FIELDS = ("id", "workspace_id", "kind", "name", "topic", "purpose", "archived",
                   "last_seq")


def _message(d: dict[str, Any]) -> dict[str, Any]:
    return {**{k: d[k] for k in _MESSAGE_FIELDS},
            **{k: d.get(k) for k in _OPTIONAL_MESSAGE_FIELDS}}


class ClientModel:
    def __init__(self, t: Team, me: User) -> None:
        self.t = t
        self.me = me

    # -- the fresh state, from REST ----------------------------------------------

    async def fetch(self) -> State:
        api = self.me.api
        resp = await api.http.get(self.t.w())
        if resp.status_code == 404:
            return {"gone": True}
        state: State = {"role": resp.json()["role"], "channels": {}, "messages": {},
                        "pins": {}, "members": {}, "following": {}}
        chans = await expect(api, "GET", self.t.w("/channels"), 200, params={"limit": 200})
        for c in chans["channels"]:
            state["channels"][c["id"]] = c
            await self.fetch_channel(state, c["id"])
        return state

    async def fetch_channel(self, state: State, cid: str) -> None:
        api, t = self.me.api, self.t
        page = await expect(api, "GET", t.c(cid, "/messages"), 200, params={"limit": 200})
        state["messages"][cid] = {m["id"]: m for m in page["messages"]}
        pins = await expect(api, "GET", t.c(cid, "/pins"), 200)
        state["pins"][cid] = [p["message"]["id"] for p in pins["pins"]]
        members = await expect(api, "GET", t.c(cid, "/members"), 200, params={"limit": 200})
        state["members"][cid] = sorted(m["user_id"] for m in members["members"])
        for m in page["messages"]:
            if m["thread_root_id"] is None:
                th = await expect(api, "GET", t.m(cid, m["id"], "/thread"), 200)
                state["following"][m["id"]] = th["following"]

    # -- the reference client -------------------------------------------------------

    def _counted(self, ch: dict[str, Any], m: dict[str, Any]) -> bool:
        """Does this message count as unread for me?"""
        return (m["user_id"] != self.me.id and not m["deleted"]
                and (m["thread_root_id"] is None or m["also_in_channel"])
                and m["seq"] > ch["last_read_seq"])

    async def apply(self, state: State, ev: dict[str, Any]) -> None:
        kind, d = ev["t"], ev["d"]
        if state.get("gone"):
            return
        if kind == events.MEMBERSHIP_ENDED:
            state.clear()
            state["gone"] = True
            return
        if kind == events.MEMBERSHIP_UPDATED:
            state["role"] = d["role"]
            return
        if kind == events.CHANNEL_JOINED:
            cid = d["id"]
            state["channels"][cid] = {**{k: d[k] for k in _CHANNEL_FIELDS}, "is_member": True,
                                      "last_read_seq": d["last_read_seq"],
                                      "unread_count": d["unread_count"],
                                      "mention_count": d["mention_count"]}
            await self.fetch_channel(state, cid)  # history of a channel one just joined
            return
        cid = d.get("channel_id", d.get("id"))
        if cid not in state["channels"]:
            return  # not (or no longer) mine
        ch = state["channels"][cid]
        msgs = state["messages"][cid]
        if kind == events.CHANNEL_LEFT:
            for mid in msgs:
                state["following"].pop(mid, None)
            for key in ("channels", "messages", "pins", "members"):
                del state[key][cid]
        elif kind == events.CHANNEL_UPDATED:
            ch.update({k: d[k] for k in _CHANNEL_FIELDS})
        elif kind == events.MEMBER_JOINED:
            state["members"][cid] = sorted({*state["members"][cid], d["user_id"]})
        elif kind == events.MEMBER_LEFT:
            state["members"][cid] = sorted(set(state["members"][cid]) - {d["user_id"]})
        elif kind == events.CHANNEL_READ:
            ch.update({k: d[k] for k in ("last_read_seq", "unread_count", "mention_count")})
        elif kind == events.MESSAGE_CREATED:
            m = {**_message(d), "reactions": [], "reply_count": 0,
                 "latest_reply_ts": None, "replier_ids": [], "pinned": False}
            msgs[m["id"]] = m
            ch["last_seq"] = max(ch["last_seq"], m["seq"])
            if self._counted(ch, m):
                ch["unread_count"] += 1
            if m["thread_root_id"] is None:
                state["following"].setdefault(m["id"], False)
        elif kind == events.MESSAGE_UPDATED:
            msgs[d["message"]["id"]].update(_message(d["message"]))
        elif kind == events.MESSAGE_DELETED:
            m = msgs[d["message"]["id"]]
            if self._counted(ch, m):
                ch["unread_count"] -= 1
            m.update(_message(d["message"]))
            m.update(reactions=[], pinned=False)  # a tombstone keeps neither
            state["pins"][cid] = [p for p in state["pins"][cid] if p != m["id"]]
        elif kind in (events.REACTION_ADDED, events.REACTION_REMOVED):
            m = msgs[d["message_id"]]
            group = next((r for r in m["reactions"] if r["emoji"] == d["emoji"]), None)
            if kind == events.REACTION_ADDED:
                if group is None:
                    m["reactions"].append({"emoji": d["emoji"], "count": 0, "user_ids": []})
                    group = m["reactions"][-1]
                group["user_ids"].append(d["user_id"])
            else:
                assert group is not None
                group["user_ids"].remove(d["user_id"])
            group["count"] = len(group["user_ids"])
            m["reactions"] = [r for r in m["reactions"] if r["count"]]
        elif kind == events.MESSAGE_PINNED:
            msgs[d["message_id"]]["pinned"] = True
            state["pins"][cid].insert(0, d["message_id"])
        elif kind == events.MESSAGE_UNPINNED:
            msgs[d["message_id"]]["pinned"] = False
            state["pins"][cid].remove(d["message_id"])
        elif kind == events.THREAD_UPDATED:
            msgs[d["thread_root_id"]].update(
                reply_count=d["reply_count"], latest_reply_ts=d["latest_reply_ts"],
                replier_ids=d["replier_ids"])
        elif kind in (events.MENTION_CREATED, events.MENTION_REMOVED):
            if d["message_seq"] > ch["last_read_seq"]:
                ch["mention_count"] += 1 if kind == events.MENTION_CREATED else -1
        elif kind in (events.THREAD_FOLLOWED, events.THREAD_UNFOLLOWED):
            state["following"][d["thread_root_id"]] = kind == events.THREAD_FOLLOWED
        else:
            raise AssertionError(f"the reference client does not know {kind}")


class Verifier:
    def __init__(self, model: ClientModel, ws: WsClient) -> None:
        self.model = model
        self.ws = ws
        self.seen: set[str] = set()

    async def check(self, name: str, action: Callable[[], Awaitable[Any]],
                    expected: set[str]) -> Any:
        await drain(self.ws, 0.05)
        before = await self.model.fetch()
        result = await action()
        evs = [e for e in await drain(self.ws, 0.3) if e["t"] != "heartbeat_ack"]
        got = {e["t"] for e in evs}
        assert expected <= got, (name, expected - got, evs)
        state = copy.deepcopy(before)
        for ev in evs:
            await self.model.apply(state, ev)
        fresh = await self.model.fetch()
        assert state == fresh, (name, evs, _diff(state, fresh))
        self.seen |= got
        await settle(0.05)
        return result


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{path}.{k}")
        return out
    return [] if a == b else [f"{path}: applied={a!r} fetched={b!r}"]


async def test_every_event_type_keeps_a_client_in_sync(parley: Running) -> None:
    t = await make_team(parley)
    carol = t.carol
    ws = await t.connect(carol, json_mode=True)
    v = Verifier(ClientModel(t, carol), ws)
    g = t.general

    async def post(user: User, text: str, channel: str = g, **kw: Any) -> dict[str, Any]:
        return await t.post(user, channel, text, **kw)

    plain = await v.check("post", lambda: post(t.bob, "hello"), {events.MESSAGE_CREATED})
    await v.check("post with blocks", lambda: post(
        t.bob, "", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}],
        attachments=[{"fallback": "f", "text": "t"}]), {events.MESSAGE_CREATED})
    mention = await v.check("mention", lambda: post(t.bob, f"hi <@{carol.id}>"),
                            {events.MESSAGE_CREATED, events.MENTION_CREATED,
                             events.THREAD_FOLLOWED})
    root = await v.check("own root", lambda: post(carol, "my question"),
                         {events.MESSAGE_CREATED})
    reply = await v.check("reply", lambda: post(t.bob, "an answer",
                                                thread_root_id=root["id"]),
                          {events.MESSAGE_CREATED, events.THREAD_UPDATED})
    await v.check("broadcast reply", lambda: post(t.ann, "also here", thread_root_id=root["id"],
                                                  also_in_channel=True),
                  {events.MESSAGE_CREATED, events.THREAD_UPDATED})
    await v.check("edit away a mention", lambda: expect(
        t.bob.api, "PATCH", t.m(g, mention["id"]), 200, json={"text": "hi all"}),
        {events.MESSAGE_UPDATED, events.MENTION_REMOVED})
    await v.check("edit in a mention", lambda: expect(
        t.bob.api, "PATCH", t.m(g, mention["id"]), 200, json={"text": f"hi <@{carol.id}>!"}),
        {events.MESSAGE_UPDATED, events.MENTION_CREATED})
    for who in (t.bob, t.ann):
        await v.check("react", lambda who=who: expect(  # type: ignore[misc]
            who.api, "PUT", t.m(g, plain["id"], "/reactions/tada"), 204),
            {events.REACTION_ADDED})
    await v.check("react other", lambda: expect(
        t.bob.api, "PUT", t.m(g, plain["id"], "/reactions/eyes"), 204), {events.REACTION_ADDED})
    await v.check("unreact", lambda: expect(
        t.bob.api, "DELETE", t.m(g, plain["id"], "/reactions/tada"), 204),
        {events.REACTION_REMOVED})
    await v.check("pin", lambda: expect(t.bob.api, "PUT", t.m(g, plain["id"], "/pin"), 204),
                  {events.MESSAGE_PINNED})
    await v.check("pin another", lambda: expect(
        t.bob.api, "PUT", t.m(g, root["id"], "/pin"), 204), {events.MESSAGE_PINNED})
    await v.check("unpin", lambda: expect(t.bob.api, "DELETE", t.m(g, plain["id"], "/pin"), 204),
                  {events.MESSAGE_UNPINNED})
    await v.check("delete reply", lambda: expect(t.bob.api, "DELETE", t.m(g, reply["id"]), 204),
                  {events.MESSAGE_DELETED, events.THREAD_UPDATED})
    await v.check("delete pinned root", lambda: expect(
        carol.api, "DELETE", t.m(g, root["id"]), 204), {events.MESSAGE_DELETED})
    await v.check("delete a mention", lambda: expect(
        t.bob.api, "DELETE", t.m(g, mention["id"]), 204),
        {events.MESSAGE_DELETED, events.MENTION_REMOVED})
    await v.check("mark read elsewhere", lambda: expect(
        carol.api, "POST", t.c(g, "/read"), 200, json={"seq": 2}), {events.CHANNEL_READ})
    thread_root = await post(t.bob, "thread two")
    await post(t.ann, "reply two", thread_root_id=thread_root["id"])
    await v.check("follow", lambda: expect(
        carol.api, "PUT", t.m(g, thread_root["id"], "/follow"), 204), {events.THREAD_FOLLOWED})
    await v.check("unfollow", lambda: expect(
        carol.api, "DELETE", t.m(g, thread_root["id"], "/follow"), 204),
        {events.THREAD_UNFOLLOWED})

    launch = await t.channel(t.bob, "launch")
    await post(t.bob, "history before carol", launch)
    await v.check("added to a channel", lambda: expect(
        t.bob.api, "POST", t.c(launch, "/members"), 200, json={"user_ids": [carol.id]}),
        {events.CHANNEL_JOINED})
    await v.check("someone joins", lambda: expect(t.ann.api, "POST", t.c(launch, "/join"), 200),
                  {events.MEMBER_JOINED})
    await v.check("guest added", lambda: expect(
        t.bob.api, "POST", t.c(launch, "/members"), 200, json={"user_ids": [t.gus.id]}),
        {events.MEMBER_JOINED})
    await v.check("topic", lambda: expect(t.bob.api, "PATCH", t.c(launch), 200,
                                          json={"topic": "go", "name": "liftoff"}),
                  {events.CHANNEL_UPDATED})
    await v.check("archive", lambda: expect(t.bob.api, "POST", t.c(launch, "/archive"), 200),
                  {events.CHANNEL_UPDATED})
    await v.check("unarchive", lambda: expect(t.bob.api, "POST", t.c(launch, "/unarchive"), 200),
                  {events.CHANNEL_UPDATED})
    await v.check("make private", lambda: expect(
        t.ann.api, "POST", t.c(launch, "/make-private"), 200), {events.CHANNEL_UPDATED})
    await v.check("someone removed", lambda: expect(
        t.bob.api, "DELETE", t.c(launch, f"/members/{t.gus.id}"), 204), {events.MEMBER_LEFT})
    await v.check("someone leaves", lambda: expect(t.ann.api, "POST", t.c(launch, "/leave"), 204),
                  {events.MEMBER_LEFT})
    await v.check("removed myself from view", lambda: expect(
        t.bob.api, "DELETE", t.c(launch, f"/members/{carol.id}"), 204), {events.CHANNEL_LEFT})
    await v.check("a new DM", lambda: expect(t.bob.api, "POST", t.w("/dms"), 201,
                                             json={"user_ids": [carol.id]}),
                  {events.CHANNEL_JOINED})
    await v.check("role", lambda: expect(t.ada.api, "PATCH", t.w(f"/members/{carol.id}"), 200,
                                         json={"role": "guest"}), {events.MEMBERSHIP_UPDATED})
    await v.check("deactivated", lambda: expect(
        t.ann.api, "POST", t.w(f"/members/{carol.id}/deactivate"), 204),
        {events.MEMBERSHIP_ENDED, events.CHANNEL_LEFT})

    # session.revoked: tests/api/test_routes_auth.py; message.ephemeral changes no state
    # (never stored): tests/api/slack/test_web_api.py.
    untested = set(events.EVENT_TYPES) - v.seen - {events.SESSION_REVOKED,
                                                   events.MESSAGE_EPHEMERAL}
    assert not untested, f"event types without a verify_action check: {untested}"
    await ws.close()
    await t.close()


def test_every_event_type_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    missing = [t for t in events.EVENT_TYPES if f"`{t}`" not in doc]
    assert not missing, f"event types missing from docs/protocol.md: {missing}"
