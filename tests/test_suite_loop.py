"""The suite runs on the event loop ``tests/conftest.py`` selects: uvloop, as
in production, or the standard loop with ``PARLEY_TEST_LOOP=asyncio``.  Guards
the pytest-asyncio hook that picks it: if it stopped being called, every test
would silently run on the standard loop."""

from __future__ import annotations

import asyncio
import os


async def test_tests_run_on_the_selected_loop() -> None:
    loop = asyncio.get_running_loop()
    if os.environ.get("PARLEY_TEST_LOOP", "uvloop") == "asyncio":
        assert type(loop).__module__.startswith("asyncio"), type(loop)
    else:
        import uvloop

        assert isinstance(loop, uvloop.Loop), type(loop)
