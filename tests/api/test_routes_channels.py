"""api/routes_channels.py through real HTTP: settings, membership, lists
with read state, DMs and marking read - happy paths and refusals."""

from __future__ import annotations

from server.runner import Running
from tests.api.helpers import drain, expect, make_team, make_user, settle, types


async def test_rename_topic_purpose_and_their_permissions(parley: Running) -> None:
    t = await make_team(parley)
    chan = await t.channel(t.bob, "launch", members=(t.carol, t.gus))
    out = await expect(t.carol.api, "PATCH", t.c(chan), 200,
                       json={"topic": "T-minus 3", "purpose": "ship it"})
    assert (out["topic"], out["purpose"], out["name"]) == ("T-minus 3", "ship it", "launch")
    # Renaming: staff or the creator; not other members; guests not even the topic.
    await expect(t.carol.api, "PATCH", t.c(chan), 403, "permission_denied",
                 json={"name": "mine"})
    await expect(t.gus.api, "PATCH", t.c(chan), 403, "permission_denied", json={"topic": "x"})
    assert (await expect(t.bob.api, "PATCH", t.c(chan), 200, json={"name": "Liftoff"}))[
        "name"] == "liftoff"
    assert (await expect(t.ann.api, "PATCH", t.c(chan), 200, json={"name": "launch"}))[
        "name"] == "launch"
    await t.channel(t.carol, "taken")
    await expect(t.bob.api, "PATCH", t.c(chan), 409, "name_taken", json={"name": "taken"})
    await expect(t.bob.api, "PATCH", t.c(chan), 409, "default_channel",
                 json={"name": "general"})
    await expect(t.ada.api, "PATCH", t.c(t.general), 409, "default_channel",
                 json={"name": "lobby"})
    await expect(t.bob.api, "PATCH", t.c(chan), 400, "invalid_channel_name",
                 json={"name": "no spaces"})
    await expect(t.bob.api, "PATCH", t.c(chan), 400, "invalid_topic",
                 json={"topic": "a\x07b"})
    await expect(t.bob.api, "PATCH", t.c(chan), 400, "invalid_topic", json={"topic": "x" * 251})
    await expect(t.bob.api, "PATCH", t.c(chan), 400, "invalid_request", json={"kind": "dm"})
    await expect(t.bob.api, "PATCH", t.c("424242"), 404, "channel_not_found", json={"topic": ""})
    got = await expect(t.carol.api, "GET", t.c(chan), 200)
    assert got["is_member"] and got["topic"] == "T-minus 3"
    await t.close()


async def test_archive_unarchive_and_convert_to_private(parley: Running) -> None:
    t = await make_team(parley)
    chan = await t.channel(t.bob, "launch", members=(t.carol,))
    await expect(t.carol.api, "POST", t.c(chan, "/archive"), 403, "permission_denied")
    assert (await expect(t.bob.api, "POST", t.c(chan, "/archive"), 200))["archived"]
    assert (await expect(t.bob.api, "POST", t.c(chan, "/archive"), 200))["archived"]
    await expect(t.carol.api, "POST", t.c(chan, "/messages"), 403, "channel_archived",
                 json={"text": "hi"})
    await expect(t.ann.api, "POST", t.c(chan, "/unarchive"), 200)
    await t.post(t.carol, chan, "back")
    await expect(t.ada.api, "POST", t.c(t.general, "/archive"), 409, "default_channel")
    # Converting: staff only; non-members lose sight of it at once.
    await expect(t.bob.api, "POST", t.c(chan, "/make-private"), 403, "permission_denied")
    await expect(t.ann.api, "GET", t.c(chan), 200)
    out = await expect(t.ann.api, "POST", t.c(chan, "/make-private"), 200)
    assert out["kind"] == "private"
    await expect(t.ann.api, "POST", t.c(chan, "/make-private"), 404, "channel_not_found")
    for u in (t.ada, t.ann):  # staff who are not members cannot see it any more
        await expect(u.api, "GET", t.c(chan), 404, "channel_not_found")
        await expect(u.api, "GET", t.c(chan, "/messages"), 404, "channel_not_found")
    await expect(t.carol.api, "GET", t.c(chan, "/messages"), 200)
    await expect(t.ada.api, "POST", t.c(t.general, "/make-private"), 409, "default_channel")
    await t.close()


