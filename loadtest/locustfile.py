"""Locust suites for Parley.  Pick users by class name on the command line:

  ChatUser           WebSocket chat: ``connect``, ``send-to-ack``, ``send-to-deliver``
  RestUser           REST mix: history, channel lists, posting (search once it exists)
  StormUser          connection storm: bursts of connects, no jitter
  JitteredStormUser  the same, reconnecting after a jittered delay
  PresenceUser       heartbeat flood (``heartbeat`` -> ``heartbeat_ack``)

``--host`` is the REST API (http://127.0.0.1:8080); ``--gateway-url`` (or
``PARLEY_GATEWAY_URL``) the gateway (default: the API host on port 8765).
``--text realistic|fixed`` (or ``PARLEY_LOAD_TEXT``; default realistic) picks
the bodies ChatUser and RestUser post: ``bench.textgen`` chat text seeded by
``--text-seed`` (``PARLEY_LOAD_SEED``), or the old one-line fixed strings.
Every Locust worker process registers its own accounts and one shared
workspace with a ``load`` channel through the REST API (outside the
statistics).  Exact commands: docs/benchmarks.md, "Load tests (Locust)".
"""

from __future__ import annotations

import itertools
import os
import random
import time
from typing import Any
from urllib.parse import urlsplit

import gevent
import requests
from gevent.lock import Semaphore
from locust import HttpUser, User, between, constant_pacing, events, task
from locust.env import Environment

from bench import textgen
from loadtest.wsclient import GatewayClient

PASSWORD = "load test password 1234"  # noqa: S105 - throwaway load-test accounts
#: Sends older than this without an ack or a delivery are reported as failures.
PENDING_TIMEOUT_S = 10.0
STORM_BURST = 8  # sockets per burst (the gateway allows 32 per user)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--gateway-url", default=os.environ.get("PARLEY_GATEWAY_URL", ""),
                        help="Parley gateway, ws://host:port (default: API host, port 8765)")
    parser.add_argument("--text", choices=textgen.TEXT_KINDS,
                        default=os.environ.get("PARLEY_LOAD_TEXT", textgen.TEXT_KINDS[0]),
                        help="message bodies: realistic (bench/textgen.py) or fixed")
    parser.add_argument("--text-seed", type=int,
                        default=int(os.environ.get("PARLEY_LOAD_SEED", "0")),
                        help="seed of the realistic text")


#: Realistic bodies per Locust process, cycled through (built once, not per send).
CORPUS_MESSAGES = 2048
_corpus: list[str] = []


def message_text(env: Environment, n: int, fixed: str) -> str:
    """The ``n``th body this process sends: from the realistic corpus, or
    ``fixed`` with ``--text fixed``."""
    opts = env.parsed_options
    kind = getattr(opts, "text", None) or os.environ.get("PARLEY_LOAD_TEXT", "realistic")
    if kind == "fixed":
        return fixed
    if not _corpus:
        _corpus.extend(textgen.corpus(CORPUS_MESSAGES, int(getattr(opts, "text_seed", 0) or 0)))
    return _corpus[n % len(_corpus)]


class Shared:
    """Per-process fixture: an owner, a workspace and its ``load`` channel."""

    lock = Semaphore()
    tag = f"{os.getpid()}-{random.randrange(1 << 30)}"
    counter = itertools.count()
    owner_token = ""
    workspace_id = 0
    channel_id = 0

    @classmethod
    def ensure(cls, api: str) -> None:
        with cls.lock:
            if cls.workspace_id:
                return
            token, _ = register(api, f"owner-{cls.tag}")
            cls.owner_token = token
            ws = _call(api, "POST", "/v1/workspaces", token, {"name": "load"})
            cls.workspace_id = int(ws["id"])
            ch = _call(api, "POST", f"/v1/workspaces/{cls.workspace_id}/channels", token,
                       {"name": "load"})
            cls.channel_id = int(ch["id"])

    @classmethod
    def member(cls, api: str) -> tuple[str, int]:
        """A new account in the workspace and the ``load`` channel: (token, user id)."""
        cls.ensure(api)
        email_tag = f"m-{cls.tag}-{next(cls.counter)}"
        token, user_id = register(api, email_tag)
        _call(api, "POST", f"/v1/workspaces/{cls.workspace_id}/members", cls.owner_token,
              {"email": f"{email_tag}@example.com"})
        _call(api, "POST", f"/v1/workspaces/{cls.workspace_id}/channels/{cls.channel_id}/join",
              token)
        return token, user_id


