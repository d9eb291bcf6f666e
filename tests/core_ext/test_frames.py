"""Frame parser and builder (frames_py / frames_c), on both implementations."""

from __future__ import annotations

import itertools
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core_ext
from core_ext import FrameError

KEY = b"\x37\xfa\x21\x3d"
MiB = 1024 * 1024


def triples(frames: list[object]) -> list[tuple[bool, int, bytes]]:
    return [(bool(f.fin), f.opcode, f.payload) for f in frames]  # type: ignore[attr-defined]


def parse_all(impl: core_ext.Kernels, data: bytes, **kw: object) -> list[tuple[bool, int, bytes]]:
    parser = impl.FrameParser(kw.pop("max_frame_bytes", MiB), **kw)
    return triples(parser.feed(data))


def error_of(impl: core_ext.Kernels, data: bytes, **kw: object) -> FrameError:
    parser = impl.FrameParser(kw.pop("max_frame_bytes", MiB), **kw)
    with pytest.raises(FrameError) as info:
        parser.feed(data)
    return info.value


# --- RFC 6455 section 5.7 examples ---------------------------------------------------

def test_rfc_example_unmasked_hello(impl: core_ext.Kernels) -> None:
    data = bytes.fromhex("810548656c6c6f")
    assert parse_all(impl, data, require_mask=False) == [(True, 1, b"Hello")]
    assert impl.build_frame(0x1, b"Hello") == data


def test_rfc_example_masked_hello(impl: core_ext.Kernels) -> None:
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert parse_all(impl, data) == [(True, 1, b"Hello")]
    assert impl.build_frame(0x1, b"Hello", mask_key=KEY) == data


def test_rfc_example_fragmented_hello(impl: core_ext.Kernels) -> None:
    data = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert parse_all(impl, data, require_mask=False) == [(False, 1, b"Hel"), (True, 0, b"lo")]