async def test_join_leave_add_remove_and_member_lists(parley: Running) -> None:
    t = await make_team(parley)
    pub = await t.channel(t.bob, "launch")
    priv = await t.channel(t.bob, "secret", "private")
    await expect(t.carol.api, "POST", t.c(pub, "/join"), 200)
    await expect(t.carol.api, "POST", t.c(pub, "/join"), 200)  # idempotent
    await expect(t.carol.api, "POST", t.c(priv, "/join"), 404, "channel_not_found")
    await expect(t.gus.api, "POST", t.c(pub, "/join"), 404, "channel_not_found")  # guests
    # Private: members add others (guests included); outsiders cannot.
    await expect(t.carol.api, "POST", t.c(priv, "/members"), 404, "channel_not_found",
                 json={"user_ids": [t.carol.id]})
    added = await expect(t.bob.api, "POST", t.c(priv, "/members"), 200,
                         json={"user_ids": [t.carol.id, t.gus.id]})
    assert sorted(added["added"]) == sorted([t.carol.id, t.gus.id])
    again = await expect(t.bob.api, "POST", t.c(priv, "/members"), 200,
                         json={"user_ids": [t.carol.id]})
    assert again["added"] == []
    await expect(t.gus.api, "POST", t.c(priv, "/members"), 403, "permission_denied",
                 json={"user_ids": [t.ann.id]})
    await expect(t.bob.api, "POST", t.c(priv, "/members"), 404, "user_not_found",
                 json={"user_ids": [t.eve.id]})
    await expect(t.bob.api, "POST", t.c(priv, "/members"), 400, "invalid_request",
                 json={"user_ids": []})
    members = await expect(t.gus.api, "GET", t.c(priv, "/members"), 200, params={"limit": 2})
    assert len(members["members"]) == 2 and members["next_cursor"]
    rest = await expect(t.gus.api, "GET", t.c(priv, "/members"), 200,
                        params={"cursor": members["next_cursor"]})
    ids = [m["user_id"] for m in members["members"] + rest["members"]]
    assert sorted(ids) == sorted([t.bob.id, t.carol.id, t.gus.id])
    # Removing: staff or the creator; members of higher rank are safe.
    await expect(t.carol.api, "DELETE", t.c(priv, f"/members/{t.gus.id}"), 403,
                 "permission_denied")
    await expect(t.bob.api, "DELETE", t.c(priv, f"/members/{t.gus.id}"), 204)
    await expect(t.gus.api, "GET", t.c(priv, "/messages"), 404, "channel_not_found")
    await expect(t.bob.api, "DELETE", t.c(priv, f"/members/{t.gus.id}"), 404, "user_not_found")
    await expect(t.carol.api, "POST", t.c(priv, "/leave"), 204)
    await expect(t.carol.api, "POST", t.c(priv, "/leave"), 404, "channel_not_found")
    await expect(t.bob.api, "POST", t.c(t.general, "/leave"), 409, "default_channel")
    await expect(t.bob.api, "DELETE", t.c(pub, f"/members/{t.bob.id}"), 204)  # self = leave
    await t.close()


async def test_channel_list_pages_with_membership_and_unread_state(parley: Running) -> None:
    t = await make_team(parley)
    names = [f"c{i}" for i in range(5)]
    ids = [await t.channel(t.ada, n) for n in names]
    priv = await t.channel(t.ada, "hidden", "private")
    await t.post(t.ada, ids[0], "one")
    await t.post(t.ada, ids[0], "two")
    await expect(t.bob.api, "POST", t.c(ids[0], "/join"), 200)
    mine = await expect(t.bob.api, "GET", t.w("/channels"), 200)
    got = {c["name"]: c for c in mine["channels"]}
    assert set(got) == {"general", "c0"}
    assert (got["c0"]["unread_count"], got["c0"]["last_read_seq"], got["c0"]["is_member"]) == (
        2, 0, True)
    page = await expect(t.bob.api, "GET", t.w("/channels"), 200,
                        params={"include_public": "true", "limit": 3})
    assert len(page["channels"]) == 3 and page["next_cursor"]
    seen = list(page["channels"])
    while page["next_cursor"]:
        page = await expect(t.bob.api, "GET", t.w("/channels"), 200,
                            params={"include_public": "true", "limit": 3,
                                    "cursor": page["next_cursor"]})
        seen += page["channels"]
    assert {c["name"] for c in seen} == {"general", *names}, "never the private one"
    c1 = next(c for c in seen if c["name"] == "c1")
    assert (c1["is_member"], c1["unread_count"], c1["last_read_seq"]) == (False, None, None)
    # Guests see only their channels even when asking for public ones.
    guest = await expect(t.gus.api, "GET", t.w("/channels"), 200,
                         params={"include_public": "true"})
    assert [c["name"] for c in guest["channels"]] == ["general"]
    await expect(t.gus.api, "GET", t.w("/channels/public"), 403, "permission_denied")
    assert priv not in {c["id"] for c in seen}
    await t.close()


