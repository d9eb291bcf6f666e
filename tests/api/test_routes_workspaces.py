"""api/routes_workspaces.py through real HTTP: members, roles, invites,
leave and deactivate."""

from __future__ import annotations

import pytest
import websockets

from server.runner import Running
from tests.api.helpers import drain, expect, make_team, make_user, settle, types


async def _expire_invites(parley: Running) -> None:
    """Time travel: every invite expired a minute ago."""
    pool = parley.rt.db.directory  # one database in tests: directory and shard
    await pool.execute("UPDATE invites SET expires_at = now() - interval '1 minute'")


async def test_workspace_and_member_list(parley: Running) -> None:
    t = await make_team(parley)
    ws = await expect(t.bob.api, "GET", t.w(), 200)
    assert (ws["id"], ws["name"], ws["role"]) == (t.ws, "Acme", "member")
    page = await expect(t.gus.api, "GET", t.w("/members"), 200, params={"limit": 3})
    assert len(page["members"]) == 3 and page["next_cursor"]
    rest = await expect(t.gus.api, "GET", t.w("/members"), 200,
                        params={"cursor": page["next_cursor"]})
    assert {m["user_id"] for m in page["members"] + rest["members"]} == {
        t.ada.id, t.ann.id, t.bob.id, t.carol.id, t.gus.id}
    await expect(t.eve.api, "GET", t.w(), 404, "workspace_not_found")
    await expect(t.bob.api, "GET", t.w("/members"), 400, params={"limit": 0})
    await t.close()


async def test_invites_expire_run_out_and_can_be_revoked(parley: Running) -> None:
    t = await make_team(parley)
    await expect(t.bob.api, "POST", t.w("/invites"), 403, "permission_denied", json={})
    await expect(t.ann.api, "POST", t.w("/invites"), 403, "permission_denied",
                 json={"role": "admin"})  # only the owner grants admin
    made = await expect(t.ann.api, "POST", t.w("/invites"), 201,
                        json={"role": "guest", "max_uses": 1})
    assert made["invite"]["role"] == "guest" and made["token"].startswith(t.ws + ".")
    dave = await make_user(parley, "dave")
    fay = await make_user(parley, "fay")
    t.extra += [dave, fay]
    joined = await expect(dave.api, "POST", "/v1/invites/accept", 200,
                          json={"token": made["token"]})
    assert (joined["user_id"], joined["role"]) == (dave.id, "guest")
    again = await expect(dave.api, "POST", "/v1/invites/accept", 200,
                         json={"token": made["token"]})
    assert again["user_id"] == dave.id, "members accepting again is harmless"
    await expect(fay.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                 json={"token": made["token"]})  # used up
    chans = await expect(dave.api, "GET", t.w("/channels"), 200)
    assert [c["name"] for c in chans["channels"]] == ["general"]
    # Revoked and expired links stop working.
    rev = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={})
    listed = await expect(t.ada.api, "GET", t.w("/invites"), 200)
    assert [i["id"] for i in listed["invites"]] == [rev["invite"]["id"]]
    await expect(t.ada.api, "DELETE", t.w(f"/invites/{rev['invite']['id']}"), 204)
    await expect(t.ada.api, "DELETE", t.w(f"/invites/{rev['invite']['id']}"), 204)
    await expect(t.ada.api, "DELETE", t.w("/invites/12345"), 404, "invite_not_found")
    await expect(fay.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                 json={"token": rev["token"]})
    late = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={"ttl_s": 60})
    await _expire_invites(parley)
    await expect(fay.api, "POST", "/v1/invites/accept", 404, "invite_not_found",
                 json={"token": late["token"]})
    for token in ("", "garbage", f"{t.ws}.short", f"{t.ws}.{'x' * 40}", "0.abcdefghijklmnopq",
                  f"{2**64}.abcdefghijklmnopqrs"):
        r = await fay.api.http.post("/v1/invites/accept", json={"token": token})
        assert r.status_code in {400, 404}, (token, r.text)
    for body in ({"ttl_s": 5}, {"max_uses": 0}, {"role": "owner"}, {"x": 1}):
        await expect(t.ada.api, "POST", t.w("/invites"), 400, json=body)
    await t.close()


async def test_roles_change_only_downwards_and_never_the_owner(parley: Running) -> None:
    t = await make_team(parley)
    await expect(t.bob.api, "PATCH", t.w(f"/members/{t.carol.id}"), 403, "permission_denied",
                 json={"role": "guest"})
    out = await expect(t.ann.api, "PATCH", t.w(f"/members/{t.carol.id}"), 200,
                       json={"role": "guest"})
    assert out["role"] == "guest"
    await expect(t.ann.api, "PATCH", t.w(f"/members/{t.carol.id}"), 403, "permission_denied",
                 json={"role": "admin"})
    await expect(t.ann.api, "PATCH", t.w(f"/members/{t.ada.id}"), 403, "permission_denied",
                 json={"role": "member"})
    await expect(t.ann.api, "PATCH", t.w(f"/members/{t.ann.id}"), 403, "permission_denied",
                 json={"role": "member"})
    await expect(t.ada.api, "PATCH", t.w(f"/members/{t.bob.id}"), 200, json={"role": "admin"})
    await expect(t.ada.api, "PATCH", t.w(f"/members/{t.eve.id}"), 404, "user_not_found",
                 json={"role": "member"})
    await expect(t.ada.api, "PATCH", t.w(f"/members/{t.bob.id}"), 400, "invalid_request",
                 json={"role": "owner"})
    # Carol, now a guest, no longer sees public channels she is not in.
    pub = await t.channel(t.ada, "launch")
    await expect(t.carol.api, "GET", t.c(pub, "/messages"), 404, "channel_not_found")
    await t.close()


