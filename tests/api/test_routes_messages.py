"""api/routes_messages.py through real HTTP: edit, delete, pins, reactions,
threads, follows, mentions and search - happy paths and refusals."""

from __future__ import annotations

import dataclasses

from server.runner import Running
from tests.api.helpers import drain, expect, make_team, settle, types


async def test_edit_sets_edited_time_and_only_the_author_may(parley: Running) -> None:
    t = await make_team(parley)
    msg = await t.post(t.bob, t.general, "helo")
    assert msg["edited_ts"] is None
    edited = await expect(t.bob.api, "PATCH", t.m(t.general, msg["id"]), 200,
                          json={"text": "hello"})
    assert edited["text"] == "hello" and edited["edited_ts"] >= msg["ts"]
    assert edited["seq"] == msg["seq"] and edited["id"] == msg["id"]
    await expect(t.carol.api, "PATCH", t.m(t.general, msg["id"]), 403, "not_author",
                 json={"text": "mine now"})
    await expect(t.ada.api, "PATCH", t.m(t.general, msg["id"]), 403, "not_author",
                 json={"text": "owners cannot either"})
    await expect(t.bob.api, "PATCH", t.m(t.general, msg["id"]), 400, "empty_message",
                 json={"text": "   "})
    await expect(t.bob.api, "PATCH", t.m(t.general, msg["id"]), 413, "message_too_long",
                 json={"text": "x" * 40_001})
    await expect(t.bob.api, "PATCH", t.m(t.general, "999"), 404, "message_not_found",
                 json={"text": "x"})
    await expect(t.bob.api, "PATCH", t.m(t.general, msg["id"]), 400, "invalid_request",
                 json={"text": "x", "extra": 1})
    got = await expect(t.carol.api, "GET", t.m(t.general, msg["id"]), 200)
    assert got["text"] == "hello" and got["edited_ts"] == edited["edited_ts"]
    await t.close()


async def test_delete_leaves_a_tombstone_that_keeps_its_seq(parley: Running) -> None:
    t = await make_team(parley)
    first = await t.post(t.bob, t.general, "secret plans")
    second = await t.post(t.carol, t.general, "after")
    await expect(t.carol.api, "DELETE", t.m(t.general, first["id"]), 403, "permission_denied")
    await expect(t.bob.api, "DELETE", t.m(t.general, first["id"]), 204)
    await expect(t.bob.api, "DELETE", t.m(t.general, first["id"]), 204)  # idempotent
    page = await expect(t.carol.api, "GET", t.c(t.general, "/messages"), 200)
    assert [(m["seq"], m["deleted"], m["text"]) for m in page["messages"]] == [
        (1, True, ""), (2, False, "after")]
    await expect(t.bob.api, "PATCH", t.m(t.general, first["id"]), 409, "message_deleted",
                 json={"text": "undo"})
    # Staff may delete anyone's message.
    await expect(t.ann.api, "DELETE", t.m(t.general, second["id"]), 204)
    await t.indexed()
    hits = await expect(t.ada.api, "GET", t.w("/search"), 200, params={"q": "secret"})
    assert hits["messages"] == []
    await t.close()


async def test_pins_are_idempotent_and_listed(parley: Running) -> None:
    t = await make_team(parley)
    msg = await t.post(t.bob, t.general, "pin me")
    for _ in range(2):
        await expect(t.carol.api, "PUT", t.m(t.general, msg["id"], "/pin"), 204)
    pins = await expect(t.bob.api, "GET", t.c(t.general, "/pins"), 200)
    assert [(p["message"]["id"], p["pinned_by"]) for p in pins["pins"]] == [
        (msg["id"], t.carol.id)]
    got = await expect(t.bob.api, "GET", t.m(t.general, msg["id"]), 200)
    assert got["pinned"] is True
    # Guests may not pin (the permission table).
    await expect(t.gus.api, "PUT", t.m(t.general, msg["id"], "/pin"), 403, "permission_denied")
    await expect(t.carol.api, "DELETE", t.m(t.general, msg["id"], "/pin"), 204)
    await expect(t.carol.api, "DELETE", t.m(t.general, msg["id"], "/pin"), 204)
    assert (await expect(t.bob.api, "GET", t.c(t.general, "/pins"), 200))["pins"] == []
    await expect(t.carol.api, "PUT", t.m(t.general, "12345", "/pin"), 404, "message_not_found")
    # A deleted message drops its pin and cannot be pinned again.
    await expect(t.carol.api, "PUT", t.m(t.general, msg["id"], "/pin"), 204)
    await expect(t.bob.api, "DELETE", t.m(t.general, msg["id"]), 204)
    assert (await expect(t.bob.api, "GET", t.c(t.general, "/pins"), 200))["pins"] == []
    await expect(t.carol.api, "PUT", t.m(t.general, msg["id"], "/pin"), 409, "message_deleted")
    await t.close()


