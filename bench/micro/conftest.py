"""``impl``: each benchmark runs on the Python twin and the compiled kernel."""

from __future__ import annotations

import pytest

import core_ext


@pytest.fixture(params=["python", "cython"])
def impl(request: pytest.FixtureRequest) -> core_ext.Kernels:
    try:
        return core_ext.kernels(request.param)
    except ImportError as exc:
        if core_ext.REQUIRE_C:
            pytest.fail(f"compiled core_ext did not load: {exc}", pytrace=False)
        pytest.skip(f"COMPILED core_ext NOT BENCHMARKED: {exc}")
