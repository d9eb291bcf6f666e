"""The crash test: the process that holds undelivered events is killed
with SIGKILL while an app holds one of its requests, and a new process is
started.  Every event arrives at least once, the resent one with the same
event_id, none is lost and the channel's order holds."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from server.runner import Running
from tests.api.slack.events_helpers import Received, Recorder, fast_events, point_events
from tests.api.slack.helpers import cid, team_with_bot

# A process that runs only an event dispatcher on the test's database, with
# the test server's settings (the same secret, so the same signing secrets).
_CHILD = """
import asyncio, sys
from pathlib import Path
from tests.fixtures.parley import make_settings
from server.composition import build

async def main():
    settings = make_settings(Path(sys.argv[2]), app_events_timeout_s=float(sys.argv[3]),
                             app_events_retry_delays_s="0,0.3,0.3")
    rt = await build(settings, dsns=[sys.argv[1]])
    rt.start_dispatcher()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _dispatcher_process(dsn: str, data_dir: str,
                              timeout_s: float) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, dsn, data_dir, str(timeout_s),
        stdout=asyncio.subprocess.PIPE, cwd=os.getcwd())
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready", line
    return proc


async def test_sigkill_of_the_dispatching_process_loses_nothing(
        parley_db: tuple[Running, str], tmp_path: Path) -> None:
    parley, dsn = parley_db
    hung = asyncio.Event()

    def script(rec: Recorder, got: Received) -> web.Response | None:
        if got.payload["event"]["text"] == "m3" and not hung.is_set():
            hung.set()
            return Recorder.SLEEP  # the app holds the request; the process dies meanwhile
        return None

    rec = await Recorder(script=script, sleep_s=10).start()
    t, bot = await team_with_bot(parley)
    try:
        # Only the child processes dispatch: stop the server's own dispatcher.
        for task in [x for x in parley.rt.tasks if x.get_name() == "parley-app-events"]:
            task.cancel()
            parley.rt.tasks.remove(task)
        parley.rt.dispatcher = None
        fast_events(parley)
        await bot.call(bot.client.conversations_join, channel=cid("public", t.general))
        first = await _dispatcher_process(dsn, str(tmp_path), 1.0)  # lease: 3 * 1 + 1 s
        try:
            await point_events(t.ada, t.ws, bot, rec.url, ["message.channels"])
            for i in range(1, 6):
                await t.post(t.bob, t.general, f"m{i}")
            await asyncio.wait_for(hung.wait(), 15)
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        second = await _dispatcher_process(dsn, str(tmp_path), 1.0)
        try:
            got = await rec.wait_for(
                lambda rs: [r.payload["event"]["text"] for r in rs][-1:] == ["m5"], timeout=30)
        finally:
            second.send_signal(signal.SIGKILL)
            await second.wait()
        texts = [r.payload["event"]["text"] for r in got]
        assert texts == ["m1", "m2", "m3", "m3", "m4", "m5"]
        ids = [r.payload["event_id"] for r in got]
        assert ids[2] == ids[3] and len(set(ids)) == 5
        # The resend after the takeover is numbered as a retry (the dead
        # process may have sent it, and had); the rest are first tries.
        assert [r.headers.get("x-slack-retry-num") for r in got] == [None, None, None, "1",
                                                                      None, None]
        assert got[3].headers.get("x-slack-retry-reason") == "http_timeout"
    finally:
        await rec.stop()
        await t.close()
