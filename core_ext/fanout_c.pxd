# C types for fanout_py.py, compiled as fanout_c (see setup.py).  Nothing in
# here changes behaviour: the .py source is the single definition of the logic.

import cython


cdef class OutboundQueue:
    cdef list _dirty                 # connections in turn order; [_next:] still wait
    cdef Py_ssize_t _next
    cdef bint _armed                 # wake() called, not yet drained
    cdef object _wake
    cdef object _on_error
    cdef public Py_ssize_t limit_bytes

    cdef void _add(self, Outbound ob) except *

    @cython.locals(i=Py_ssize_t, end=Py_ssize_t, ob=Outbound, dirty=list)
    cpdef bint flush(self, Py_ssize_t max_connections) except -1


cdef class Outbound:
    cdef object _ob_transport
    cdef OutboundQueue _ob_queue
    cdef object _ob_first            # bytes, or None when nothing is queued
    cdef list _ob_more               # None until a second frame is queued
    cdef readonly Py_ssize_t _ob_bytes
    cdef Py_ssize_t _ob_high         # the transport's high-water mark; -1: unknown
    cdef public bint _ob_open
    cdef bint _ob_dirty
    cdef readonly bint _ob_paused

    cdef Py_ssize_t _backlog(self) except -1

    @cython.locals(queued=Py_ssize_t)
    cdef bint _exceeds(self, Py_ssize_t limit) except -1

    @cython.locals(queue=OutboundQueue)
    cdef bint _push(self, bytes frame, bint check_limit) except -1

    @cython.locals(more=list)
    cdef void _write(self) except *


@cython.locals(index=Py_ssize_t, skipped=list, ob=Outbound)
cpdef list fanout_write(object targets, bytes frame, Py_ssize_t limit_bytes)