async def test_reactions_are_idempotent_per_user_message_and_emoji(parley: Running) -> None:
    t = await make_team(parley)
    msg = await t.post(t.bob, t.general, "ship it")
    path = t.m(t.general, msg["id"], "/reactions/tada")
    for _ in range(3):
        await expect(t.carol.api, "PUT", path, 204)
    await expect(t.gus.api, "PUT", path, 204)
    await expect(t.bob.api, "PUT", t.m(t.general, msg["id"], "/reactions/+1"), 204)
    got = await expect(t.ada.api, "GET", t.m(t.general, msg["id"]), 200)
    assert got["reactions"] == [
        {"emoji": "tada", "count": 2, "user_ids": [t.carol.id, t.gus.id]},
        {"emoji": "+1", "count": 1, "user_ids": [t.bob.id]}]
    await expect(t.carol.api, "DELETE", path, 204)
    await expect(t.carol.api, "DELETE", path, 204)
    got = await expect(t.ada.api, "GET", t.m(t.general, msg["id"]), 200)
    assert got["reactions"][0] == {"emoji": "tada", "count": 1, "user_ids": [t.gus.id]}
    for bad in ("Tada", "no%20spaces", "x" * 65):
        await expect(t.carol.api, "PUT", t.m(t.general, msg["id"], f"/reactions/{bad}"), 400)
    await expect(t.carol.api, "PUT", t.m(t.general, "1", "/reactions/tada"), 404,
                 "message_not_found")
    await t.close()


async def test_reacting_needs_membership_of_the_channel(parley: Running) -> None:
    t = await make_team(parley)
    chan = await t.channel(t.bob, "launch")
    msg = await t.post(t.bob, chan, "hi")
    # Carol can see the public channel but has not joined it.
    await expect(t.carol.api, "PUT", t.m(chan, msg["id"], "/reactions/tada"), 403,
                 "not_in_channel")
    await expect(t.carol.api, "POST", t.c(chan, "/join"), 200)
    await expect(t.carol.api, "PUT", t.m(chan, msg["id"], "/reactions/tada"), 204)
    # Archived channels are read-only.
    await expect(t.bob.api, "POST", t.c(chan, "/archive"), 200)
    await expect(t.carol.api, "PUT", t.m(chan, msg["id"], "/reactions/+1"), 403,
                 "channel_archived")
    await expect(t.bob.api, "PATCH", t.m(chan, msg["id"]), 403, "channel_archived",
                 json={"text": "late"})
    await expect(t.bob.api, "POST", t.c(chan, "/messages"), 403, "channel_archived",
                 json={"text": "late"})
    await t.close()


