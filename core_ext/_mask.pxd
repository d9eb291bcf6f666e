# C-level API of the masking kernel, cimported by frames_c.pxd so the compiled
# frame parser unmasks without a Python call.

cpdef bytes mask_slice(bytes buf, Py_ssize_t start, Py_ssize_t end, bytes key)
