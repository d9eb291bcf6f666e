"""RFC 6455 masking kernel, on both implementations."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core_ext


def _reference(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def test_rfc6455_example_hello(impl: core_ext.Kernels) -> None:
    # RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
    assert impl.mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


@pytest.mark.parametrize("size", [*range(0, 34), 63, 64, 65, 1000, 65536, 65537])
def test_masking_matches_bytewise_reference(impl: core_ext.Kernels, size: int) -> None:
    rnd = random.Random(size)
    data = rnd.randbytes(size)
    key = rnd.randbytes(4)
    assert impl.mask(data, key) == _reference(data, key)


def test_mask_is_an_involution(impl: core_ext.Kernels) -> None:
    data = random.Random(1).randbytes(4099)
    key = b"\x01\x80\xff\x7f"
    assert impl.mask(impl.mask(data, key), key) == data


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_mask_accepts_bytes_like_and_leaves_input_alone(impl: core_ext.Kernels, kind: type) -> None:
    original = bytearray(b"some payload bytes!")
    data = kind(original)
    out = impl.mask(data, b"abcd")
    assert type(out) is bytes
    assert out == _reference(bytes(original), b"abcd")
    assert bytes(data) == bytes(original)


def test_mask_unaligned_memoryview_slices(impl: core_ext.Kernels) -> None:
    buf = random.Random(7).randbytes(100)
    for offset in range(9):
        view = memoryview(buf)[offset : offset + 50]
        assert impl.mask(view, b"wxyz") == _reference(bytes(view), b"wxyz")


@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_mask_rejects_key_not_four_bytes(impl: core_ext.Kernels, key: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        impl.mask(b"data", key)


def test_mask_rejects_integer_key(impl: core_ext.Kernels) -> None:
    with pytest.raises(TypeError):
        impl.mask(b"data", 4)


def test_mask_slice_equals_mask_of_slice(impl: core_ext.Kernels) -> None:
    buf = random.Random(3).randbytes(300)
    for start, end in [(0, 0), (0, 300), (3, 17), (299, 300), (8, 264)]:
        assert impl.mask_slice(buf, start, end, b"k3y!") == impl.mask(buf[start:end], b"k3y!")


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (5, 4), (0, 11)])
def test_mask_slice_rejects_bad_ranges(impl: core_ext.Kernels, start: int, end: int) -> None:
    with pytest.raises(ValueError, match="range"):
        impl.mask_slice(b"0123456789", start, end, b"abcd")


@given(data=st.binary(max_size=2048), key=st.binary(min_size=4, max_size=4))
def test_compiled_and_python_masks_agree(
    both: tuple[core_ext.Kernels, core_ext.Kernels], data: bytes, key: bytes
) -> None:
    python, cython = both
    assert cython.mask(data, key) == python.mask(data, key) == _reference(data, key)