async def test_threads_summaries_follows_and_also_send_to_channel(parley: Running) -> None:
    t = await make_team(parley)
    root = await t.post(t.bob, t.general, "question?")
    r1 = await t.post(t.carol, t.general, "answer 1", thread_root_id=root["id"])
    r2 = await t.post(t.ann, t.general, "answer 2", thread_root_id=root["id"],
                      also_in_channel=True)
    await t.post(t.carol, t.general, "answer 3", thread_root_id=root["id"])
    assert (r1["seq"], r2["seq"]) == (2, 3), "replies take channel seqs"
    assert r1["thread_root_id"] == root["id"] and r2["also_in_channel"] is True
    th = await expect(t.ada.api, "GET", t.m(t.general, root["id"], "/thread"), 200,
                      params={"limit": 2})
    assert th["root"]["reply_count"] == 3
    assert sorted(th["root"]["replier_ids"]) == sorted([t.carol.id, t.ann.id])
    assert th["root"]["latest_reply_ts"] >= r2["ts"]
    assert [r["text"] for r in th["replies"]] == ["answer 1", "answer 2"] and th["has_more"]
    assert th["following"] is False
    more = await expect(t.ada.api, "GET", t.m(t.general, root["id"], "/thread"), 200,
                        params={"after": th["replies"][-1]["seq"]})
    assert [r["text"] for r in more["replies"]] == ["answer 3"] and not more["has_more"]
    # Authors of the root and of replies follow automatically.
    for u in (t.bob, t.carol, t.ann):
        th = await expect(u.api, "GET", t.m(t.general, root["id"], "/thread"), 200)
        assert th["following"] is True, u.email
    # An explicit unfollow sticks for the root's author, until they reply.
    await expect(t.bob.api, "DELETE", t.m(t.general, root["id"], "/follow"), 204)
    await t.post(t.carol, t.general, "answer 4", thread_root_id=root["id"])
    th = await expect(t.bob.api, "GET", t.m(t.general, root["id"], "/thread"), 200)
    assert th["following"] is False
    await expect(t.ada.api, "PUT", t.m(t.general, root["id"], "/follow"), 204)
    assert (await expect(t.ada.api, "GET", t.m(t.general, root["id"], "/thread"), 200))[
        "following"]
    # Unread counts show top-level messages and broadcast replies only.
    chans = await expect(t.ada.api, "GET", t.w("/channels"), 200)
    assert chans["channels"][0]["unread_count"] == 2
    # Refusals.
    await expect(t.carol.api, "POST", t.c(t.general, "/messages"), 400, "invalid_thread_root",
                 json={"text": "x", "thread_root_id": r1["id"]})
    await expect(t.carol.api, "POST", t.c(t.general, "/messages"), 404, "message_not_found",
                 json={"text": "x", "thread_root_id": "424242"})
    await expect(t.carol.api, "POST", t.c(t.general, "/messages"), 400, "invalid_thread_root",
                 json={"text": "x", "also_in_channel": True})
    await expect(t.ada.api, "GET", t.m(t.general, r1["id"], "/thread"), 404, "thread_not_found")
    await expect(t.ada.api, "PUT", t.m(t.general, r1["id"], "/follow"), 404, "thread_not_found")
    # Deleting a reply updates the summary.
    await expect(t.carol.api, "DELETE", t.m(t.general, r1["id"]), 204)
    th = await expect(t.ada.api, "GET", t.m(t.general, root["id"], "/thread"), 200)
    assert th["root"]["reply_count"] == 3
    await t.close()


async def test_mentions_notify_members_and_count_per_channel(parley: Running) -> None:
    t = await make_team(parley)
    carol_ws = await t.connect(t.carol)
    bob_ws = await t.connect(t.bob)
    msg = await t.post(t.bob, t.general, f"hey <@{t.carol.id}> and <@{t.eve.id}>")
    evs = await drain(carol_ws)
    mention = next(e for e in evs if e["t"] == "mention.created")
    assert (str(mention["d"]["message_id"]), mention["d"]["message_seq"]) == (msg["id"], 1)
    assert "mention.created" not in types(await drain(bob_ws, 0.2)), "authors are not mentioned"
    chans = await expect(t.carol.api, "GET", t.w("/channels"), 200)
    assert chans["channels"][0]["mention_count"] == 1
    await t.post(t.ada, t.general, "@channel standup")
    chans = await expect(t.carol.api, "GET", t.w("/channels"), 200)
    assert chans["channels"][0]["mention_count"] == 2
    assert (await expect(t.ada.api, "GET", t.w("/channels"), 200))["channels"][0][
        "mention_count"] == 0
    # Editing the mention away removes it; every device hears about it.
    await drain(carol_ws, 0.1)
    await expect(t.bob.api, "PATCH", t.m(t.general, msg["id"]), 200, json={"text": "hey all"})
    assert "mention.removed" in types(await drain(carol_ws))
    chans = await expect(t.carol.api, "GET", t.w("/channels"), 200)
    assert chans["channels"][0]["mention_count"] == 1
    # Mark read clears counts.
    state = await expect(t.carol.api, "POST", t.c(t.general, "/read"), 200, json={})
    assert (state["unread_count"], state["mention_count"]) == (0, 0)
    await carol_ws.close()
    await bob_ws.close()
    await t.close()