def test_rfc_example_ping_and_lengths(impl: core_ext.Kernels) -> None:
    assert impl.build_frame(0x9, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert impl.build_frame(0x2, bytes(256))[:4] == bytes.fromhex("827e0100")
    assert impl.build_frame(0x2, bytes(65536))[:10] == bytes.fromhex("827f0000000000010000")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("masked", [False, True])
def test_build_then_parse_round_trip(impl: core_ext.Kernels, length: int, masked: bool) -> None:
    payload = random.Random(length).randbytes(length)
    frame = impl.build_frame(0x2, payload, fin=False, mask_key=KEY if masked else None)
    assert parse_all(impl, frame, require_mask=masked) == [(False, 2, payload)]


def test_parser_returns_nothing_until_a_frame_is_complete(impl: core_ext.Kernels) -> None:
    frame = impl.build_frame(0x1, b"abcdef", mask_key=KEY)
    parser = impl.FrameParser(MiB)
    assert parser.feed(frame[:1]) == []
    assert parser.feed(frame[1:7]) == []
    assert parser.buffered_bytes == 7
    assert triples(parser.feed(frame[7:])) == [(True, 1, b"abcdef")]
    assert parser.buffered_bytes == 0


def test_feed_accepts_bytearray_and_memoryview(impl: core_ext.Kernels) -> None:
    frame = impl.build_frame(0x2, b"xyz", mask_key=KEY)
    parser = impl.FrameParser(MiB)
    assert triples(parser.feed(bytearray(frame))) == [(True, 2, b"xyz")]
    assert triples(parser.feed(memoryview(frame))) == [(True, 2, b"xyz")]


# --- violations ----------------------------------------------------------------------

@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
def test_rsv_bits_are_a_protocol_error(impl: core_ext.Kernels, rsv: int) -> None:
    err = error_of(impl, bytes([0x81 | rsv, 0x80]) + KEY)
    assert (err.close_code, "RSV" in err.reason) == (1002, True)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcodes_are_a_protocol_error(impl: core_ext.Kernels, opcode: int) -> None:
    assert error_of(impl, bytes([0x80 | opcode, 0x80]) + KEY).close_code == 1002


def test_unmasked_client_frame_is_a_protocol_error(impl: core_ext.Kernels) -> None:
    err = error_of(impl, impl.build_frame(0x1, b"hi"))
    assert (err.close_code, err.reason) == (1002, "unmasked client frame")


def test_masked_frame_rejected_when_masks_are_not_expected(impl: core_ext.Kernels) -> None:
    err = error_of(impl, impl.build_frame(0x1, b"hi", mask_key=KEY), require_mask=False)
    assert err.close_code == 1002


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_fragmented_control_frame_is_a_protocol_error(impl: core_ext.Kernels, opcode: int) -> None:
    assert error_of(impl, bytes([opcode, 0x80]) + KEY).close_code == 1002


@pytest.mark.parametrize("length_byte", [126, 127])
def test_control_frame_over_125_bytes_fails_from_the_first_two_bytes(
    impl: core_ext.Kernels, length_byte: int
) -> None:
    # Only two bytes are needed to know: fail fast (Autobahn 2.5, 7.3.6).
    assert error_of(impl, bytes([0x89, 0x80 | length_byte])).close_code == 1002


def test_non_minimal_16_bit_length_is_a_protocol_error(impl: core_ext.Kernels) -> None:
    data = bytes([0x82, 0x80 | 126, 0, 125]) + KEY + bytes(125)
    assert error_of(impl, data).close_code == 1002


def test_non_minimal_64_bit_length_is_a_protocol_error(impl: core_ext.Kernels) -> None:
    data = bytes([0x82, 0x80 | 127]) + (65535).to_bytes(8, "big") + KEY
    assert error_of(impl, data).close_code == 1002


def test_64_bit_length_with_msb_set_is_a_protocol_error(impl: core_ext.Kernels) -> None:
    data = bytes([0x82, 0x80 | 127]) + (1 << 63).to_bytes(8, "big") + KEY
    assert error_of(impl, data).close_code == 1002


def test_oversized_frame_fails_from_the_header_alone(impl: core_ext.Kernels) -> None:
    header = bytes([0x82, 0x80 | 126]) + (1001).to_bytes(2, "big") + KEY
    parser = impl.FrameParser(1000)
    with pytest.raises(FrameError) as info:
        parser.feed(header)  # no payload byte was sent
    assert info.value.close_code == 1009


def test_frame_of_exactly_max_bytes_is_accepted(impl: core_ext.Kernels) -> None:
    frame = impl.build_frame(0x2, bytes(1000), mask_key=KEY)
    assert parse_all(impl, frame, max_frame_bytes=1000) == [(True, 2, bytes(1000))]


def test_error_carries_the_frames_completed_before_it(impl: core_ext.Kernels) -> None:
    good = impl.build_frame(0x1, b"ok", mask_key=KEY)
    parser = impl.FrameParser(MiB)
    with pytest.raises(FrameError) as info:
        parser.feed(good + good + bytes([0xC1, 0x80]) + KEY)
    assert triples(info.value.frames) == [(True, 1, b"ok"), (True, 1, b"ok")]


def test_parser_is_dead_after_an_error(impl: core_ext.Kernels) -> None:
    parser = impl.FrameParser(MiB)
    with pytest.raises(FrameError):
        parser.feed(bytes([0xF1, 0x80]))
    with pytest.raises(FrameError) as again:
        parser.feed(impl.build_frame(0x1, b"fine", mask_key=KEY))
    assert again.value.close_code == 1002


# --- builder contract ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("opcode", "payload", "fin", "key"),
    [
        (0x3, b"", True, None),
        (0x10, b"", True, None),
        (-1, b"", True, None),
        (0x9, bytes(126), True, None),
        (0x8, b"", False, None),
        (0x1, b"x", True, b"abc"),
    ],
)
def test_build_frame_rejects_invalid_frames(
    impl: core_ext.Kernels, opcode: int, payload: bytes, fin: bool, key: bytes | None
) -> None:
    with pytest.raises(ValueError):
        impl.build_frame(opcode, payload, fin, key)


def test_frames_compare_by_value_across_implementations(
    both: tuple[core_ext.Kernels, core_ext.Kernels],
) -> None:
    python, cython = both
    a = python.Frame(True, 1, b"x")
    b = cython.Frame(True, 1, b"x")
    assert a == b and b == a
    assert hash(a) == hash(b)
    assert a != python.Frame(False, 1, b"x")
    assert repr(a) == repr(b) == "Frame(fin=True, opcode=0x1, payload=b'x')"


# --- chunking and buffering -----------------------------------------------------------

