"""The walking skeleton, through the real interfaces only: REST over HTTP,
msgpack over a real WebSocket, PostgreSQL underneath."""

from __future__ import annotations

from server.runner import Running
from tests.fixtures.parley import WsClient, register_and_login


async def test_two_users_exchange_a_message_end_to_end(parley: Running) -> None:
    ada, ada_user = await register_and_login(parley, "ada@example.com", "Ada")
    bob, bob_user = await register_and_login(parley, "bob@example.com", "Bob")
    try:
        ws = await ada.call("POST", "/v1/workspaces", 201, json={"name": "Acme"})
        await ada.call("POST", f"/v1/workspaces/{ws['id']}/members", 201,
                       json={"email": "bob@example.com", "role": "member"})
        chan = await ada.call("POST", f"/v1/workspaces/{ws['id']}/channels", 201,
                              json={"name": "launch", "kind": "public"})
        await bob.call("POST", f"/v1/workspaces/{ws['id']}/channels/{chan['id']}/join", 200)

        a = await WsClient.connect(parley, ada.token or "", ws["id"])
        b = await WsClient.connect(parley, bob.token or "", ws["id"])
        assert a.hello["d"]["user_id"] == int(ada_user["id"])
        assert int(chan["id"]) in {c["id"] for c in b.hello["d"]["channels"]}

        ref = await a.send_cmd("send", {"channel_id": int(chan["id"]), "text": "hello, Bob",
                                        "client_msg_id": "m-1"})
        ack = await a.recv_type("ack")
        assert ack["ref"] == ref
        assert ack["d"]["seq"] == 1
        assert ack["d"]["id"] > 0

        got = await b.recv_type("message.created")
        assert got["d"]["id"] == ack["d"]["id"]
        assert got["d"]["seq"] == 1
        assert got["d"]["text"] == "hello, Bob"
        assert got["d"]["user_id"] == int(ada_user["id"])

        page = await bob.call("GET", f"/v1/workspaces/{ws['id']}/channels/{chan['id']}/messages",
                              200)
        assert [(m["id"], m["seq"], m["text"]) for m in page["messages"]] == [
            (str(ack["d"]["id"]), 1, "hello, Bob")]
        assert bob_user["id"] != ada_user["id"]
        await a.close()
        await b.close()
    finally:
        await ada.close()
        await bob.close()
