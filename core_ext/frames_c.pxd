# C types for frames_py.py, compiled as frames_c (see setup.py).  Nothing in
# here changes behaviour: the .py source is the single definition of the logic.

import cython

# The compiled parser calls the compiled masking kernel at C level; the Python
# import of mask_slice in frames_py.py is shadowed by this cimport.
from core_ext._mask cimport mask_slice

cdef int _KNOWN_OPCODE_BITS
cdef Py_ssize_t _MAX_CONTROL_PAYLOAD
cdef Py_ssize_t _MASK_KEY_BYTES
cdef Py_ssize_t _LEN16_MIN
cdef Py_ssize_t _LEN64_MIN


cdef class Frame:
    cdef readonly bint fin
    cdef readonly int opcode
    cdef readonly bytes payload


cdef class FrameParser:
    cdef list _chunks            # unparsed bytes, oldest first; None when empty
    cdef Py_ssize_t _pending     # total length of _chunks
    cdef Py_ssize_t _need        # _pending must reach this to make progress
    cdef object _error           # the FrameError that killed the parser, or None
    cdef Py_ssize_t _max_frame_bytes
    cdef bint _require_mask

    cpdef list feed(self, object data)

    @cython.locals(
        n=Py_ssize_t,
        pos=Py_ssize_t,
        avail=Py_ssize_t,
        header=Py_ssize_t,
        start=Py_ssize_t,
        end=Py_ssize_t,
        b0="unsigned char",
        b1="unsigned char",
        opcode=int,
        masked=bint,
        length=Py_ssize_t,
        frame=Frame,
        payload=bytes,
    )
    cdef Py_ssize_t _parse(self, bytes data, list frames) except -1
