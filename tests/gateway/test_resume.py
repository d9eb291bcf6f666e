"""Resume: a client that reconnects catches up exactly - no gap, no duplicate.

The sans-IO rules (gateway/resume.py) first, then through real sockets; the
contract's corner cases, with both codecs, are in test_resume_contract.py."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest

from gateway.protocol import codec as codecs
from gateway.resume import Decision, Hold, Reason, decide, parse_cursors, plan
from server.runner import Running
from tests.fixtures.parley import Api, WsClient, register_and_login

# --------------------------------------------------------------------------- sans-IO


def test_decide_gives_every_cursor_an_explicit_outcome() -> None:
    assert decide(3, 10, 100) == Decision(4, 10, None)  # replay 4..10
    assert decide(10, 10, 100) == Decision(11, 10, None)  # nothing missed
    assert decide(0, 0, 100) == Decision(1, 0, None)
    assert decide(3, 200, 100) == Decision(4, 200, Reason.TOO_FAR_BEHIND)
    assert decide(3, 103, 100) == Decision(4, 103, None)  # exactly the limit still replays
    assert decide(11, 10, 100) == Decision(1, 10, Reason.CURSOR_AHEAD)
    assert decide(None, 10, 100) == Decision(1, 10, Reason.NOT_NAMED)
    assert decide(None, 10, 100, Reason.NO_RESUME) == Decision(1, 10, Reason.NO_RESUME)


def test_plan_names_first_then_the_sessions_other_channels() -> None:
    p = plan({30: 1, 99: 0, 10: 5}, {10, 20, 30, 40})
    assert p.channels == [(30, 1), (10, 5), (20, None), (40, None)]
    assert p.ignored == [99]


def test_parse_cursors_refuses_what_is_not_a_map_of_seqs() -> None:
    assert parse_cursors({"channels": {"5": 3, 7: 0}}) == {5: 3, 7: 0}
    assert parse_cursors({}) == {}
    for bad in ([], {"5": -1}, {"5": True}, {"5": "3"}, {"x": 1}, {"5": 2**63}):
        with pytest.raises(codecs.BadEnvelope) as err:
            parse_cursors({"channels": bad})
        assert err.value.code == "invalid_field"


def test_hold_release_drops_what_the_client_was_given_and_keeps_order() -> None:
    h: Hold[str] = Hold()
    for seq in (4, 5, 6):
        h.add(1, seq, f"a{seq}")
    h.add(1, None, "a-typing")
    h.add(2, 9, "b9")  # a channel with no floor: joined meanwhile, sent whole
    h.add(3, 2, "c2")  # left meanwhile: dropped
    positions = {1: 6, 2: 9}
    items, live = h.release({1: 5}, {1, 2}, positions.get)
    assert items == ["a6", "a-typing", "b9"]
    assert live == {}
    assert h.count == 0


def test_hold_release_keeps_a_live_floor_when_the_gateway_is_behind() -> None:
    h: Hold[str] = Hold()
    h.add(1, 3, "a3")
    positions: dict[int, int | None] = {1: 3, 2: None}
    items, live = h.release({1: 8, 2: 4}, {1, 2}, positions.get)
    assert items == []
    assert live == {1: 8, 2: 4}  # live seqs up to these are dropped later


def test_hold_is_bounded() -> None:
    h: Hold[int] = Hold(limit=3)
    assert all(h.add(1, s, s) for s in (1, 2, 3))
    assert not h.add(1, 4, 4)
    assert h.overflowed and not h.add(1, 5, 5)


# --------------------------------------------------------------------------- through sockets


async def _setup(parley: Running) -> tuple[Api, Api, str, int]:
    ada, _ = await register_and_login(parley, "ada@example.com", "Ada")
    bob, _ = await register_and_login(parley, "bob@example.com", "Bob")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    await ada.call("POST", f"/v1/workspaces/{ws['id']}/members", 201,
                   json={"email": "bob@example.com"})
    chans = await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels", 200)
    return ada, bob, ws["id"], int(chans["channels"][0]["id"])


async def _post(api: Api, wid: str, cid: int, text: str) -> dict[str, Any]:
    result: dict[str, Any] = await api.call(
        "POST", f"/v1/workspaces/{wid}/channels/{cid}/messages", 201, json={"text": text})
    return result


async def test_resume_replays_the_missed_messages_then_goes_live(parley: Running) -> None:
    ada, bob, wid, cid = await _setup(parley)
    b = await WsClient.connect(parley, bob.token or "", wid)
    for i in range(3):
        await _post(ada, wid, cid, f"m{i}")
    seen = [(await b.recv_type("message.created"))["d"]["seq"] for _ in range(3)]
    assert seen == [1, 2, 3]
    await b.close()
    for i in range(3, 10):
        await _post(ada, wid, cid, f"m{i}")
    b = await WsClient.connect(parley, bob.token or "", wid, resume=True)
    await b.send_cmd("resume", {"channels": {cid: 3}}, ref="r")
    got: list[int] = []
    ack = None
    while ack is None or len(got) < 8:
        ev = await b.recv()
        if ev["t"] == "message.created":
            got.append(ev["d"]["seq"])
            if len(got) == 7:
                await _post(ada, wid, cid, "live")
        elif ev["t"] == "ack":
            ack = ev
    assert ack["ref"] == "r" and ack["d"]["replayed"] == 7
    assert got == list(range(4, 12))
    with pytest.raises(TimeoutError):
        await b.recv_type("message.created", timeout=0.3)
    await b.close()
    for api in (ada, bob):
        await api.close()


async def test_resume_too_far_behind_is_told_to_page_history(parley: Running) -> None:
    parley.rt.services.settings = dataclasses.replace(parley.rt.settings, resume_max_events=5)
    ada, bob, wid, cid = await _setup(parley)
    for i in range(8):
        await _post(ada, wid, cid, f"m{i}")
    b = await WsClient.connect(parley, bob.token or "", wid, resume=True)
    await b.send_cmd("resume", {"channels": {str(cid): 0}})
    ev = await b.recv_type("channel.resync_required")
    assert (ev["d"]["channel_id"], ev["d"]["from_seq"], ev["d"]["to_seq"]) == (cid, 1, 8)
    ack = await b.recv_type("ack")
    assert ack["d"]["resync_required"] == [cid]
    await _post(ada, wid, cid, "after")
    assert (await b.recv_type("message.created"))["d"]["seq"] == 9
    await b.close()
    for api in (ada, bob):
        await api.close()


async def test_reconnects_at_random_points_catch_up_exactly(parley: Running) -> None:
    """A sender posts continuously; the receiver drops its socket at random
    moments and resumes from the last seq it saw.  The receiver ends with
    every seq exactly once, in order."""
    ada, bob, wid, cid = await _setup(parley)
    total = 120
    rnd = random.Random(6455)
    a = await WsClient.connect(parley, ada.token or "", wid)

    async def sender() -> None:
        for i in range(total):
            await a.send_cmd("send", {"channel_id": cid, "text": f"n{i}"})
            if rnd.random() < 0.3:
                await asyncio.sleep(rnd.random() * 0.01)

    send_task = asyncio.create_task(sender())
    received: list[int] = []
    last = 0
    while last < total:
        b = await WsClient.connect(parley, bob.token or "", wid, resume=True)
        await b.send_cmd("resume", {"channels": {cid: last}})
        budget = rnd.randint(1, 25)
        try:
            while budget > 0 and last < total:
                ev = await b.recv(timeout=10)
                if ev["t"] == "message.created":
                    received.append(ev["d"]["seq"])
                    last = ev["d"]["seq"]
                    budget -= 1
        finally:
            b.drop()  # a lost connection (a closing handshake would wait behind unread frames)
    await send_task
    assert received == list(range(1, total + 1))
    await a.close()
    for api in (ada, bob):
        await api.close()
