"""gateway.upgrade_client: the client side of the upgrade, against our own server side."""

from __future__ import annotations

import pytest

from gateway.handshake import HandshakeParser, accept_response, reject_response
from gateway.upgrade_client import HandshakeRejected, UpgradeResponse, upgrade_request


def test_the_request_is_one_our_server_accepts_and_the_answer_checks_out() -> None:
    request, key = upgrade_request("127.0.0.1", 8765, "/v1/connect?workspace_id=1",
                                   "parley.msgpack.v1", [("Authorization", "Bearer t")])
    parsed = HandshakeParser().feed(request)
    assert parsed is not None and parsed.key == key
    assert parsed.subprotocols == ["parley.msgpack.v1"]
    assert parsed.headers["authorization"] == "Bearer t"
    answer = accept_response(parsed, "parley.msgpack.v1") + b"\x82\x01x"
    response = UpgradeResponse(key)
    head_end = answer.index(b"\r\n\r\n") + 4
    for i in range(0, head_end - 1, 7):  # a head in pieces: nothing until it is complete
        assert response.feed(answer[i:min(i + 7, head_end - 1)]) is None
    assert response.feed(answer[head_end - 1:]) == b"\x82\x01x"  # the first frame, untouched
    assert response.subprotocol == "parley.msgpack.v1"


def test_a_refusal_and_a_wrong_accept_key_are_rejections() -> None:
    _, key = upgrade_request("h", 1, "/", None)
    with pytest.raises(HandshakeRejected) as err:
        UpgradeResponse(key).feed(reject_response(403, "origin_not_allowed", "no"))
    assert err.value.status == 403 and b"origin_not_allowed" in err.value.body
    forged = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n")
    with pytest.raises(HandshakeRejected, match="Accept"):
        UpgradeResponse(key).feed(forged)


def test_an_endless_head_is_refused() -> None:
    _, key = upgrade_request("h", 1, "/", None)
    with pytest.raises(HandshakeRejected):
        UpgradeResponse(key).feed(b"HTTP/1.1 101 OK\r\nX: " + b"a" * 70_000)
