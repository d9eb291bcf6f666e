"""Envelope codecs: msgpack (binary frames) and JSON (text frames).

Both carry the same envelopes (docs/protocol.md):

* client to server, a command: ``{"op": str, "ref": int|str (optional), "d": map}``
* server to client, an event:  ``{"t": str, "d": map}``; replies to a
  command carry its ``ref``: ``{"t": "ack", "ref": ..., "d": ...}`` or
  ``{"t": "error", "ref": ..., "d": {"code", "message", "retryable"}}``.

In JSON every id (key ``id`` or ending in ``_id``/``_ids``) is a decimal
string; in msgpack it is an integer.  Decoding accepts either on input.

Client strings are always Unicode text, so everything the gateway echoes
back (a ``ref``, a value quoted in an error message) can be encoded again.
msgpack strings are strict UTF-8 (``unpackb`` refuses invalid bytes,
surrogates included).  JSON text frames are strict UTF-8 too, but a
``\uD800``-style escape makes ``json.loads`` produce a lone surrogate, which
has no UTF-8 form: a frame holding one anywhere is refused as a whole with
``invalid_text`` (RFC 8259 8.2: such a string is not Unicode text), before
any field is read.  The check walks the decoded command only when the frame
contains a backslash and a surrogate escape (``_SURROGATE_ESCAPE``; paired
ones, which ``JSON.stringify`` never writes but Python's ``json.dumps`` does
for emoji, pass the walk).  A ``ref`` is echoed only if it is a 64-bit integer or a
short valid string; any other is refused with ``ref`` null.

Each codec also carries ``heartbeats``: the exact frames (bytes for msgpack,
str for JSON) of a ref-less ``heartbeat`` as common encoders write them,
mapped to the command's ``active`` flag.  The gateway looks a frame up there
before decoding it (``GatewayApp.on_message``), so the commonest command of
all costs one dict lookup instead of an envelope decode.  Every key is
checked at import against ``decode``: the table can only ever say what
decoding would have said.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final

import msgpack

from gateway.protocol import OP_HEARTBEAT as HEARTBEAT_OP
from parley import events
from parley.actions.validate import encodable

MAX_REF_LEN = 64  # characters of a string ref echoed back to the client
REF_INT_MIN, REF_INT_END = -(2**63), 2**64  # an integer ref fits msgpack's int64/uint64
# A JSON escape of a surrogate code point (U+D800..U+DFFF), paired or not.
# Only frames containing one can decode to a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BadEnvelope(ValueError):
    """The frame is not a valid command envelope; ``code`` says why."""

    def __init__(self, code: str, message: str, ref: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def echoable_ref(ref: Any) -> bool:
    """Whether ``ref`` may be echoed in a reply: None, a 64-bit integer, or a
    string of at most MAX_REF_LEN characters that can be encoded again."""
    if ref is None:
        return True
    if isinstance(ref, int):
        return not isinstance(ref, bool) and REF_INT_MIN <= ref < REF_INT_END
    return isinstance(ref, str) and len(ref) <= MAX_REF_LEN and encodable(ref)


def _all_text(obj: Any) -> bool:
    """Whether every string in ``obj`` (map keys too) is ``encodable``.
    Iterative: ``json.loads`` nests up to the recursion limit."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not encodable(item):
                return False
        elif isinstance(item, dict):
            stack += item.keys()
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return True


def _check(obj: Any) -> tuple[str, Any, dict[str, Any]]:
    if not isinstance(obj, dict):
        raise BadEnvelope("bad_envelope", "a command is a map with 'op'")
    ref = obj.get("ref")
    if not echoable_ref(ref):
        raise BadEnvelope("bad_envelope",
                          "'ref' is a 64-bit integer or a string of up to "
                          f"{MAX_REF_LEN} characters")
    op = obj.get("op")
    if not isinstance(op, str):
        raise BadEnvelope("bad_envelope", "'op' must be a string", ref)
    data = obj.get("d", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadEnvelope("bad_envelope", "'d' must be a map", ref)
    return op, ref, data


class MsgpackCodec:
    name = "msgpack"
    binary = True
    #: Ref-less heartbeat frames -> ``active`` (see the module docstring).
    heartbeats: ClassVar[Mapping[bytes | str, bool]]

    @staticmethod
    def decode(frame: bytes | str) -> tuple[str, Any, dict[str, Any]]:
        if isinstance(frame, str):
            raise BadEnvelope("wrong_frame_type", "parley.msgpack.v1 uses binary frames")
        try:
            # unpackb bounds every length by the input size, so a hostile
            # header cannot make it allocate more than the frame holds.
            obj = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
            # ValueError covers ExtraData, FormatError, StackError and bad UTF-8;
            # TypeError an unhashable map key (a list as a key).
            raise BadEnvelope("bad_envelope", "not a msgpack map") from exc
        return _check(obj)

    @staticmethod
    def encode(obj: dict[str, Any]) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)