async def test_at_channel_in_a_large_channel_needs_the_permission(parley: Running) -> None:
    parley.rt.services.settings = dataclasses.replace(parley.rt.settings,
                                                      large_channel_members=3)
    t = await make_team(parley)  # #general has 5 members
    await expect(t.bob.api, "POST", t.c(t.general, "/messages"), 403, "permission_denied",
                 json={"text": "@here lunch?"})
    await t.post(t.ann, t.general, "@here lunch?")  # admins may
    small = await t.channel(t.bob, "small", members=(t.carol,))
    await t.post(t.bob, small, "@channel fine here")
    # foo@here.com is not a mention.
    await t.post(t.bob, t.general, "mail me at foo@here.com")
    await t.close()


async def test_search_filters_and_pages(parley: Running) -> None:
    t = await make_team(parley)
    launch = await t.channel(t.bob, "launch", members=(t.carol,))
    for i in range(5):
        await t.post(t.bob, t.general, f"rocket update {i}")
    await t.post(t.carol, launch, "rocket in launch")
    await t.post(t.carol, t.general, "nothing to see")
    await t.indexed()
    hits = await expect(t.ada.api, "GET", t.w("/search"), 200, params={"q": "rocket", "limit": 4})
    assert len(hits["messages"]) == 4 and hits["next_cursor"]
    assert hits["messages"][0]["text"] == "rocket in launch"  # newest first
    rest = await expect(t.ada.api, "GET", t.w("/search"), 200,
                        params={"q": "rocket", "limit": 4, "cursor": hits["next_cursor"]})
    assert len(rest["messages"]) == 2 and rest["next_cursor"] is None
    by_chan = await expect(t.ada.api, "GET", t.w("/search"), 200,
                           params={"q": "rocket", "channel_id": launch})
    assert [m["text"] for m in by_chan["messages"]] == ["rocket in launch"]
    by_author = await expect(t.ada.api, "GET", t.w("/search"), 200,
                             params={"q": "rocket", "user_id": t.carol.id})
    assert [m["text"] for m in by_author["messages"]] == ["rocket in launch"]
    future = await expect(t.ada.api, "GET", t.w("/search"), 200,
                          params={"q": "rocket", "since": "2999-01-01T00:00:00Z"})
    assert future["messages"] == []
    past = await expect(t.ada.api, "GET", t.w("/search"), 200,
                        params={"q": "rocket", "until": "2000-01-01T00:00:00+00:00"})
    assert past["messages"] == []
    phrase = await expect(t.ada.api, "GET", t.w("/search"), 200,
                          params={"q": '"update 3"'})
    assert [m["text"] for m in phrase["messages"]] == ["rocket update 3"]
    for params in ({"q": ""}, {"q": "x" * 300}, {"q": "a", "since": "yesterday"},
                   {"q": "a", "since": "2020-01-01T00:00:00"}, {"q": "a", "limit": 0},
                   {"q": "a", "channel_id": "abc"}, {}):
        await expect(t.ada.api, "GET", t.w("/search"), 400, params=params)
    # Odd query syntax is not an error.
    for q in ("&&&", "!", "or", "-", '"', "a:*", "\\"):
        await expect(t.ada.api, "GET", t.w("/search"), 200, params={"q": q})
    await expect(t.ada.api, "GET", t.w("/search"), 404, "channel_not_found",
                 params={"q": "a", "channel_id": "99"})
    await t.close()


async def test_history_includes_reactions_threads_and_pins(parley: Running) -> None:
    t = await make_team(parley)
    root = await t.post(t.bob, t.general, "root")
    await t.post(t.carol, t.general, "reply", thread_root_id=root["id"])
    await expect(t.carol.api, "PUT", t.m(t.general, root["id"], "/reactions/eyes"), 204)
    await expect(t.carol.api, "PUT", t.m(t.general, root["id"], "/pin"), 204)
    page = await expect(t.ada.api, "GET", t.c(t.general, "/messages"), 200)
    first = page["messages"][0]
    assert first["reply_count"] == 1 and first["replier_ids"] == [t.carol.id]
    assert first["pinned"] and first["reactions"][0]["emoji"] == "eyes"
    assert page["messages"][1]["thread_root_id"] == root["id"]
    ws = await t.connect(t.ada)
    await settle()
    await t.post(t.bob, t.general, "third")
    assert (await ws.recv_type("message.created"))["d"]["seq"] == 3
    await ws.close()
    await t.close()
