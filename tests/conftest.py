"""Test-wide configuration: real services only (see tests/fixtures/)."""

from __future__ import annotations

import asyncio
import os

import pytest

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.parley",
]


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    """uvloop, as in production; PARLEY_TEST_LOOP=asyncio runs the suite on the
    standard loop (CI does one run that way, in debug mode)."""
    if os.environ.get("PARLEY_TEST_LOOP", "uvloop") == "asyncio":
        return asyncio.DefaultEventLoopPolicy()
    import uvloop

    return uvloop.EventLoopPolicy()
