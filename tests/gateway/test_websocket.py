"""gateway.websocket.ServerConnection, sans-IO, on both core_ext implementations."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core_ext
from gateway.websocket import (
    VALID_CLOSE_CODES,
    BinaryMessage,
    CloseReceived,
    ConnectionState,
    Event,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    ServerConnection,
    TextMessage,
    WsLimits,
    binary_frame,
    close_frame,
    text_frame,
)
from tests.core_ext.conftest import IMPLEMENTATIONS, load_impl

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> core_ext.Kernels:
    return load_impl(request.param)


class Peer:
    """A client: builds masked frames; reads server frames."""

    def __init__(self, impl: core_ext.Kernels) -> None:
        self.impl = impl
        self.rnd = random.Random(0)

    def frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
        return self.impl.build_frame(opcode, payload, fin, self.rnd.randbytes(4))

    def close(self, code: int | None = None, reason: bytes = b"") -> bytes:
        payload = b"" if code is None else code.to_bytes(2, "big") + reason
        return self.frame(CLOSE, payload)

    def read(self, data: bytes) -> list[tuple[bool, int, bytes]]:
        frames = self.impl.FrameParser(1 << 30, False).feed(data)
        return [(bool(f.fin), f.opcode, f.payload) for f in frames]


@pytest.fixture
def peer(impl: core_ext.Kernels) -> Peer:
    return Peer(impl)


def conn_for(impl: core_ext.Kernels, **limits: int) -> ServerConnection:
    return ServerConnection(WsLimits(**limits), kernels=impl)


# --- messages ---------------------------------------------------------------------------

def test_single_frame_text_and_binary(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    events = conn.receive_data(peer.frame(TEXT, "héllo".encode()) + peer.frame(BINARY, b"\0\1"))
    assert events == [TextMessage("héllo"), BinaryMessage(b"\0\1")]
    assert conn.data_to_send() == b""
    assert conn.state is ConnectionState.OPEN


def test_fragmented_message_with_interleaved_ping(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    data = (peer.frame(TEXT, b"frag", fin=False) + peer.frame(PING, b"p1")
            + peer.frame(CONT, b"men", fin=False) + peer.frame(PONG, b"unsolicited")
            + peer.frame(CONT, b"ted"))
    assert conn.receive_data(data) == [
        PingReceived(b"p1"), PongReceived(b"unsolicited"), TextMessage("fragmented")]
    assert peer.read(conn.data_to_send()) == [(True, PONG, b"p1")]


def test_utf8_code_point_split_across_fragments(impl: core_ext.Kernels, peer: Peer) -> None:
    euro = "€".encode()
    conn = conn_for(impl)
    data = (peer.frame(TEXT, euro[:1], fin=False) + peer.frame(CONT, euro[1:2], fin=False)
            + peer.frame(CONT, euro[2:]))
    assert conn.receive_data(data) == [TextMessage("€")]


def test_fragmented_binary_and_empty_fragments(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    data = peer.frame(BINARY, b"", fin=False) + peer.frame(CONT, b"ab", fin=False)
    data += peer.frame(CONT, b"")
    assert conn.receive_data(data) == [BinaryMessage(b"ab")]


# --- failures ---------------------------------------------------------------------------

def assert_failed(conn: ServerConnection, peer: Peer, events: list[Event], code: int) -> None:
    assert isinstance(events[-1], ProtocolFailure)
    assert events[-1].code == code
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_code == code
    frames = peer.read(conn.data_to_send())
    assert len(frames) == 1 and frames[0][1] == CLOSE
    assert int.from_bytes(frames[0][2][:2], "big") == code


def test_invalid_utf8_text_is_1007(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert_failed(conn, peer, conn.receive_data(peer.frame(TEXT, b"ok \xff")), 1007)


def test_invalid_utf8_fails_at_the_fragment_not_at_the_end(
    impl: core_ext.Kernels, peer: Peer
) -> None:
    # Autobahn 6.4.1: the message is not finished, but is already invalid.
    conn = conn_for(impl)
    assert conn.receive_data(peer.frame(TEXT, "κόσμε".encode(), fin=False)) == []
    events = conn.receive_data(peer.frame(CONT, b"\xf4\x90\x80\x80", fin=False))
    assert_failed(conn, peer, events, 1007)


def test_continuation_without_a_message_is_1002(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert_failed(conn, peer, conn.receive_data(peer.frame(CONT, b"x")), 1002)


def test_new_message_inside_a_fragmented_one_is_1002(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    data = peer.frame(TEXT, b"a", fin=False) + peer.frame(BINARY, b"b")
    assert_failed(conn, peer, conn.receive_data(data), 1002)


def test_unmasked_frame_is_1002(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert_failed(conn, peer, conn.receive_data(impl.build_frame(TEXT, b"hi")), 1002)


def test_single_frame_over_the_message_limit_is_1009(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl, max_message_bytes=1000)
    header_only = peer.frame(BINARY, bytes(1001))[:8]
    assert_failed(conn, peer, conn.receive_data(header_only), 1009)


def test_fragments_over_the_message_limit_are_1009(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl, max_message_bytes=1000, max_frame_bytes=600)
    data = peer.frame(BINARY, bytes(600), fin=False) + peer.frame(CONT, bytes(401))
    assert_failed(conn, peer, conn.receive_data(data), 1009)


def test_too_many_fragments_is_1009(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl, max_fragments=3)
    data = b"".join(peer.frame(CONT if i else TEXT, b"x", fin=False) for i in range(4))
    assert_failed(conn, peer, conn.receive_data(data), 1009)


def test_exactly_the_limits_is_fine(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl, max_fragments=3, max_message_bytes=300, max_frame_bytes=200)
    data = (peer.frame(BINARY, bytes(100), fin=False) + peer.frame(CONT, bytes(100), fin=False)
            + peer.frame(CONT, bytes(100)))
    assert conn.receive_data(data) == [BinaryMessage(bytes(300))]


def test_messages_before_a_framing_error_are_delivered(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    data = peer.frame(TEXT, b"first") + bytes([0xC1, 0x80]) + b"mask"
    events = conn.receive_data(data)
    assert events[0] == TextMessage("first")
    assert_failed(conn, peer, events, 1002)


def test_nothing_after_a_failure(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    conn.receive_data(peer.frame(CONT, b"x"))
    conn.data_to_send()
    assert conn.receive_data(peer.frame(TEXT, b"late")) == []
    assert conn.data_to_send() == b""


# --- closing ----------------------------------------------------------------------------

def test_peer_close_with_code_is_echoed(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    events = conn.receive_data(peer.close(1000, "bye ✓".encode()))
    assert events == [CloseReceived(1000, "bye ✓")]
    assert conn.state is ConnectionState.CLOSED
    assert (conn.close_code, conn.close_reason) == (1000, "bye ✓")
    assert peer.read(conn.data_to_send()) == [(True, CLOSE, b"\x03\xe8")]


def test_peer_close_without_code(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert conn.receive_data(peer.close()) == [CloseReceived(None, "")]
    assert conn.close_code == 1005
    assert peer.read(conn.data_to_send()) == [(True, CLOSE, b"")]


def test_close_with_one_byte_payload_is_1002(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert_failed(conn, peer, conn.receive_data(peer.frame(CLOSE, b"\x03")), 1002)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_codes_are_1002(impl: core_ext.Kernels, peer: Peer, code: int) -> None:
    conn = conn_for(impl)
    assert_failed(conn, peer, conn.receive_data(peer.close(code)), 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000,
                                  3999, 4000, 4999])
def test_valid_close_codes_are_accepted(impl: core_ext.Kernels, peer: Peer, code: int) -> None:
    conn = conn_for(impl)
    assert conn.receive_data(peer.close(code)) == [CloseReceived(code, "")]


def test_close_reason_must_be_utf8(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert_failed(conn, peer, conn.receive_data(peer.close(1000, b"\xce\xba\xff")), 1007)


def test_data_after_peer_close_is_ignored(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    events = conn.receive_data(peer.close(1000) + peer.frame(TEXT, b"late") + peer.frame(PING))
    assert events == [CloseReceived(1000, "")]
    assert len(peer.read(conn.data_to_send())) == 1


def test_server_initiated_close_handshake(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert peer.read(conn.close(4002, "slow consumer")) == [(True, CLOSE, b"\x0f\xa2slow consumer")]
    assert conn.state is ConnectionState.CLOSING
    assert conn.close_code == 4002
    # Data and pings while closing are dropped; the peer's close completes it.
    assert conn.receive_data(peer.frame(TEXT, b"late") + peer.frame(PING)) == []
    assert conn.data_to_send() == b""
    assert conn.receive_data(peer.close(4002)) == [CloseReceived(4002, "")]
    assert conn.state is ConnectionState.CLOSED
    assert conn.data_to_send() == b""  # our close was already sent
    assert conn.close_code == 4002


def test_close_sends_queued_pongs_first(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    conn.receive_data(peer.frame(PING, b"x"))
    assert [op for _, op, _ in peer.read(conn.close())] == [PONG, CLOSE]


def test_close_is_idempotent_and_validates(impl: core_ext.Kernels) -> None:
    conn = conn_for(impl)
    with pytest.raises(ValueError):
        conn.close(1005)
    assert conn.close(1000) != b""
    assert conn.close(1000) == b""


def test_close_reason_is_truncated_on_a_character_boundary(impl: core_ext.Kernels,
                                                           peer: Peer) -> None:
    conn = conn_for(impl)
    (frame,) = peer.read(conn.close(1000, "é" * 100))
    reason = frame[2][2:]
    assert len(reason) <= 123
    assert reason.decode() == "é" * 61


def test_failure_while_closing_sends_no_second_close(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    conn.close(1001)
    events = conn.receive_data(bytes([0xF1, 0x80]) + b"mask")
    assert isinstance(events[-1], ProtocolFailure)
    assert conn.data_to_send() == b""
    assert conn.close_code == 1001


# --- builders -----------------------------------------------------------------------------

def test_send_builders_are_pure(impl: core_ext.Kernels, peer: Peer) -> None:
    conn = conn_for(impl)
    assert peer.read(conn.send_text("é")) == [(True, TEXT, "é".encode())]
    assert peer.read(conn.send_binary(b"\x00")) == [(True, BINARY, b"\x00")]
    assert peer.read(conn.send_ping(b"hb")) == [(True, PING, b"hb")]
    assert conn.data_to_send() == b"" and conn.state is ConnectionState.OPEN
    with pytest.raises(ValueError):
        conn.send_ping(bytes(126))


def test_module_frame_builders() -> None:
    assert text_frame("hi") == core_ext.build_frame(TEXT, b"hi")
    assert binary_frame(b"hi") == core_ext.build_frame(BINARY, b"hi")
    assert close_frame(None) == core_ext.build_frame(CLOSE, b"")
    assert close_frame(1000, "x") == core_ext.build_frame(CLOSE, b"\x03\xe8x")
    with pytest.raises(ValueError):
        close_frame(1006)


def test_valid_close_codes_follow_rfc6455() -> None:
    assert {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999} <= VALID_CLOSE_CODES
    assert not {1004, 1005, 1006, 1012, 1015, 2999, 5000} & VALID_CLOSE_CODES


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        WsLimits(max_frame_bytes=100)
    with pytest.raises(ValueError):
        WsLimits(max_fragments=0)


# --- chunking -------------------------------------------------------------------------------

messages = st.lists(
    st.one_of(
        st.tuples(st.just("text"), st.text(max_size=40), st.integers(1, 4)),
        st.tuples(st.just("binary"), st.binary(max_size=40), st.integers(1, 4)),
        st.tuples(st.just("ping"), st.binary(max_size=20), st.just(1)),
    ),
    max_size=8,
)


@given(msgs=messages, cuts=st.lists(st.integers(0, 10_000), max_size=6), which=st.integers(0, 1))
@settings(max_examples=150)
def test_chunking_never_changes_events_or_replies(
    msgs: list[tuple[str, str | bytes, int]], cuts: list[int], which: int
) -> None:
    impl = load_impl(IMPLEMENTATIONS[which])
    peer = Peer(impl)
    stream = b""
    expected: list[Event] = []
    for kind, payload, parts in msgs:
        if kind == "ping":
            assert isinstance(payload, bytes)
            stream += peer.frame(PING, payload)
            expected.append(PingReceived(payload))
            continue
        raw = payload.encode() if isinstance(payload, str) else payload
        step = max(1, len(raw) // parts)
        pieces = [raw[i : i + step] for i in range(0, len(raw), step)] or [b""]
        for i, piece in enumerate(pieces):
            opcode = (TEXT if kind == "text" else BINARY) if i == 0 else CONT
            stream += peer.frame(opcode, piece, fin=i == len(pieces) - 1)
        expected.append(TextMessage(payload) if isinstance(payload, str)
                        else BinaryMessage(payload))
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    conn = conn_for(impl)
    events: list[Event] = []
    replies = b""
    for a, b in itertools.pairwise(bounds):
        events += conn.receive_data(stream[a:b])
        replies += conn.data_to_send()
    assert events == expected
    pongs = [p for kind, p, _ in msgs if kind == "ping"]
    assert peer.read(replies) == [(True, PONG, p) for p in pongs]


# --- the one-frame fast path (module rule 8) --------------------------------------------------

class _NoParse:
    """Stands in for the parser: the fast path must not need it."""

    buffered_bytes = 0

    def feed(self, data: bytes) -> list[object]:
        raise AssertionError("the general path ran")


@pytest.mark.parametrize("size", [0, 1, 14, 124, 125])
def test_one_small_frame_skips_the_parser(impl: core_ext.Kernels, peer: Peer, size: int) -> None:
    conn = conn_for(impl)
    conn._parser = _NoParse()
    assert conn.receive_data(peer.frame(BINARY, bytes(range(size)))) == [
        BinaryMessage(bytes(range(size)))]
    assert conn.receive_data(peer.frame(TEXT, ("é" * 62)[:size // 2].encode())) == [
        TextMessage(("é" * 62)[:size // 2])]
    assert conn.data_to_send() == b""


def _run(impl: core_ext.Kernels, prefix: bytes, data: bytes, cut: int | None,
         close_first: bool) -> tuple[list[Event], bytes, ConnectionState, int | None]:
    """Events, replies, state and close code after ``prefix`` then ``data``
    (in two reads split at ``cut``, or in one read)."""
    conn = conn_for(impl, max_message_bytes=4096)
    conn.receive_data(prefix)
    if close_first:
        conn.close(1000)
    conn.data_to_send()
    if cut is None:
        events = conn.receive_data(data)
    else:
        events = conn.receive_data(data[:cut]) + conn.receive_data(data[cut:])
    return events, conn.data_to_send(), conn.state, conn.close_code


def _masked(b0: bytes, b1: int, rest: bytes) -> bytes:
    return b0 + bytes([b1]) + b"\x01\x02\x03\x04" + rest


#: Reads that look like the fast path's case but are not (or are, at an edge).
EDGE_READS = {
    "len-126-as-7-bit-sized-read": _masked(b"\x82", 0x80 | 126, bytes(126)),
    "len-127-as-7-bit-sized-read": _masked(b"\x82", 0x80 | 127, bytes(127)),
    "len-125": _masked(b"\x82", 0x80 | 125, bytes(125)),
    "len-0-text": _masked(b"\x81", 0x80, b""),
    "invalid-utf8-text": _masked(b"\x81", 0x80 | 2, b"\xfe\xfd"),
    "truncated-utf8-text": _masked(b"\x81", 0x80 | 1, b"\xc2"),
    "unmasked-with-4-spare-bytes": b"\x82\x04abcdefgh",
    "rsv1": _masked(b"\xc2", 0x80 | 1, b"x"),
    "rsv2": _masked(b"\xa2", 0x80 | 1, b"x"),
    "rsv3": _masked(b"\x92", 0x80 | 1, b"x"),
    "not-fin": _masked(b"\x02", 0x80 | 1, b"x"),
    "continuation": _masked(b"\x80", 0x80 | 1, b"x"),
    "reserved-opcode": _masked(b"\x83", 0x80 | 1, b"x"),
    "ping": _masked(b"\x89", 0x80 | 1, b"x"),
    "pong": _masked(b"\x8a", 0x80 | 1, b"x"),
    "close": _masked(b"\x88", 0x80 | 2, b"\x03\xe8"),
    "one-byte-short": _masked(b"\x82", 0x80 | 3, b"xy"),
    "one-byte-long": _masked(b"\x82", 0x80 | 1, b"xy"),
    "two-frames": _masked(b"\x82", 0x81, b"x") + _masked(b"\x81", 0x81, b"y"),
}


@pytest.mark.parametrize("name", sorted(EDGE_READS))
@pytest.mark.parametrize("prefix", ["", "fragment", "text-fragment", "closing", "partial"])
def test_the_fast_path_agrees_at_the_edges(impl: core_ext.Kernels, peer: Peer, name: str,
                                           prefix: str) -> None:
    pre = {"": b"", "closing": b"", "fragment": peer.frame(BINARY, b"ab", fin=False),
           "text-fragment": peer.frame(TEXT, b"\xc3", fin=False),
           "partial": peer.frame(BINARY, b"abc")[:3]}[prefix]  # the parser holds 3 bytes
    data = EDGE_READS[name]
    assert _run(impl, pre, data, None, prefix == "closing") == _run(
        impl, pre, data, 1, prefix == "closing")


frame_bytes = st.builds(
    # length None: the payload's own length (when it fits in 7 bits), so that
    # well-formed frames, the fast path's case, are common.
    lambda b0, masked, length, key, payload, extra: bytes(
        [b0, (0x80 if masked else 0) | (min(len(payload), 127) if length is None else length)])
    + (key if masked else b"") + payload + extra,
    b0=st.one_of(st.sampled_from([0x81, 0x82]), st.sampled_from([
        0x01, 0x02, 0x80, 0x88, 0x89, 0x8A, 0xC2, 0x92, 0xA1, 0x83, 0x8B]), st.integers(0, 255)),
    masked=st.sampled_from([True, True, True, False]),
    length=st.one_of(st.none(), st.none(), st.integers(0, 127),
                     st.sampled_from([0, 2, 14, 125, 126, 127])),
    key=st.binary(min_size=4, max_size=4),
    payload=st.one_of(st.binary(max_size=130), st.text(max_size=60).map(str.encode),
                      st.sampled_from([b"\xff\xfe", b"\xc3", "✓".encode()])),
    extra=st.one_of(st.just(b""), st.just(b""), st.binary(max_size=8)),
)


@given(data=frame_bytes, which=st.integers(0, 1),
       prefix=st.sampled_from(["", "fragment", "text-fragment"]), close_first=st.booleans())
@settings(max_examples=400)
def test_the_fast_path_agrees_with_the_parser(data: bytes, which: int, prefix: str,
                                              close_first: bool) -> None:
    """Any one read gives what the general path gives for it (fed as two
    reads, so the parser holds a byte and the fast path cannot apply)."""
    impl = load_impl(IMPLEMENTATIONS[which])
    peer = Peer(impl)
    pre = {"": b"", "fragment": peer.frame(BINARY, b"ab", fin=False),
           "text-fragment": peer.frame(TEXT, b"\xc3", fin=False)}[prefix]
    whole = _run(impl, pre, data, None, close_first)
    split = _run(impl, pre, data, 1, close_first)
    assert whole == split
