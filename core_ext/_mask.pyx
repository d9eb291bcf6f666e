# cython: language_level=3
"""RFC 6455 section 5.3 masking, word-wise (the compiled twin of _mask_py).

Rules:
* ``out[i] = data[i] ^ key[i % 4]``; the same call masks and unmasks.
* The input is never modified; a new ``bytes`` is returned.
* The XOR runs 8 bytes at a time on a 64-bit word built from the key repeated
  twice; unaligned loads/stores go through ``memcpy`` (one instruction on
  x86-64/arm64, and no undefined behaviour), the tail of < 8 bytes byte-wise.
* Bounds checking stays on; the loop below indexes raw pointers whose ranges
  are validated before it runs.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memcpy


cdef inline void _xor_into(const unsigned char* src, unsigned char* dst,
                           Py_ssize_t n, const unsigned char* key) noexcept nogil:
    # Requires: src and dst valid for n bytes, key valid for 4 bytes.
    cdef unsigned char key8[8]
    cdef uint64_t key_word, word
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t words_end = n - (n & 7)
    memcpy(key8, key, 4)
    memcpy(key8 + 4, key, 4)
    memcpy(&key_word, key8, 8)
    # Invariant: i is a multiple of 8, so key position i % 4 == 0 here.
    while i < words_end:
        memcpy(&word, src + i, 8)
        word ^= key_word
        memcpy(dst + i, &word, 8)
        i += 8
    while i < n:
        dst[i] = src[i] ^ key[i & 3]
        i += 1


cdef inline bytes _masked_copy(const unsigned char* src, Py_ssize_t n, bytes key):
    if PyBytes_GET_SIZE(key) != 4:
        raise ValueError("mask key must be exactly 4 bytes")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    _xor_into(src, <unsigned char*>PyBytes_AS_STRING(out), n,
              <const unsigned char*>PyBytes_AS_STRING(key))
    return out


def mask(data, key) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte ``key`` repeated (masks and unmasks).

    ``data`` is any bytes-like object; ``key`` must be 4 bytes (ValueError).
    """
    cdef Py_buffer view
    # memoryview() rejects non-buffers (an int key must not become b'\0' * n).
    cdef bytes key_b = key if type(key) is bytes else memoryview(key).tobytes()
    if type(data) is bytes:
        return _masked_copy(<const unsigned char*>PyBytes_AS_STRING(data),
                            PyBytes_GET_SIZE(data), key_b)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _masked_copy(<const unsigned char*>view.buf, view.len, key_b)
    finally:
        PyBuffer_Release(&view)


cpdef bytes mask_slice(bytes buf, Py_ssize_t start, Py_ssize_t end, bytes key):
    """Return ``mask(buf[start:end], key)`` without copying the slice first.

    Requires ``0 <= start <= end <= len(buf)`` (ValueError otherwise).
    """
    if start < 0 or end < start or end > PyBytes_GET_SIZE(buf):
        raise ValueError("slice out of range")
    return _masked_copy(<const unsigned char*>PyBytes_AS_STRING(buf) + start,
                        end - start, key)
