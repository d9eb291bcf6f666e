"""One client's bad input never touches another's work, over real sockets:
text PostgreSQL cannot store gets a typed, non-retryable error at the edge
(never a batch failure for others), and nothing a client sends can make its
reply unencodable (never a 1011)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from server.runner import Running
from tests.fixtures.parley import Api, WsClient, register_and_login

SENDS = 60


async def _two_tenants(parley: Running) -> tuple[Api, Api, dict[str, Any], dict[str, Any],
                                                  str, str]:
    """ada in workspace 1, bob in workspace 2, on the same shard."""
    (ada, _), (bob, _) = await asyncio.gather(
        register_and_login(parley, "ada@example.com", "Ada"),
        register_and_login(parley, "bob@example.com", "Bob"))
    ws1 = await ada.call("POST", "/v1/workspaces", 201, json={"name": "One"})
    ws2 = await bob.call("POST", "/v1/workspaces", 201, json={"name": "Two"})
    ch1 = (await ada.call("GET", f"/v1/workspaces/{ws1['id']}/channels", 200))["channels"][0]
    ch2 = (await bob.call("GET", f"/v1/workspaces/{ws2['id']}/channels", 200))["channels"][0]
    return ada, bob, ws1, ws2, ch1["id"], ch2["id"]


async def _replies(client: WsClient, count: int) -> dict[Any, dict[str, Any]]:
    """The next ``count`` replies (frames with a ``ref``) by ref; events skipped."""
    got: dict[Any, dict[str, Any]] = {}
    while len(got) < count:
        ev = await client.recv(timeout=10)
        if "ref" in ev:
            got[ev["ref"]] = ev
    return got


# What a poisoned `send` carries and what the client must get back.  JSON can
# hold a lone surrogate (an escape); msgpack strings are strict UTF-8, but
# either can hold a NUL, which PostgreSQL text cannot.
_JSON_POISONS = [
    (r'"text":"poison\ud800"', "invalid_text"),
    (r'"text":"poison\u0000nul"', "invalid_text"),
    (r'"text":"fine","client_msg_id":"\udfff"', "invalid_text"),  # refused by the codec
    (r'"text":"fine","client_msg_id":"k\u0000"', "invalid_client_msg_id"),
]
_MSGPACK_POISONS = [
    ({"text": "poison\x00nul"}, "invalid_text"),
    ({"text": "fine", "client_msg_id": "k\x00"}, "invalid_client_msg_id"),
]


@pytest.mark.parametrize("b_json", [False, True], ids=["b_msgpack", "b_json"])
@pytest.mark.parametrize("a_json", [True, False], ids=["a_json", "a_msgpack"])
async def test_poisoned_sends_of_one_tenant_never_fail_another_tenants_sends(
        parley: Running, a_json: bool, b_json: bool) -> None:
    """A (workspace 1) sends poisoned `send`s interleaved with B's (workspace
    2) plain sends, all pipelined so they would share writer batches: every
    one of B's sends is acked, in order and gap-free; each of A's gets its
    typed non-retryable error; both sockets stay open."""
    ada, bob, ws1, ws2, ch1, ch2 = await _two_tenants(parley)
    a = await WsClient.connect(parley, ada.token or "", ws1["id"], json_mode=a_json)
    b = await WsClient.connect(parley, bob.token or "", ws2["id"], json_mode=b_json)
    expected: dict[int, str] = {}
    for i in range(SENDS):
        ref = 1000 + i
        if a_json:
            body, code = _JSON_POISONS[i % len(_JSON_POISONS)]
            await a.conn.send(f'{{"op":"send","ref":{ref},"d":{{"channel_id":"{ch1}",{body}}}}}')
        else:
            fields, code = _MSGPACK_POISONS[i % len(_MSGPACK_POISONS)]
            await a.conn.send(msgpack.packb({"op": "send", "ref": ref,
                                             "d": {"channel_id": int(ch1), **fields}}))
        expected[ref] = code
        await b.send_cmd("send", {"channel_id": ch2, "text": f"b{i}", "client_msg_id": f"b{i}"},
                         ref=i + 1)
    a_got, b_got = await asyncio.gather(_replies(a, SENDS), _replies(b, SENDS))
    assert {ref: (ev["t"], ev["d"]["code"], ev["d"]["retryable"]) for ref, ev in a_got.items()} \
        == {ref: ("error", code, False) for ref, code in expected.items()}
    assert [b_got[r]["t"] for r in range(1, SENDS + 1)] == ["ack"] * SENDS, b_got
    assert [b_got[r]["d"]["seq"] for r in range(1, SENDS + 1)] == list(range(1, SENDS + 1))
    for client in (a, b):  # still open and serving
        await client.send_cmd("heartbeat", {}, ref="still-here")
        assert (await client.recv_type("heartbeat_ack"))["ref"] == "still-here"
    page = await ada.call("GET", f"/v1/workspaces/{ws1['id']}/channels/{ch1}/messages", 200)
    assert page["messages"] == []
    for c in (a, b):
        await c.close()
    for api in (ada, bob):
        await api.close()


_UNECHOABLE = [
    r'{"op":"heartbeat","ref":"\ud800"}',
    r'{"op":"heartbeat","ref":"\ud800","d":{"active":"x"}}',
    r'{"op":"send","ref":"\udc00","d":{"channel_id":"1","text":"hi"}}',
    r'{"op":"presence.set","ref":"\udbff\udbff","d":{"status":"away"}}',
    r'{"op":"\ud800","ref":"\ud800"}',
    r'{"op":"heartbeat","ref":18446744073709551616}',
    r'{"op":"heartbeat","ref":' + "9" * 4000 + "}",
]
# Digits str.isdigit takes and int() refuses: typed errors, with the ref.
_NOT_IDS = [
    '{"op":"send","ref":"r","d":{"channel_id":"\u00b2","text":"hi"}}',
    '{"op":"typing","ref":"r","d":{"channel_id":"1\u00b2"}}',
    '{"op":"presence.subscribe","ref":"r","d":{"user_ids":["\u00b2"]}}',
    '{"op":"resume","ref":"r","d":{"channels":{"\u00b2":0}}}',
]


async def test_a_ref_that_cannot_be_echoed_gets_a_typed_error_with_ref_null(
        parley: Running) -> None:
    """Each frame's ref (a lone surrogate, an integer past 64 bits) cannot be
    written back: a typed error with ref null, never a 1011, and the socket
    keeps serving."""
    ada, bob, ws1, _, _, _ = await _two_tenants(parley)
    a = await WsClient.connect(parley, ada.token or "", ws1["id"], json_mode=True)
    for i, frame in enumerate(_UNECHOABLE):
        await a.conn.send(frame)
        err = await a.recv_type("error")
        assert err["ref"] is None, (frame, err)
        assert err["d"]["code"] in {"invalid_text", "bad_envelope"}, (frame, err)
        assert err["d"]["retryable"] is False
        await a.send_cmd("heartbeat", {}, ref=i)
        assert (await a.recv_type("heartbeat_ack"))["ref"] == i  # still open
    for frame in _NOT_IDS:
        await a.conn.send(frame)
        err = await a.recv_type("error")
        assert (err["ref"], err["d"]["code"]) == ("r", "invalid_field"), (frame, err)
    await a.close()
    for api in (ada, bob):
        await api.close()


async def test_an_unknown_op_is_quoted_short(parley: Running) -> None:
    ada, _ = await register_and_login(parley, "ada@example.com", "Ada")
    ws1 = await ada.call("POST", "/v1/workspaces", 201, json={"name": "One"})
    a = await WsClient.connect(parley, ada.token or "", ws1["id"], json_mode=True)
    await a.send_cmd("z" * 100_000, {}, ref=1)
    err = await a.recv_type("error")
    assert err["d"]["code"] == "unknown_op" and len(err["d"]["message"]) < 200
    await a.close()
    await ada.close()


@pytest.mark.parametrize("query,status,code", [
    ("ticket=abc%00def", 401, "invalid_ticket"),
    ("workspace_id=%C2%B2", 400, "invalid_workspace_id"),  # "²": isdigit, but not int()
])
async def test_odd_upgrade_queries_get_typed_refusals(parley: Running, query: str, status: int,
                                                      code: str) -> None:
    ada, _ = await register_and_login(parley, "ada@example.com", "Ada")
    url = f"ws://127.0.0.1:{parley.gateway_port}/v1/connect?{query}"
    with pytest.raises(InvalidStatus) as err:
        await websockets.connect(url, subprotocols=["parley.json.v1"],  # type: ignore[list-item]
                                 additional_headers={"authorization": f"Bearer {ada.token}"})
    assert err.value.response.status_code == status
    assert code.encode() in (err.value.response.body or b"")
    await ada.close()