class JsonCodec:
    name = "json"
    binary = False
    #: Ref-less heartbeat frames -> ``active`` (see the module docstring).
    heartbeats: ClassVar[Mapping[bytes | str, bool]]

    @staticmethod
    def decode(frame: bytes | str) -> tuple[str, Any, dict[str, Any]]:
        if isinstance(frame, bytes):
            raise BadEnvelope("wrong_frame_type", "parley.json.v1 uses text frames")
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError) as exc:
            raise BadEnvelope("bad_envelope", "not a JSON object") from exc
        # "\\" first: a memchr (0.3 us for 40 KB), where the regex costs 14 us
        # and json.loads 23; most frames then stop there.
        if "\\" in frame and _SURROGATE_ESCAPE.search(frame) is not None and not _all_text(obj):
            ref = obj.get("ref") if isinstance(obj, dict) else None
            raise BadEnvelope("invalid_text",
                              "the command holds a lone surrogate escape (\\uD800-\\uDFFF "
                              "without its pair): strings must be Unicode text",
                              ref if echoable_ref(ref) else None)
        return _check(obj)

    @staticmethod
    def encode(obj: dict[str, Any]) -> str:
        return events.to_json(obj)


Codec = MsgpackCodec | JsonCodec


def _heartbeat_envelopes() -> list[dict[str, Any]]:
    """A ref-less heartbeat as clients write it: ``op`` alone, or with ``d``
    empty or carrying ``active``; ``op`` first or last."""
    out: list[dict[str, Any]] = [{"op": HEARTBEAT_OP}]
    for d in ({}, {"active": True}, {"active": False}):
        out += [{"op": HEARTBEAT_OP, "d": d}, {"d": d, "op": HEARTBEAT_OP}]
    return out


def _heartbeat_table(decode: Callable[[Any], tuple[str, Any, dict[str, Any]]],
                     frames: Iterable[bytes | str]) -> dict[bytes | str, bool]:
    """``frames`` -> their ``active`` flag, as the generic path reads it.

    RuntimeError (at import) if a frame is not a ref-less heartbeat whose
    ``d`` holds at most a boolean ``active``: the fast path must never
    disagree with ``decode``.
    """
    table: dict[bytes | str, bool] = {}
    for frame in frames:
        op, ref, d = decode(frame)
        active = d.get("active", True)
        if op != HEARTBEAT_OP or ref is not None or set(d) - {"active"} or not isinstance(
                active, bool):
            raise RuntimeError(f"not a plain ref-less heartbeat: {frame!r}")
        table[frame] = active
    return table


MsgpackCodec.heartbeats = _heartbeat_table(
    MsgpackCodec.decode, [msgpack.packb(env) for env in _heartbeat_envelopes()])
# json.dumps' default separators (Python) and compact ones (JSON.stringify).
JsonCodec.heartbeats = _heartbeat_table(
    JsonCodec.decode, [json.dumps(env, separators=seps) for env in _heartbeat_envelopes()
                       for seps in ((", ", ": "), (",", ":"))])
#: The longest frame in either table (characters = bytes: they are ASCII).
#: Look a frame up only if it is no longer: hashing a 40 KB ``send`` just to
#: miss would cost more than decoding a heartbeat.
HEARTBEAT_MAX_LEN: Final = max(len(f) for c in (MsgpackCodec, JsonCodec) for f in c.heartbeats)


def codec_for(subprotocol: str) -> type[MsgpackCodec] | type[JsonCodec]:
    return JsonCodec if subprotocol.endswith(".json.v1") else MsgpackCodec


def as_id(value: Any, field: str) -> int:
    """An id from a command: an int (msgpack) or a decimal string (JSON)."""
    # isascii: str.isdigit also takes "²" and other digits int() refuses (ValueError).
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise BadEnvelope("invalid_field", f"'{field}' must be an id")
    return value