async def test_leave_and_rejoin_through_an_invite(parley: Running) -> None:
    t = await make_team(parley)
    invite = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={})
    await expect(t.ada.api, "POST", t.w("/leave"), 409, "owner_cannot_leave")
    await expect(t.bob.api, "POST", t.w("/leave"), 204)
    await expect(t.bob.api, "GET", t.w("/channels"), 404, "workspace_not_found")
    await expect(t.bob.api, "POST", t.w("/leave"), 404, "workspace_not_found")
    assert (await expect(t.bob.api, "GET", "/v1/workspaces", 200))["workspaces"] == []
    back = await expect(t.bob.api, "POST", "/v1/invites/accept", 200,
                        json={"token": invite["token"]})
    assert back["role"] == "member"
    await expect(t.bob.api, "GET", t.w("/channels"), 200)
    await t.close()


async def test_deactivation_is_final_for_invites_and_ends_access(parley: Running) -> None:
    t = await make_team(parley)
    priv = await t.channel(t.bob, "secret", "private", members=(t.carol,))
    invite = await expect(t.ada.api, "POST", t.w("/invites"), 201, json={})
    await expect(t.bob.api, "POST", t.w(f"/members/{t.carol.id}/deactivate"), 403,
                 "permission_denied")
    await expect(t.ann.api, "POST", t.w(f"/members/{t.ada.id}/deactivate"), 403,
                 "permission_denied")
    await expect(t.ann.api, "POST", t.w(f"/members/{t.ann.id}/deactivate"), 409,
                 "cannot_deactivate_self")
    await expect(t.ann.api, "POST", t.w(f"/members/{t.carol.id}/deactivate"), 204)
    await expect(t.ann.api, "POST", t.w(f"/members/{t.carol.id}/deactivate"), 404,
                 "user_not_found")
    await expect(t.carol.api, "GET", t.c(priv, "/messages"), 404, "workspace_not_found")
    await expect(t.carol.api, "POST", "/v1/invites/accept", 403, "membership_deactivated",
                 json={"token": invite["token"]})
    with pytest.raises(websockets.InvalidStatus) as refused:
        await t.connect(t.carol)
    assert refused.value.response.status_code == 404
    members = await expect(t.bob.api, "GET", t.c(priv, "/members"), 200)
    assert t.carol.id not in {m["user_id"] for m in members["members"]}
    # An admin can bring her back; her old channel memberships are gone.
    await expect(t.ada.api, "POST", t.w("/members"), 201, json={"email": t.carol.email})
    await expect(t.carol.api, "GET", t.c(priv, "/messages"), 404, "channel_not_found")
    await t.close()


async def test_deactivated_member_stops_receiving_at_once(parley: Running) -> None:
    t = await make_team(parley)
    priv = await t.channel(t.bob, "secret", "private", members=(t.carol,))
    ws = await t.connect(t.carol)
    await expect(t.ann.api, "POST", t.w(f"/members/{t.carol.id}/deactivate"), 204)
    evs = await drain(ws)
    left = {str(e["d"]["id"]) for e in evs if e["t"] == "channel.left"}
    assert left == {t.general, priv}
    ended = [e for e in evs if e["t"] == "membership.ended"]
    assert ended and ended[0]["d"]["reason"] == "deactivated"
    await settle()
    await t.post(t.bob, priv, "after carol left")
    await t.post(t.bob, t.general, "after carol left")
    assert "message.created" not in types(await drain(ws, 0.5))
    await ws.close()
    await t.close()


async def test_deactivation_closes_the_members_sockets_with_4006(parley: Running) -> None:
    t = await make_team(parley)
    ws = await t.connect(t.carol)
    await expect(t.ann.api, "POST", t.w(f"/members/{t.carol.id}/deactivate"), 204)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await ws.recv(timeout=2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4006
    # Leaving closes them too; sockets of other workspaces stay open.
    await expect(t.eve.api, "POST", t.w("/members", t.other), 201, json={"email": t.bob.email})
    elsewhere = await t.connect(t.bob, t.other)
    bob_ws = await t.connect(t.bob)
    await expect(t.bob.api, "POST", t.w("/leave"), 204)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await bob_ws.recv(timeout=2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4006
    await elsewhere.send_cmd("heartbeat", {})
    assert (await elsewhere.recv_type("heartbeat_ack"))["t"] == "heartbeat_ack"
    await elsewhere.close()
    await t.close()


async def test_joining_announces_general_to_the_new_member(parley: Running) -> None:
    t = await make_team(parley)
    dave = await make_user(parley, "dave")
    t.extra.append(dave)
    bob_ws = await t.connect(t.bob)
    await expect(t.ada.api, "POST", t.w("/members"), 201, json={"email": dave.email})
    ev = await bob_ws.recv_type("channel.member_joined")
    assert str(ev["d"]["user_id"]) == dave.id and str(ev["d"]["channel_id"]) == t.general
    await bob_ws.close()
    await t.close()