def _stream(impl: core_ext.Kernels) -> bytes:
    rnd = random.Random(42)
    parts = [
        impl.build_frame(0x1, "héllo".encode(), fin=False, mask_key=rnd.randbytes(4)),
        impl.build_frame(0x9, b"ping", mask_key=rnd.randbytes(4)),
        impl.build_frame(0x0, b" world", mask_key=rnd.randbytes(4)),
        impl.build_frame(0x2, rnd.randbytes(300), mask_key=rnd.randbytes(4)),
        impl.build_frame(0x2, b"", mask_key=rnd.randbytes(4)),
        impl.build_frame(0x8, b"\x03\xe8bye", mask_key=rnd.randbytes(4)),
    ]
    return b"".join(parts)


def test_every_split_of_a_stream_parses_the_same(impl: core_ext.Kernels) -> None:
    stream = _stream(impl)
    expected = parse_all(impl, stream)
    assert len(expected) == 6
    for cut in range(len(stream) + 1):
        parser = impl.FrameParser(MiB)
        got = triples(parser.feed(stream[:cut])) + triples(parser.feed(stream[cut:]))
        assert got == expected, cut


def test_byte_at_a_time_parses_the_same(impl: core_ext.Kernels) -> None:
    stream = _stream(impl)
    parser = impl.FrameParser(MiB)
    got = []
    for i in range(len(stream)):
        got += triples(parser.feed(stream[i : i + 1]))
    assert got == parse_all(impl, stream)


def test_large_frame_in_small_chunks_is_linear(impl: core_ext.Kernels) -> None:
    # 8 MiB in 1 KiB reads: quadratic re-buffering would copy ~32 GiB.
    frame = impl.build_frame(0x2, bytes(8 * MiB), mask_key=KEY)
    parser = impl.FrameParser(16 * MiB)
    started = time.perf_counter()
    frames = []
    for i in range(0, len(frame), 1024):
        frames += parser.feed(frame[i : i + 1024])
    assert time.perf_counter() - started < 5.0
    assert len(frames) == 1 and len(frames[0].payload) == 8 * MiB


frame_specs = st.lists(
    st.tuples(
        st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]),
        st.binary(max_size=300),
        st.booleans(),
        st.binary(min_size=4, max_size=4),
    ),
    max_size=12,
)


def _build_stream(impl: core_ext.Kernels, specs: list[tuple[int, bytes, bool, bytes]]) -> bytes:
    out = []
    for opcode, payload, fin, key in specs:
        if opcode >= 0x8:
            payload, fin = payload[:125], True
        out.append(impl.build_frame(opcode, payload, fin, key))
    return b"".join(out)


@given(specs=frame_specs, cuts=st.lists(st.integers(0, 5000), max_size=8))
@settings(max_examples=200)
def test_random_splits_never_change_a_parse(
    both: tuple[core_ext.Kernels, core_ext.Kernels],
    specs: list[tuple[int, bytes, bool, bytes]],
    cuts: list[int],
) -> None:
    python, cython = both
    stream = _build_stream(python, specs)
    assert stream == _build_stream(cython, specs)
    expected = [(fin if op < 8 else True, op, p if op < 8 else p[:125]) for op, p, fin, _ in specs]
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for impl in both:
        parser = impl.FrameParser(MiB)
        got: list[tuple[bool, int, bytes]] = []
        for a, b in itertools.pairwise(bounds):
            got += triples(parser.feed(stream[a:b]))
        assert got == expected


def _outcome(impl: core_ext.Kernels, chunks: list[bytes], **kw: object) -> object:
    parser = impl.FrameParser(kw.pop("max_frame_bytes", 4096), **kw)
    got: list[tuple[bool, int, bytes]] = []
    try:
        for chunk in chunks:
            got += triples(parser.feed(chunk))
    except FrameError as exc:
        return (got + triples(exc.frames), exc.close_code, exc.reason)
    return (got, parser.buffered_bytes)


@given(
    chunks=st.lists(st.binary(max_size=200), max_size=6),
    require_mask=st.booleans(),
)
@settings(max_examples=500)
def test_compiled_and_python_parsers_agree_on_random_bytes(
    both: tuple[core_ext.Kernels, core_ext.Kernels], chunks: list[bytes], require_mask: bool
) -> None:
    python, cython = both
    assert _outcome(python, chunks, require_mask=require_mask) == _outcome(
        cython, chunks, require_mask=require_mask
    )
    # And chunking does not matter either.
    whole = _outcome(python, [b"".join(chunks)], require_mask=require_mask)
    assert whole == _outcome(python, chunks, require_mask=require_mask)
