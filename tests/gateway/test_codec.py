"""gateway/protocol/codec.py without sockets: what the codecs refuse so that nothing a
client sends can make a reply unencodable."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from gateway.protocol.codec import BadEnvelope, JsonCodec, MsgpackCodec, as_id, echoable_ref


def _refused(codec: Any, frame: bytes | str) -> BadEnvelope:
    with pytest.raises(BadEnvelope) as err:
        codec.decode(frame)
    return err.value


@pytest.mark.parametrize("frame", [
    r'{"op":"send","ref":7,"d":{"channel_id":"1","text":"x\ud800"}}',
    r'{"op":"send","ref":7,"d":{"channel_id":"1","text":"ok","client_msg_id":"\uDFFF"}}',
    r'{"op":"send","ref":7,"d":{"nested":[{"\udbff":1}]}}',  # a key, deep down
    r'{"op":"x\ud83d","ref":7}',  # a high surrogate whose pair never comes
])
def test_a_lone_surrogate_anywhere_is_invalid_text_with_the_ref(frame: str) -> None:
    err = _refused(JsonCodec, frame)
    assert (err.code, err.ref) == ("invalid_text", 7)


@pytest.mark.parametrize("frame", [
    r'{"op":"heartbeat","ref":"\ud800"}',
    r'{"op":"send","ref":"ok\udc00","d":{"text":"fine"}}',
])
def test_a_ref_that_cannot_be_encoded_back_is_refused_with_ref_null(frame: str) -> None:
    err = _refused(JsonCodec, frame)
    assert err.code == "invalid_text" and err.ref is None
    JsonCodec.encode({"t": "error", "ref": err.ref, "d": {}}).encode("utf-8")


_BAD_REFS = [1.5, True, [1], {"a": 1}, "x" * 65]
_HUGE_REFS = [2**64, -(2**63) - 1, 10**400]  # JSON only: msgpack cannot even carry them


@pytest.mark.parametrize("codec,ref", [(JsonCodec, r) for r in _BAD_REFS + _HUGE_REFS]
                         + [(MsgpackCodec, r) for r in _BAD_REFS])
def test_refs_that_are_not_64_bit_ints_or_short_strings_are_bad_envelopes(
        codec: Any, ref: Any) -> None:
    frame = json.dumps({"op": "heartbeat", "ref": ref}) if codec is JsonCodec else \
        msgpack.packb({"op": "heartbeat", "ref": ref})
    err = _refused(codec, frame)
    assert (err.code, err.ref) == ("bad_envelope", None)


def test_every_ref_the_codecs_accept_encodes_back() -> None:
    for ref in (0, 2**64 - 1, -(2**63), "", "\U0001f600" * 32, "x" * 64):
        assert echoable_ref(ref)
        for codec in (JsonCodec, MsgpackCodec):
            frame = json.dumps({"op": "a", "ref": ref}) if codec is JsonCodec else \
                msgpack.packb({"op": "a", "ref": ref})
            _, got, _ = codec.decode(frame)
            out = codec.encode({"t": "ack", "ref": got, "d": {}})
            if isinstance(out, str):
                out.encode("utf-8")


def test_escaped_pairs_and_escaped_backslashes_are_text() -> None:
    # Python's json.dumps writes an emoji as an escaped surrogate pair.
    _, _, d = JsonCodec.decode(json.dumps({"op": "send", "d": {"text": "\U0001f600"}}))
    assert d["text"] == "\U0001f600"
    _, _, d = JsonCodec.decode(r'{"op":"send","d":{"text":"\\ud800"}}')  # a backslash, "ud800"
    assert d["text"] == "\\ud800"


def test_msgpack_strings_are_strict_utf8() -> None:
    # A CESU-8 / WTF-8 surrogate (ED A0 80) in a msgpack str.
    frame = b"\x82\xa2op\xa4send\xa1d\x81\xa4text\xa3\xed\xa0\x80"
    assert _refused(MsgpackCodec, frame).code == "bad_envelope"


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b2", "\u0661\u0662", "\uff11"])
def test_an_id_is_ascii_digits_only(value: str) -> None:
    # str.isdigit takes all of them; int() refuses "²" (the socket used to close with 1011).
    with pytest.raises(BadEnvelope) as err:
        as_id(value, "channel_id")
    assert err.value.code == "invalid_field"
