# C types for fanout_py.py, compiled as fanout_c (see setup.py).

import cython


@cython.locals(index=Py_ssize_t, skipped=list)
cpdef list fanout_write(object targets, bytes frame, Py_ssize_t limit_bytes)
