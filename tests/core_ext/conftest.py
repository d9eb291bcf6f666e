"""Every behavioural test of a kernel runs on both implementations.

``impl`` yields a ``core_ext.Kernels`` namespace for "python" and for
"cython".  If the compiled modules do not load, the "cython" case is skipped
with a loud reason, or *fails* when ``CORE_EXT_REQUIRE_C=1`` (CI sets it, so
the compiled tests can never silently vanish).
"""

from __future__ import annotations

import pytest

import core_ext

IMPLEMENTATIONS = ("python", "cython")


def load_impl(name: str) -> core_ext.Kernels:
    """The named implementation, or skip/fail as the module docstring says."""
    if name == "python":
        return core_ext.kernels("python")
    try:
        return core_ext.kernels("cython")
    except ImportError as exc:
        message = (
            f"COMPILED core_ext NOT TESTED: {exc}. Build it with "
            "`CORE_EXT_BUILD=yes pip install --no-build-isolation -e .`"
        )
        if core_ext.REQUIRE_C:
            pytest.fail(message + " (CORE_EXT_REQUIRE_C=1)", pytrace=False)
        pytest.skip(message + "; set CORE_EXT_REQUIRE_C=1 to make this fatal")


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> core_ext.Kernels:
    return load_impl(request.param)


@pytest.fixture(scope="session")
def both() -> tuple[core_ext.Kernels, core_ext.Kernels]:
    """(python, cython), for differential tests."""
    return load_impl("python"), load_impl("cython")
