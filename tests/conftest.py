"""Test-wide configuration: real services only (see tests/fixtures/)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import pytest

# Server processes the tests start (``python -m server.cli ...``) run as one
# process unless a test asks for workers (PARLEY_WORKERS defaults to one per
# core): a test that signals or reads one pid means the server.
os.environ.setdefault("PARLEY_WORKERS", "1")

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.parley",
    "tests.api.slack.events_helpers",  # app_site: a scripted loopback app
]


def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item,
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop, as in production; PARLEY_TEST_LOOP=asyncio runs the suite on the
    standard loop (CI does one run that way, in debug mode).

    pytest-asyncio's hook (1.x), which replaces overriding the deprecated
    ``event_loop_policy`` fixture.  One factory per run, so the test ids stay
    as they were (a single factory adds no parameter id); the loop type is
    chosen once per run, not per test, so both loops are never mixed.
    """
    if os.environ.get("PARLEY_TEST_LOOP", "uvloop") == "asyncio":
        return {"asyncio": asyncio.new_event_loop}
    import uvloop

    return {"uvloop": uvloop.new_event_loop}
