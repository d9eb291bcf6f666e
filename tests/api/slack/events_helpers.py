"""Set-up for the Events API tests: apps on loopback that receive Parley's
event requests (a scripted aiohttp app that records every request, or a
real Bolt app served by Bolt's own HTTP adapter), and the manifest change
that points an app's events at them."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from slack_bolt import App
from slack_bolt.app.app import SlackAppDevelopmentServer

from server.runner import Running
from tests.api.helpers import User, expect
from tests.api.slack.helpers import Bot, manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def events_manifest(url: str, events: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    m = manifest(**kw)
    m["settings"]["event_subscriptions"] = {
        "request_url": url,
        "bot_events": events if events is not None else ["message.channels", "app_mention"]}
    return m


async def point_events(owner: User, ws: str, bot: Bot, url: str,
                       events: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    """Set the app's request URL (Parley sends url_verification before it
    answers); the app as the answer shows it."""
    name = bot.app["name"]
    app: dict[str, Any] = await expect(
        owner.api, "PATCH", f"/v1/workspaces/{ws}/apps/{bot.app['id']}", 200,
        json={"manifest": events_manifest(url, events, name=name, **kw)})
    return app


def fast_events(running: Running, **more: Any) -> None:
    """Short timeouts and retry delays, so retries happen within a test."""
    running.rt.services.settings = dataclasses.replace(
        running.rt.services.settings, app_events_timeout_s=0.5,
        app_events_retry_delays_s="0,0.3,0.3", **more)


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    base = f"v0:{headers['x-slack-request-timestamp']}:".encode() + body
    want = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers["x-slack-signature"])


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]


Script = Callable[["Recorder", Received], web.StreamResponse | None]


@dataclass
class Recorder:
    """A loopback app: answers url_verification, records every other
    request, and answers each as ``script`` says (200 by default; it may
    return a response, or ``Recorder.SLEEP`` to time out)."""

    script: Script | None = None
    received: list[Received] = field(default_factory=list)
    verifications: list[Received] = field(default_factory=list)
    echo: bool = True  # answer url_verification with the challenge
    sleep_s: float = 5.0
    runner: web.AppRunner | None = None
    port: int = 0
    new: asyncio.Event = field(default_factory=asyncio.Event)

    SLEEP = web.Response(status=599)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    async def start(self) -> Recorder:
        app = web.Application()
        app.router.add_post("/slack/events", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        payload = json.loads(body)
        got = Received({k.lower(): v for k, v in request.headers.items()}, body, payload)
        if payload.get("type") == "url_verification":
            self.verifications.append(got)
            self.new.set()
            return web.json_response({"challenge": payload["challenge"] if self.echo else "no"})
        self.received.append(got)
        self.new.set()
        answer = self.script(self, got) if self.script else None
        if answer is Recorder.SLEEP:
            await asyncio.sleep(self.sleep_s)
            return web.Response(status=200)
        return answer or web.Response(status=200)

    def events(self) -> list[dict[str, Any]]:
        return [r.payload["event"] for r in self.received]

    async def wait_for(self, pred: Callable[[list[Received]], bool],
                       timeout: float = 10.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while not pred(self.received):
                self.new.clear()
                await self.new.wait()
        return self.received


@pytest.fixture
async def app_site() -> AsyncIterator[Recorder]:
    """A scripted loopback app for the test (a fixture of every test:
    tests/conftest.py registers this module)."""
    rec = await Recorder().start()
    try:
        yield rec
    finally:
        await rec.stop()


class BoltServer:
    """A Bolt ``App`` served by Bolt's own development server (http.server)
    in a thread, on loopback."""

    def __init__(self, app: App, port: int) -> None:
        self.port = port
        self.server = SlackAppDevelopmentServer(port=port, path="/slack/events", app=app,
                                                http_server_logger_enabled=False)
        self.thread = threading.Thread(target=self.server.start, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self) -> BoltServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server._server.shutdown()
        self.thread.join(timeout=5)