def _call(api: str, method: str, path: str, token: str | None = None,
          body: dict[str, Any] | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    for _ in range(60):
        resp = requests.request(method, api + path, json=body, headers=headers, timeout=60)
        if resp.status_code != 429:
            break
        # Set-up honours the REST rate limits (register/login per address, 20
        # mutations/s per user): wait as told.
        gevent.sleep(float(resp.headers.get("retry-after", "1")))
    resp.raise_for_status()
    return resp.json() if resp.content else None


def register(api: str, tag: str) -> tuple[str, int]:
    email = f"{tag}@example.com"
    user = _call(api, "POST", "/v1/auth/register",
                 body={"email": email, "password": PASSWORD, "display_name": tag[:60]})
    tok = _call(api, "POST", "/v1/auth/login", body={"email": email, "password": PASSWORD})
    return tok["access_token"], int(user["id"])


def gateway_url(env: Environment, host: str) -> str:
    opt = getattr(env.parsed_options, "gateway_url", "") if env.parsed_options else ""
    if opt:
        return str(opt)
    return f"ws://{urlsplit(host).hostname or '127.0.0.1'}:8765"


def fire(env: Environment, kind: str, name: str, started: float,
         exc: BaseException | None = None, length: int = 0) -> None:
    """Report one request to Locust's statistics (time in ms)."""
    env.events.request.fire(request_type=kind, name=name,
                            response_time=(time.perf_counter() - started) * 1000.0,
                            response_length=length, exception=exc, context={})


class GatewayUser(User):
    """Base of the WebSocket users: an account and a socket, read by a greenlet."""

    abstract = True

    def on_start(self) -> None:
        api = self.host or "http://127.0.0.1:8080"
        self.token, self.user_id = Shared.member(api)
        self.gw = gateway_url(self.environment, api)
        self.client_ws: GatewayClient | None = None
        self.pending: dict[int, tuple[float, str]] = {}  # ref -> (sent, kind)
        self.delivering: dict[str, float] = {}  # client_msg_id -> sent
        self.refs = itertools.count(1)
        self.reader: gevent.Greenlet | None = None
        self.open_socket()

    def open_socket(self) -> None:
        started = time.perf_counter()
        ws = GatewayClient(self.gw, self.token, Shared.workspace_id)
        try:
            ws.connect()
        except Exception as exc:
            fire(self.environment, "WS", "connect", started, exc)
            raise
        fire(self.environment, "WS", "connect", started)
        self.client_ws = ws
        self.reader = gevent.spawn(self._read_forever, ws)

    def _read_forever(self, ws: GatewayClient) -> None:
        env = self.environment
        while True:
            try:
                batch = ws.receive()
            except (OSError, ValueError):
                return
            for event in batch:
                kind = event.get("t")
                ref = event.get("ref")
                if kind in ("ack", "heartbeat_ack", "error") and isinstance(ref, int):
                    sent = self.pending.pop(ref, None)
                    if sent is not None:
                        name = "send-to-ack" if sent[1] == "send" else "heartbeat"
                        exc = None
                        if kind == "error":
                            exc = RuntimeError((event.get("d") or {}).get("code", "error"))
                        fire(env, "WS", name, sent[0], exc)
                elif kind == "message.created":
                    cmid = (event.get("d") or {}).get("client_msg_id")
                    sent_at = self.delivering.pop(cmid, None) if cmid else None
                    if sent_at is not None:
                        fire(env, "WS", "send-to-deliver", sent_at)

    def expire(self) -> None:
        now = time.perf_counter()
        for ref, (sent, kind) in list(self.pending.items()):
            if now - sent > PENDING_TIMEOUT_S:
                del self.pending[ref]
                name = "send-to-ack" if kind == "send" else "heartbeat"
                fire(self.environment, "WS", name, sent, TimeoutError("no reply"))
        for cmid, sent in list(self.delivering.items()):
            if now - sent > PENDING_TIMEOUT_S:
                del self.delivering[cmid]
                fire(self.environment, "WS", "send-to-deliver", sent, TimeoutError("no delivery"))

    def on_stop(self) -> None:
        if self.client_ws is not None:
            self.client_ws.close()
        if self.reader is not None:
            self.reader.kill(block=False)


class ChatUser(GatewayUser):
    """Sends a message every 1-3 s and times its ack and its delivery back to it."""

    wait_time = between(1, 3)

    @task
    def send_message(self) -> None:
        if self.client_ws is None:
            return
        self.expire()
        ref = next(self.refs)
        cmid = f"{self.user_id}-{ref}"
        now = time.perf_counter()
        self.pending[ref] = (now, "send")
        self.delivering[cmid] = now
        self.client_ws.send({"op": "send", "ref": ref, "d": {
            "channel_id": Shared.channel_id,
            "text": message_text(self.environment, self.user_id + ref, f"load test message {ref}"),
            "client_msg_id": cmid}})


class PresenceUser(GatewayUser):
    """A heartbeat flood: 20 heartbeats per second per socket (the limit is 50)."""

    wait_time = constant_pacing(0.05)

    @task
    def heartbeat(self) -> None:
        if self.client_ws is None:
            return
        self.expire()
        ref = next(self.refs)
        self.pending[ref] = (time.perf_counter(), "heartbeat")
        self.client_ws.send({"op": "heartbeat", "ref": ref, "d": {}})


class StormUser(User):
    """Connection storm: ``STORM_BURST`` connects at once, hold, close, repeat."""

    wait_time = between(0.5, 1.0)
    jitter_s = 0.0  # JitteredStormUser spreads reconnects over this many seconds

    def on_start(self) -> None:
        api = self.host or "http://127.0.0.1:8080"
        self.token, _ = Shared.member(api)
        self.gw = gateway_url(self.environment, api)

    def _one(self) -> GatewayClient | None:
        if self.jitter_s:
            gevent.sleep(random.uniform(0, self.jitter_s))
        started = time.perf_counter()
        ws = GatewayClient(self.gw, self.token, Shared.workspace_id)
        try:
            ws.connect()
        except Exception as exc:
            fire(self.environment, "WS", "storm-connect", started, exc)
            return None
        fire(self.environment, "WS", "storm-connect", started)
        return ws

    @task
    def burst(self) -> None:
        jobs = [gevent.spawn(self._one) for _ in range(STORM_BURST)]
        gevent.joinall(jobs)
        gevent.sleep(0.2)
        for job in jobs:
            if job.value is not None:
                job.value.close()


class JitteredStormUser(StormUser):
    """The storm with reconnects spread over a jittered second, as clients should."""

    jitter_s = 1.0


class RestUser(HttpUser):
    """The REST mix: reads dominate, some posting; search when the API has it."""

    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        api = self.host or "http://127.0.0.1:8080"
        self.token, _ = Shared.member(api)
        self.auth = {"authorization": f"Bearer {self.token}"}
        self.ws_path = f"/v1/workspaces/{Shared.workspace_id}"
        self.ch_path = f"{self.ws_path}/channels/{Shared.channel_id}"
        paths = requests.get(api + "/openapi.json", timeout=30).json().get("paths", {})
        self.search_path = next((p for p in paths if "search" in p), None)

    @task(5)
    def history(self) -> None:
        self.client.get(f"{self.ch_path}/messages?limit=50", headers=self.auth,
                        name="GET history")

    @task(3)
    def my_channels(self) -> None:
        self.client.get(f"{self.ws_path}/channels", headers=self.auth, name="GET channels")

    @task(1)
    def public_channels(self) -> None:
        self.client.get(f"{self.ws_path}/channels/public", headers=self.auth,
                        name="GET public channels")

    @task(2)
    def post(self) -> None:
        self.client.post(f"{self.ch_path}/messages", headers=self.auth,
                         json={"text": message_text(self.environment, next(Shared.counter),
                                                    "rest load message")},
                         name="POST message")

    @task(1)
    def search(self) -> None:
        if self.search_path is None:
            return  # search is not in the API yet
        path = self.search_path.replace("{workspace_id}", str(Shared.workspace_id))
        self.client.get(f"{path}?q=load", headers=self.auth, name="GET search")
