"""A gateway's own messages reach its own sockets without the hub
(``parley.ports.hub.LocalDelivery``): in the commit callback, right after
the ack, so the sender's ack and its ``message.created`` leave together; the
hub's copy, which comes back to this process too, is dropped by seq.

Checked over real sockets on real PostgreSQL: delivery with the hub's
channel publications thrown away (only the local path can deliver), exactly
once with the hub working (the local copy and the hub's copy never both
arrive), the ack before the sender's own event, and order across the
nowait path (plain sends) and the full path (a mention)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from parley import events
from server.runner import Running
from tests.fixtures.parley import Api, WsClient, register_and_login


async def _setup(parley: Running) -> tuple[Api, Api, dict[str, Any], int, str]:
    ada, _ = await register_and_login(parley, "ada@example.com", "Ada")
    bob, _ = await register_and_login(parley, "bob@example.com", "Bob")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    await ada.call("POST", f"/v1/workspaces/{ws['id']}/members", 201,
                   json={"email": "bob@example.com"})
    chans = await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels", 200)
    me = await bob.call("GET", "/v1/me", 200)
    return ada, bob, ws, int(chans["channels"][0]["id"]), str(me["id"])


async def _drain(c: WsClient, quiet_s: float = 0.3) -> list[dict[str, Any]]:
    """Every frame until ``quiet_s`` pass without one."""
    out = []
    while True:
        try:
            out.append(await c.recv(timeout=quiet_s))
        except TimeoutError:
            return out


async def _sends(a: WsClient, cid: int, bob_id: str, *,
                 full_path: bool) -> tuple[list[Any], set[Any]]:
    """Plain sends (the nowait path, delivered locally) and, with
    ``full_path``, a mention in the middle (``post_message``: through the
    hub, acked after it is published); returns every ref in send order and
    the plain sends' refs."""
    refs: list[Any] = []
    plain: set[Any] = set()
    for i in range(6):
        ref = await a.send_cmd("send", {"channel_id": cid, "text": f"plain {i}",
                                        "client_msg_id": f"k{i}"})
        refs.append(ref)
        plain.add(ref)
        if full_path and i == 2:
            refs.append(await a.send_cmd("send", {"channel_id": cid,
                                                  "text": f"hi <@{bob_id}>"}))
    return refs, plain


@pytest.mark.parametrize("hub_works", [True, False], ids=["hub", "hub-drops-channels"])
async def test_own_messages_reach_local_sockets_once_and_in_order(
        parley: Running, monkeypatch: pytest.MonkeyPatch, hub_works: bool) -> None:
    app = parley.gateway_app
    assert app is not None and app.svc.local is app.router
    if not hub_works:
        hub = app.svc.hub
        real = hub.publish_many

        async def drop_channels(items: Sequence[tuple[str, bytes]]) -> None:
            # The hub loses every channel publication (a Redis blip, at most
            # once delivery): only the local path can deliver them.
            await real([i for i in items if not i[0].startswith(events.CHANNEL_TOPIC_PREFIX)])

        monkeypatch.setattr(hub, "publish_many", drop_channels)
    ada, bob, ws, cid, bob_id = await _setup(parley)
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    b = await WsClient.connect(parley, bob.token or "", ws["id"])
    refs, plain_refs = await _sends(a, cid, bob_id, full_path=hub_works)
    mine = await _drain(a)
    theirs = await _drain(b)
    acks = {ev["ref"]: ev["d"] for ev in mine if ev.get("t") == "ack"}
    assert set(acks) == set(refs)
    n = len(refs)
    for frames in (mine, theirs):
        seqs = [ev["d"]["seq"] for ev in frames if ev.get("t") == "message.created"]
        assert seqs == list(range(1, n + 1)), seqs  # each exactly once, in seq order
    # A plain send's ack is queued before its local message.created, in the
    # same callback: the sender sees the ack first.  (The full path promises
    # no order: its event may come back from a networked hub before the ack.)
    order = [(ev["t"], ev["d"]["seq"]) for ev in mine if ev.get("t") in ("ack", "message.created")]
    for seq in (acks[r]["seq"] for r in plain_refs):
        assert order.index(("ack", seq)) < order.index(("message.created", seq)), order
    for c in (a, b):
        await c.close()
    for api in (ada, bob):
        await api.close()


async def test_a_second_gateway_in_the_process_still_gets_the_hubs_copy(
        parley: Running) -> None:
    """``Services.local`` belongs to the first gateway: with two in one
    process (tests do this), the other's sockets get the hub's copy."""
    app = parley.gateway_app
    assert app is not None
    from gateway.session import GatewayApp

    other = GatewayApp(app.svc)
    assert app.svc.local is app.router  # not taken over
    await other.close()
    assert app.svc.local is app.router  # and not released by the other one
    ada, bob, ws, cid, _ = await _setup(parley)
    b = await WsClient.connect(parley, bob.token or "", ws["id"])
    await ada.call("POST", f"/v1/workspaces/{ws['id']}/channels/{cid}/messages", 201,
                   json={"text": "over REST"})
    ev = await b.recv_type("message.created")
    assert ev["d"]["text"] == "over REST"
    assert not [e for e in await _drain(b) if e.get("t") == "message.created"]
    await b.close()
    for api in (ada, bob):
        await api.close()
