"""gateway.handshake: the sans-IO HTTP upgrade (no sockets)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.handshake import (
    HandshakeError,
    HandshakeParser,
    UpgradeRequest,
    accept_key,
    accept_response,
    reject_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3 example


def request(
    target: str = "/v1/connect?ticket=abc&x=%C3%A9",
    *,
    line: str | None = None,
    drop: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    **overrides: str,
) -> bytes:
    headers = {
        "Host": "chat.example:443",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
        "Origin": "https://app.example",
        "Sec-WebSocket-Protocol": "parley.msgpack.v1, parley.json.v1",
    }
    for name, value in overrides.items():
        headers[name.replace("_", "-")] = value
    lines = [line if line is not None else f"GET {target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k not in drop]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse(data: bytes, **kw: int) -> UpgradeRequest:
    result = HandshakeParser(**kw).feed(data)
    assert result is not None
    return result


def failure(data: bytes, **kw: int) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        HandshakeParser(**kw).feed(data)
    return info.value


def test_valid_request_is_parsed() -> None:
    req = parse(request() + b"\x81\x80early")
    assert req.method == "GET"
    assert req.path == "/v1/connect"
    assert req.query == {"ticket": "abc", "x": "é"}
    assert req.headers["host"] == req.host == "chat.example:443"
    assert req.headers["sec-websocket-version"] == "13"
    assert req.key == KEY
    assert req.origin == "https://app.example"
    assert req.subprotocols == ["parley.msgpack.v1", "parley.json.v1"]
    assert req.leftover == b"\x81\x80early"


def test_need_more_bytes_returns_none_then_the_request() -> None:
    data = request()
    parser = HandshakeParser()
    for i in range(len(data) - 1):
        assert parser.feed(data[i : i + 1]) is None
    req = parser.feed(data[-1:])
    assert req is not None and req.path == "/v1/connect"


@given(cuts=st.lists(st.integers(0, 400), max_size=5))
def test_chunking_never_changes_the_result(cuts: list[int]) -> None:
    data = request() + b"tail"
    bounds = sorted({0, len(data), *(c % len(data) for c in cuts)})
    parser = HandshakeParser()
    expected = parse(data)
    for a, b in itertools.pairwise(bounds):
        result = parser.feed(data[a:b])
        if result is not None:
            # Bytes after the head stay with the caller: leftover + the rest.
            assert result.leftover + data[b:] == b"tail"
            assert result.headers == expected.headers and result.query == expected.query
            return
    raise AssertionError("the request was never completed")


def test_tokens_are_case_insensitive_lists() -> None:
    req = parse(request(Upgrade="WebSocket", Connection="keep-alive, Upgrade"))
    assert req.path == "/v1/connect"


def test_repeated_list_headers_are_joined() -> None:
    data = request(drop=("Sec-WebSocket-Protocol",), extra=(
        "Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: b, c"))
    assert parse(data).subprotocols == ["a", "b", "c"]


def test_no_subprotocols_and_no_origin() -> None:
    req = parse(request("/", drop=("Origin", "Sec-WebSocket-Protocol")))
    assert (req.origin, req.subprotocols, req.query, req.path) == (None, [], {}, "/")


def test_feed_after_completion_is_an_error() -> None:
    parser = HandshakeParser()
    parser.feed(request())
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (request(line="POST /v1/connect HTTP/1.1"), 405, "method_not_allowed"),
        (request(line="GET /v1/connect HTTP/1.0"), 400, "bad_request"),
        (request(line="GET /v1/connect"), 400, "bad_request"),
        (request(line="GET  /v1/connect HTTP/1.1"), 400, "bad_request"),
        (request(line="GET http://x/v1/connect HTTP/1.1"), 400, "bad_request"),
        (request(line="GET * HTTP/1.1"), 400, "bad_request"),
        (request(drop=("Host",)), 400, "bad_request"),
        (request(extra=("Host: evil.example",)), 400, "bad_request"),
        (request(drop=("Upgrade",)), 426, "upgrade_required"),
        (request(Upgrade="h2c"), 426, "upgrade_required"),
        (request(Connection="keep-alive"), 400, "bad_request"),
        (request(drop=("Connection",)), 400, "bad_request"),
        (request(Sec_WebSocket_Version="8"), 426, "unsupported_version"),
        (request(drop=("Sec-WebSocket-Version",)), 426, "unsupported_version"),
        (request(drop=("Sec-WebSocket-Key",)), 400, "bad_key"),
        (request(Sec_WebSocket_Key="not base64!!"), 400, "bad_key"),
        (request(Sec_WebSocket_Key="AAECAwQFBgcICQoLDA0O"), 400, "bad_key"),  # 15 bytes
        (request(Sec_WebSocket_Key="AAECAwQFBgcICQoLDA0ODxA="), 400, "bad_key"),  # 17 bytes
        (request(extra=(" folded",)), 400, "bad_request"),
        (request(extra=("Bad Name: x",)), 400, "bad_request"),
        (request(extra=("NoColon",)), 400, "bad_request"),
        (request(extra=("X-Ctl: a\x01b",)), 400, "bad_request"),
        (request(extra=("X-Lf: a\nb",)), 400, "bad_request"),
        (request(extra=("Content-Length: 5",)), 400, "bad_request"),
        (request(extra=("Transfer-Encoding: chunked",)), 400, "bad_request"),
        (request("/v1/connect?ticket=a&ticket=b"), 400, "bad_request"),
        (request("/v1/connect?x=%FF"), 400, "bad_request"),
    ],
)
def test_invalid_requests_are_rejected(data: bytes, status: int, code: str) -> None:
    err = failure(data)
    assert (err.status, err.code) == (status, code)


def test_405_says_allow_get() -> None:
    assert failure(request(line="PUT / HTTP/1.1")).headers == {"Allow": "GET"}


def test_426_for_a_missing_upgrade_says_upgrade_websocket() -> None:
    assert failure(request(drop=("Upgrade",))).headers == {"Upgrade": "websocket"}


def test_426_for_a_wrong_version_advertises_13() -> None:
    assert failure(request(Sec_WebSocket_Version="12")).headers == {"Sec-WebSocket-Version": "13"}


def test_oversized_head_without_terminator_is_431() -> None:
    parser = HandshakeParser(max_header_bytes=1024)
    assert parser.feed(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 900) is None
    with pytest.raises(HandshakeError) as info:
        parser.feed(b"a" * 200)
    assert (info.value.status, info.value.code) == (431, "headers_too_large")


def test_oversized_complete_head_is_431() -> None:
    err = failure(request(extra=("X-Pad: " + "a" * 2000,)), max_header_bytes=1024)
    assert err.status == 431


def test_too_many_headers_is_431() -> None:
    extra = tuple(f"X-H{i}: v" for i in range(20))
    assert failure(request(extra=extra), max_headers=10).status == 431


# Heads that can never become valid, cut right after the byte that shows it
# (a CR or a line start needs the byte after it): answered at once, never
# left waiting for a CRLFCRLF (a bare-LF client never sends one).
NEVER_VALID = [
    b"GET /v1/connect HTTP/1.1\n",  # bare LF after the request line
    b"GET /v1/connect HTTP/1.1\r\nHost: x\n",  # bare LF after a header
    b"GET /v1/connect HTTP/1.1\r\nHost: x\rU",  # bare CR
    b"GET /v1/connect HTTP/1.1\r\nHost: x\r\r",
    b"GET /v1/connect HTTP/1.1\r\nHost: a\x00",  # NUL
    b"GET /v1/con\x00",  # NUL in the request line
    b"GET /v1/connect HTTP/1.1\r\nX: a\x1b",  # another control character
    b"GET /v1/connect HTTP/1.1\r\nX: a\x7f",  # DEL
    b"GET /v1/connect HTTP/1.1\r\nX: a\r\n ",  # obs-fold (SP)
    b"GET /v1/connect HTTP/1.1\r\nX: a\r\n\t",  # obs-fold (HT)
    b"GET /v1/connect HTTP/1.1\r\n ",  # whitespace before the first header
    b"\x16",  # TLS to a plain port (a ClientHello starts with 0x16)
]


@pytest.mark.parametrize("head", NEVER_VALID)
def test_a_head_that_can_never_be_valid_is_refused_at_the_byte_that_shows_it(
        head: bytes) -> None:
    for cut in range(1, len(head)):  # nothing before that byte is refused
        assert HandshakeParser().feed(head[:cut]) is None, head[:cut]
    err = failure(head)
    assert (err.status, err.code) == (400, "bad_request")
    parser = HandshakeParser()  # the same byte by byte
    with pytest.raises(HandshakeError):
        for i in range(len(head)):
            parser.feed(head[i:i + 1])


@given(head=st.sampled_from(NEVER_VALID), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_chunking_never_delays_the_refusal(head: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(head), *(c % len(head) for c in cuts)})
    parser = HandshakeParser()
    with pytest.raises(HandshakeError):
        for a, b in itertools.pairwise(bounds):
            parser.feed(head[a:b])


def test_frame_bytes_after_the_head_are_not_scanned() -> None:
    # Early frames may hold any byte (here a NUL, an LF and a CR) right after the head.
    req = parse(request() + b"\x82\x83\x00\n\r")
    assert req.leftover == b"\x82\x83\x00\n\r"


# --- responses -------------------------------------------------------------------------

def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(": ")
        assert name.lower() not in headers, f"duplicate {name}"
        headers[name.lower()] = value
    return status_line, headers, body


def test_accept_key_matches_rfc_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_response_is_a_101_with_the_accept_key() -> None:
    status, headers, body = _split(accept_response(parse(request()), "parley.json.v1"))
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "Upgrade"
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["sec-websocket-protocol"] == "parley.json.v1"
    assert body == b""


def test_accept_response_never_negotiates_extensions() -> None:
    req = parse(request(Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits"))
    _, headers, _ = _split(accept_response(req, None, [("X-Server", "parley")]))
    assert "sec-websocket-extensions" not in headers
    assert "sec-websocket-protocol" not in headers
    assert headers["x-server"] == "parley"


def test_accept_response_rejects_a_subprotocol_not_offered() -> None:
    with pytest.raises(ValueError, match="not offered"):
        accept_response(parse(request()), "chat.v9")


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nSet-Cookie: x"}, {"Bad Name": "x"}, {"Sec-WebSocket-Extensions": "x"},
     {"Upgrade": "h2c"}],
)
def test_accept_response_refuses_unsafe_extra_headers(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        accept_response(parse(request()), None, headers)


def test_reject_response_is_json_with_exact_length_and_close() -> None:
    raw = reject_response(426, "unsupported_version", "use 13", {"Sec-WebSocket-Version": "13"})
    status, headers, body = _split(raw)
    assert status == "HTTP/1.1 426 Upgrade Required"
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["sec-websocket-version"] == "13"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {"error": {"code": "unsupported_version", "message": "use 13"}}


def test_reject_response_keeps_its_own_framing_headers() -> None:
    raw = reject_response(400, "bad", "é ünïcode", [("Content-Length", "0"), ("Connection", "x")])
    _, headers, body = _split(raw)
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body)["error"]["message"] == "é ünïcode"


def test_reject_response_needs_an_error_status() -> None:
    with pytest.raises(ValueError):
        reject_response(200, "ok", "fine")
