"""Parley sessions over real sockets: auth at upgrade, hello, commands,
typed errors, JSON and msgpack, logout closing sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import msgpack
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.runner import Running
from tests.fixtures.parley import Api, WsClient, register_and_login


async def _setup(parley: Running) -> tuple[Api, Api, dict[str, Any], dict[str, Any]]:
    ada, _ = await register_and_login(parley, "ada@example.com", "Ada")
    bob, _ = await register_and_login(parley, "bob@example.com", "Bob")
    ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
    await ada.call("POST", f"/v1/workspaces/{ws['id']}/members", 201,
                   json={"email": "bob@example.com"})
    chans = await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels", 200)
    return ada, bob, ws, chans["channels"][0]


def _url(parley: Running, query: str) -> str:
    return f"ws://127.0.0.1:{parley.gateway_port}/v1/connect?{query}"


async def _status_of(parley: Running, query: str, headers: dict[str, str],
                     subprotocols: list[str] | None = None) -> tuple[int, dict[str, Any]]:
    headers = dict(headers)
    origin = headers.pop("origin", None)
    with pytest.raises(InvalidStatus) as err:
        await websockets.connect(_url(parley, query),
                                 subprotocols=subprotocols or ["parley.msgpack.v1"],  # type: ignore[arg-type]
                                 additional_headers=headers, origin=origin)  # type: ignore[arg-type]
    resp = err.value.response
    return resp.status_code, json.loads(resp.body or b"{}")


async def test_upgrade_refusals_have_status_and_code(parley: Running) -> None:
    ada, bob, ws, _ = await _setup(parley)
    good = {"authorization": f"Bearer {ada.token}"}
    wid = f"workspace_id={ws['id']}"
    assert (await _status_of(parley, wid, {}))[1]["error"]["code"] == "missing_token"
    status, body = await _status_of(parley, wid, {"authorization": "Bearer nope"})
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    status, body = await _status_of(parley, wid, good, ["chat"])
    assert (status, body["error"]["code"]) == (400, "unsupported_subprotocol")
    status, body = await _status_of(parley, wid, {**good, "origin": "https://evil.example"})
    assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
    status, body = await _status_of(parley, "workspace_id=123", good)
    assert (status, body["error"]["code"]) == (404, "workspace_not_found")
    for bad in ("abc", "0", str(2**63), "%C2%B2"):  # "%C2%B2": "²", a digit to isdigit()
        status, body = await _status_of(parley, f"workspace_id={bad}", good)
        assert (status, body["error"]["code"]) == (400, "invalid_workspace_id"), bad
    status, body = await _status_of(parley, "ticket=forged", {})
    assert (status, body["error"]["code"]) == (401, "invalid_ticket")
    for api in (ada, bob):
        await api.close()


async def test_allowed_origin_and_single_use_ticket(parley: Running) -> None:
    ada, bob, ws, _ = await _setup(parley)
    t = await ada.call("POST", f"/v1/workspaces/{ws['id']}/connect-ticket", 200)
    conn = await websockets.connect(_url(parley, f"ticket={t['ticket']}"),
                                    subprotocols=["parley.json.v1"],  # type: ignore[list-item]
                                    origin="http://localhost:3000")  # type: ignore[arg-type]
    hello = json.loads(await conn.recv())
    assert hello["t"] == "hello" and hello["d"]["workspace_id"] == ws["id"]
    await conn.close()
    status, body = await _status_of(parley, f"ticket={t['ticket']}", {})
    assert (status, body["error"]["code"]) == (401, "invalid_ticket")
    for api in (ada, bob):
        await api.close()


async def test_json_clients_get_text_frames_with_string_ids(parley: Running) -> None:
    ada, bob, ws, general = await _setup(parley)
    a = await WsClient.connect(parley, ada.token or "", ws["id"], json_mode=True)
    b = await WsClient.connect(parley, bob.token or "", ws["id"])
    assert isinstance(a.hello["d"]["user_id"], str)
    await a.send_cmd("send", {"channel_id": general["id"], "text": "json", "client_msg_id": "j1"})
    ack = await a.recv_type("ack")
    assert isinstance(ack["d"]["id"], str) and ack["d"]["seq"] == 1
    got = await b.recv_type("message.created")
    assert got["d"]["id"] == int(ack["d"]["id"])
    echoed = await a.recv_type("message.created")  # the sender's other devices see it too
    assert echoed["d"]["id"] == ack["d"]["id"]
    for c in (a, b):
        await c.close()
    for api in (ada, bob):
        await api.close()


async def test_bad_commands_get_typed_errors_and_the_socket_stays(parley: Running) -> None:
    ada, bob, ws, general = await _setup(parley)
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    await a.conn.send(b"\xc1")  # never-used msgpack byte
    assert (await a.recv_type("error"))["d"]["code"] == "bad_envelope"
    await a.conn.send("text frame")
    assert (await a.recv_type("error"))["d"]["code"] == "wrong_frame_type"
    await a.send_cmd("nope", {}, ref=7)
    err = await a.recv_type("error")
    assert (err["ref"], err["d"]["code"]) == (7, "unknown_op")
    await a.send_cmd("send", {"channel_id": "x", "text": "t"}, ref=8)
    assert (await a.recv_type("error"))["d"]["code"] == "invalid_field"
    await a.send_cmd("send", {"channel_id": general["id"], "text": "x" * 40_001}, ref=9)
    assert (await a.recv_type("error"))["d"]["code"] == "message_too_long"
    await a.send_cmd("send", {"channel_id": general["id"], "text": "   "}, ref=10)
    assert (await a.recv_type("error"))["d"]["code"] == "empty_message"
    await a.send_cmd("send", {"channel_id": 12345, "text": "hi"}, ref=11)
    assert (await a.recv_type("error"))["d"]["code"] == "channel_not_found"
    await a.send_cmd("heartbeat", {}, ref=12)
    assert (await a.recv_type("heartbeat_ack"))["ref"] == 12
    await a.close()
    for api in (ada, bob):
        await api.close()


async def test_retry_after_lost_ack_returns_the_same_message(parley: Running) -> None:
    ada, bob, ws, general = await _setup(parley)
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    await a.send_cmd("send", {"channel_id": general["id"], "text": "once", "client_msg_id": "r"})
    first = await a.recv_type("ack")
    await a.close()
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    await a.send_cmd("send", {"channel_id": general["id"], "text": "once", "client_msg_id": "r"})
    second = await a.recv_type("ack")
    assert second["d"] == first["d"]
    page = await ada.call("GET", f"/v1/workspaces/{ws['id']}/channels/{general['id']}/messages",
                          200)
    assert len(page["messages"]) == 1
    await a.close()
    for api in (ada, bob):
        await api.close()


async def test_logout_closes_the_sessions_sockets(parley: Running) -> None:
    ada, bob, ws, _ = await _setup(parley)
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    await ada.call("POST", "/v1/auth/logout", 204)
    with pytest.raises(ConnectionClosed) as err:
        while True:
            await a.recv(timeout=5)
    assert err.value.rcvd is not None and err.value.rcvd.code == 4001
    # The token no longer opens a socket or calls the API.
    status, body = await _status_of(parley, f"workspace_id={ws['id']}",
                                    {"authorization": f"Bearer {ada.token}"})
    assert (status, body["error"]["code"]) == (401, "session_revoked")
    await ada.call("GET", "/v1/me", 401)
    for api in (ada, bob):
        await api.close()


async def test_sigterm_style_drain_sends_going_away_with_reconnect_hint(parley: Running) -> None:
    ada, bob, ws, _ = await _setup(parley)
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    assert parley.gateway_server is not None
    port = parley.gateway_port or 0
    drain = asyncio.create_task(parley.gateway_server.drain(
        4005, lambda _: json.dumps({"retry_after_ms": 1234}), 5.0))
    with pytest.raises(ConnectionClosed) as err:
        while True:
            await a.recv(timeout=5)
    await drain
    assert err.value.rcvd is not None and err.value.rcvd.code == 4005
    assert json.loads(err.value.rcvd.reason)["retry_after_ms"] == 1234
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # no longer accepting
    parley.gateway_server = None  # drained: the fixture must not drain it again
    for api in (ada, bob):
        await api.close()


async def test_messages_reach_only_channel_members(parley: Running) -> None:
    ada, bob, ws, _ = await _setup(parley)
    secret = await ada.call("POST", f"/v1/workspaces/{ws['id']}/channels", 201,
                            json={"name": "secret", "kind": "private"})
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    b = await WsClient.connect(parley, bob.token or "", ws["id"])
    assert secret["id"] not in {str(c["id"]) for c in b.hello["d"]["channels"]}
    await a.send_cmd("send", {"channel_id": int(secret["id"]), "text": "psst"})
    await a.recv_type("ack")
    with pytest.raises(TimeoutError):
        await b.recv_type("message.created", timeout=0.5)
    # Bob cannot post there either, nor read it over REST.
    await b.send_cmd("send", {"channel_id": int(secret["id"]), "text": "hi"})
    assert (await b.recv_type("error"))["d"]["code"] == "channel_not_found"
    await bob.call("GET", f"/v1/workspaces/{ws['id']}/channels/{secret['id']}/messages", 404)
    for c in (a, b):
        await c.close()
    for api in (ada, bob):
        await api.close()


def test_msgpack_packb_roundtrip_sanity() -> None:
    assert msgpack.unpackb(msgpack.packb({"op": "x"})) == {"op": "x"}


async def test_plain_sends_take_the_nowait_path_and_the_rest_the_full_one(
        parley: Running) -> None:
    """A plain ``send`` is committed and acked without a Task per command
    (messages.post_message_nowait); mentions, thread replies and archived
    channels still behave exactly as through post_message."""
    ada, bob, ws, general = await _setup(parley)
    app = parley.gateway_app
    assert app is not None
    side = await ada.call("POST", f"/v1/workspaces/{ws['id']}/channels", 201,
                          json={"name": "side"})
    a = await WsClient.connect(parley, ada.token or "", ws["id"])
    b = await WsClient.connect(parley, bob.token or "", ws["id"])
    cid = general["id"]
    tasks_before = len(asyncio.all_tasks())
    for i in range(20):
        await a.send_cmd("send", {"channel_id": cid, "text": f"plain {i}",
                                  "client_msg_id": f"p{i}"}, ref=i)
    await a.send_cmd("send", {"channel_id": cid, "text": "plain 0", "client_msg_id": "p0"},
                     ref="retry")  # the same key again, right behind the first
    acks: dict[Any, dict[str, Any]] = {}
    while len(acks) < 21:
        ev = await a.recv_type("ack")
        acks[ev["ref"]] = ev["d"]
    assert not app.sends._tasks, "plain sends spawn no Task"
    assert len(asyncio.all_tasks()) <= tasks_before + 4  # the writer's lanes, the outbox
    assert [acks[i]["seq"] for i in range(20)] == list(range(1, 21))
    assert acks["retry"] == acks[0]
    seen = [(await b.recv_type("message.created"))["d"]["seq"] for _ in range(20)]
    assert seen == list(range(1, 21))  # exactly once: the retry published nothing
    # A mention is not plain: the full path stores it and tells bob.
    me = await bob.call("GET", "/v1/me", 200)
    await a.send_cmd("send", {"channel_id": cid, "text": f"hi <@{me['id']}>"}, ref="m")
    assert (await a.recv_type("ack"))["d"]["seq"] == 21
    mention = await b.recv_type("mention.created")
    assert mention["d"]["message_seq"] == 21
    # A thread reply: the full path too, with its own channel seq.
    await a.send_cmd("send", {"channel_id": cid, "text": "reply",
                              "thread_root_id": acks[0]["id"]}, ref="t")
    assert (await a.recv_type("ack"))["d"]["seq"] == 22
    # Archived: the nowait path reports the writer's refusal as a typed error.
    await ada.call("POST", f"/v1/workspaces/{ws['id']}/channels/{side['id']}/archive", 200)
    await a.send_cmd("send", {"channel_id": side["id"], "text": "too late"}, ref="x")
    err = await a.recv_type("error")
    assert (err["ref"], err["d"]["code"]) == ("x", "channel_archived")
    assert app.sends._inflight == 0
    for c in (a, b):
        await c.close()
    for api in (ada, bob):
        await api.close()