async def test_mark_read_reaches_every_device_and_clamps(parley: Running) -> None:
    t = await make_team(parley)
    for i in range(3):
        await t.post(t.ada, t.general, f"m{i}")
    phone = await t.connect(t.bob)
    laptop = await t.connect(t.bob, json_mode=True)
    state = await expect(t.bob.api, "POST", t.c(t.general, "/read"), 200, json={"seq": 2})
    assert (state["last_read_seq"], state["unread_count"]) == (2, 1)
    for ws in (phone, laptop):
        ev = await ws.recv_type("channel.read")
        assert ev["d"]["last_read_seq"] == 2 and ev["d"]["unread_count"] == 1
        assert str(ev["d"]["channel_id"]) == t.general
    state = await expect(t.bob.api, "POST", t.c(t.general, "/read"), 200, json={"seq": 99})
    assert (state["last_read_seq"], state["unread_count"]) == (3, 0)
    state = await expect(t.bob.api, "POST", t.c(t.general, "/read"), 200, json={"seq": 0})
    assert state["unread_count"] == 3, "a lower seq marks messages unread again"
    await expect(t.bob.api, "POST", t.c(t.general, "/read"), 400, "invalid_request",
                 json={"seq": -1})
    pub = await t.channel(t.ada, "launch")
    await expect(t.bob.api, "POST", t.c(pub, "/read"), 403, "not_in_channel", json={})
    await phone.close()
    await laptop.close()
    await t.close()


async def test_dms_are_get_or_create_by_member_set(parley: Running) -> None:
    t = await make_team(parley)
    first = await expect(t.bob.api, "POST", t.w("/dms"), 201, json={"user_ids": [t.carol.id]})
    assert first["kind"] == "dm" and first["name"] is None
    again = await expect(t.carol.api, "POST", t.w("/dms"), 200, json={"user_ids": [t.bob.id]})
    assert again["id"] == first["id"], "the same pair, either way round"
    group = await expect(t.bob.api, "POST", t.w("/dms"), 201,
                         json={"user_ids": [t.carol.id, t.ann.id, t.carol.id]})
    assert group["kind"] == "group_dm" and group["id"] != first["id"]
    await t.post(t.ann, group["id"], "hi both")
    # Others cannot see it, not even admins or the owner.
    await expect(t.ada.api, "GET", t.c(group["id"], "/messages"), 404, "channel_not_found")
    await expect(t.bob.api, "POST", t.w("/dms"), 400, "too_many_members",
                 json={"user_ids": [str(i) for i in range(1, 9)]})
    await expect(t.bob.api, "POST", t.w("/dms"), 404, "user_not_found",
                 json={"user_ids": [t.eve.id]})
    note = await expect(t.bob.api, "POST", t.w("/dms"), 201, json={"user_ids": []})
    assert note["kind"] == "dm"
    await expect(t.bob.api, "POST", t.c(first["id"], "/leave"), 400, "not_allowed_for_dm")
    await expect(t.bob.api, "PATCH", t.c(first["id"]), 400, "not_allowed_for_dm",
                 json={"topic": "x"})
    await expect(t.bob.api, "POST", t.c(first["id"], "/members"), 400, "not_allowed_for_dm",
                 json={"user_ids": [t.ann.id]})
    await t.close()


async def test_a_new_dm_reaches_its_members_live(parley: Running) -> None:
    t = await make_team(parley)
    carol_ws = await t.connect(t.carol)
    dm = await expect(t.bob.api, "POST", t.w("/dms"), 201, json={"user_ids": [t.carol.id]})
    joined = await carol_ws.recv_type("channel.joined")
    assert str(joined["d"]["id"]) == dm["id"] and joined["d"]["kind"] == "dm"
    await settle()
    await t.post(t.bob, dm["id"], "psst")
    got = await carol_ws.recv_type("message.created")
    assert got["d"]["text"] == "psst"
    await carol_ws.close()
    await t.close()


async def test_concurrent_dm_creation_makes_one_channel(parley: Running) -> None:
    import asyncio

    t = await make_team(parley)
    results = await asyncio.gather(*(
        t.bob.api.http.post(t.w("/dms"), json={"user_ids": [t.carol.id, t.ann.id]})
        for _ in range(5)))
    assert {r.status_code for r in results} <= {200, 201}
    assert len({r.json()["id"] for r in results}) == 1
    assert [r.status_code for r in results].count(201) == 1
    await t.close()


async def test_channel_events_go_to_channel_members(parley: Running) -> None:
    t = await make_team(parley)
    chan = await t.channel(t.bob, "launch", members=(t.carol,))
    carol_ws = await t.connect(t.carol)
    dave = await make_user(parley, "dave")
    t.extra.append(dave)
    await expect(t.ada.api, "POST", t.w("/members"), 201, json={"email": dave.email})
    await expect(t.bob.api, "PATCH", t.c(chan), 200, json={"topic": "new"})
    await expect(t.bob.api, "POST", t.c(chan, "/members"), 200, json={"user_ids": [dave.id]})
    evs = await drain(carol_ws)
    assert "channel.updated" in types(evs) and "channel.member_joined" in types(evs)
    upd = next(e for e in evs if e["t"] == "channel.updated")
    assert upd["d"]["topic"] == "new"
    await carol_ws.close()
    await t.close()
