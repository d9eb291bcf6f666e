"""The Events API dispatcher in its own process (server/app_events_proc.py):
events reach apps from a child process at nice +10, not from the process
that holds people's sockets; a killed child is restarted and loses
nothing; the child never outlives its server; the failing-app check stays
in the API process, whose DMs reach people live."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from parley.actions import app_health
from server.app_events_proc import DispatcherChild
from server.composition import build
from server.runner import Running, start
from tests.api.helpers import expect
from tests.api.slack.events_helpers import Received, Recorder, point_events, signed_by
from tests.api.slack.helpers import cid, team_with_bot
from tests.fixtures.parley import TEST_SECRET, make_settings
from tests.fixtures.postgres import PgFactory

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def served(pg_factory: PgFactory, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    """API and gateway in this process; the dispatcher a child process."""
    monkeypatch.setattr(app_health, "CHECK_EVERY_S", 0.5)  # the API process's check loop
    dsn = await pg_factory.new()
    settings = make_settings(tmp_path, app_events_dispatch="process",
                             app_events_timeout_s=0.5, app_events_retry_delays_s="0,0.3,0.3",
                             app_events_disable_min_tries=4, app_events_disable_window_s=60.0)
    rt = await build(settings, dsns=[dsn])
    running = await start(rt, api_port=0, gateway_port=0)
    try:
        yield running
    finally:
        await running.stop(drain_deadline_s=1.0)


def _texts(rs: list[Received]) -> list[str]:
    return [r.payload["event"]["text"] for r in rs]


def _child(running: Running) -> DispatcherChild:
    assert running.events_child is not None
    return running.events_child


async def test_events_are_sent_by_a_niced_child_process(served: Running,
                                                        app_site: Recorder) -> None:
    assert served.rt.dispatcher is None  # nothing sends events from this process
    child = psutil.Process(_child(served).pid)
    assert child.ppid() == os.getpid() and "app-events" in child.cmdline()
    assert child.nice() == os.nice(0) + 10
    t, bot = await team_with_bot(served)
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    shown = await point_events(t.ada, t.ws, bot, app_site.url, ["message.channels"])
    assert shown["event_request_url_verified"] is True
    await t.post(t.bob, t.general, "from the child")
    [got] = await app_site.wait_for(lambda rs: len(rs) >= 1)
    assert got.payload["event"]["text"] == "from the child"
    assert signed_by(bot.signing_secret, got.headers, got.body)
    await t.close()


async def test_a_killed_child_is_restarted_and_loses_nothing(served: Running,
                                                             app_site: Recorder) -> None:
    t, bot = await team_with_bot(served)
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    await point_events(t.ada, t.ws, bot, app_site.url, ["message.channels"])
    await t.post(t.bob, t.general, "before")
    await app_site.wait_for(lambda rs: len(rs) >= 1)
    child = _child(served)
    first = child.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await t.post(t.bob, t.general, "while it was dead")  # durable: waits in PostgreSQL
    await t.post(t.bob, t.general, "after")
    got = await app_site.wait_for(lambda rs: "after" in _texts(rs), timeout=30.0)
    # At least once: "before" may come twice (killed between the app's 200
    # and the cursor's move), then with the same event_id.
    first_seen = {r.payload["event_id"]: r.payload["event"]["text"] for r in reversed(got)}
    assert list(reversed(first_seen.values())) == ["before", "while it was dead", "after"]
    assert _texts(got)[-2:] == ["while it was dead", "after"]
    assert child.starts == 2 and child.pid != first
    await t.close()


async def test_the_api_process_disables_a_failing_app_and_dms_live(
        served: Running, app_site: Recorder) -> None:
    """The child counts the tries; the API process's check loop turns the
    app off, and the admin's socket gets the DM in real time."""
    app_site.script = lambda rec, got: web.Response(status=500)
    t, bot = await team_with_bot(served)
    await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
    await point_events(t.ada, t.ws, bot, app_site.url, ["message.channels"])
    ws = await t.connect(t.ada)
    await t.post(t.bob, t.general, "fails four times")  # the try and three retries
    async with asyncio.timeout(30):  # the child flushes counts every 5 s
        while True:
            frame = await ws.recv(timeout=30)
            if frame.get("t") == "message.created" and str(frame["d"].get(
                    "user_id")) == str(bot.app["bot_user_id"]):
                break
    assert "are turned off" in frame["d"]["text"]
    shown = await expect(t.ada.api, "GET", t.w(f"/apps/{bot.app['id']}"), 200)
    assert shown["events_disabled_ts"] is not None
    await ws.close()
    await t.close()


def _serve(tmp_path: Path, dsn: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PARLEY_JWT_SECRET=TEST_SECRET, PARLEY_DATABASE_URL=dsn,
               PARLEY_API_PORT="0", PARLEY_GATEWAY_PORT="0", PARLEY_DATA_DIR=str(tmp_path))
    env.pop("PARLEY_WORKER_INDEX", None)
    return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--workers", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _child_of(server: subprocess.Popen[bytes]) -> psutil.Process:
    assert server.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line or b"Press Ctrl-C" in line:
            break
    for proc in psutil.Process(server.pid).children():
        if "app-events" in proc.cmdline():
            return proc
    raise AssertionError("parley serve started no Events API dispatcher")


def _gone(proc: psutil.Process, timeout_s: float) -> bool:
    try:
        proc.wait(timeout_s)
    except psutil.TimeoutExpired:
        return False
    return True


async def test_the_child_stops_with_its_server_and_never_outlives_it(
        pg_factory: PgFactory, tmp_path: Path) -> None:
    dsn = await pg_factory.new()
    server = _serve(tmp_path / "a", dsn)
    try:
        child = _child_of(server)
        server.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 30) == 0
        assert await asyncio.to_thread(_gone, child, 5)
        # SIGKILL leaves the child no one to stop it: it notices its parent is gone.
        server = _serve(tmp_path / "b", dsn)
        child = _child_of(server)
        server.kill()
        server.wait()
        assert await asyncio.to_thread(_gone, child, 10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
