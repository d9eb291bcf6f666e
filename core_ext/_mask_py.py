"""RFC 6455 section 5.3 masking: the pure-Python twin of ``_mask.pyx``.

``out[i] = data[i] ^ key[i % 4]``; the same call masks and unmasks.  The XOR
is done on one big integer (``int.from_bytes``), which runs in C inside
CPython and is far faster than a per-byte Python loop.
"""

from __future__ import annotations

_KEY_BYTES = 4


def mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte ``key`` repeated (masks and unmasks).

    ``data`` is any bytes-like object; ``key`` must be 4 bytes (ValueError).
    """
    if len(key) != _KEY_BYTES:
        raise ValueError("mask key must be exactly 4 bytes")
    n = len(data)
    if n == 0:
        return b""
    # Repeat the key to cover data, then XOR as little-endian integers: byte i
    # of the result is data[i] ^ key[i % 4].
    stream = (bytes(key) * (n // _KEY_BYTES + 1))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return value.to_bytes(n, "little")


def mask_slice(buf: bytes, start: int, end: int, key: bytes) -> bytes:
    """Return ``mask(buf[start:end], key)``.

    Requires ``0 <= start <= end <= len(buf)`` (ValueError otherwise).
    """
    if start < 0 or end < start or end > len(buf):
        raise ValueError("slice out of range")
    return mask(buf[start:end], key)
