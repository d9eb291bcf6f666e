"""``python -m bench app_events``: the Events API under chat load (issue 15).

What it measures: events delivered per second to ``--apps`` apps on
loopback, and what apps cost people: the p99 of people's message delivery
(send -> the other members' sockets) with fast apps, with slow apps (an app
that sleeps 2 s on every request) and with no apps, on the same server in
one run.

Set-up (through the REST API, like every benchmark): ``parley serve`` with
its own data dir and a fresh PostgreSQL database (``--pg-admin-url``), the
SSRF guard opened for 127.0.0.0/8 only (``outbound_allowed_cidrs``), one
workspace, ``--people`` people, ``--channels`` *app channels* and as many
*plain channels*; person ``k`` is in app channel and plain channel
``k % channels``.  The apps are served by one receiver process
(``bench.app_receiver``, every app on one port, by path); each app is
created with its request URL there (Parley verifies it with
``url_verification`` before answering), subscribed to
``message.channels``, installed, and its bot joins every app channel.

Phases (``--order``, default ``no,fast,slow,no,fast,slow``), each
``--warmup`` + ``--duration`` seconds of the same traffic: people send
``--rate`` messages per second in all (realistic text from
``bench.textgen``, fixed seed) over the gateway, round robin over people,
each to their channel:

* ``no``: into the plain channels, which no bot is in.  Before the first
  phase that needs apps, none are installed at all; later ``no`` phases run
  with the apps installed and idle (the dispatcher still polls);
* ``fast``: into the app channels; every app answers 200 at once;
* ``slow``: into the app channels; ``--slow-apps`` apps (default 1) sleep
  ``--sleep`` seconds on every request; ``slowall``: every app does.

After a phase the senders stop, every app turns fast and the backlog is
drained (up to ``--drain`` seconds), so one phase's events do not load the
next phase.

Reported per phase: messages sent per second; people's delivery p50/p99
(sends in the measurement window, every other member's socket); events
delivered per second during the window (counted at the receiver) against
the events offered (messages x apps); event latency send -> app and
commit -> app (``created_at`` of the message, from its gateway event, in
ms) p50/p99; CPU of the server process and of PostgreSQL over the window
(share of one core, and server CPU seconds per 1,000 events); the
receiver's and this process's CPU share (near 1.0: the load generator,
not the server, was the limit).  A JSON result goes to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psutil

from bench import textgen
from bench.common import RESULTS_DIR, free_port, git_revision, latency_summary, machine_info
from bench.provision import Account, Provisioner, auth_headers, connect_path
from bench.servers import Databases, ParleyProcess, postgres_cpu_s, wait_listening
from bench.wsclient import WsClient, upgrade_request

SEED = 20_261_203
SUBPROTOCOL = "parley.msgpack.v1"
MODES = ("no", "fast", "slow", "slowall")
SERVER_SETTINGS = {
    # The receiving apps are on loopback, which the SSRF guard refuses by default.
    "PARLEY_OUTBOUND_ALLOWED_CIDRS": "127.0.0.0/8",
}
#: Seconds people's sockets keep reading after the senders stop (in-flight deliveries).
SETTLE_S = 1.0
#: Concurrent REST calls while the apps are set up.
SETUP_CONCURRENCY = 16
_CREATED = b"message.created"


# -- people ------------------------------------------------------------------------


@dataclass
class Traffic:
    """What the people's sockets saw; one per phase (reset by ``start``)."""

    t_from: int = 0  # the measurement window, time.monotonic_ns()
    t_to: int = 0
    #: client_msg_id -> (monotonic ns, wall s, in the window) of every send
    sent: dict[str, tuple[int, float, bool]] = field(default_factory=dict)
    created_ms: dict[str, int] = field(default_factory=dict)  # client_msg_id -> created_at
    delivery_us: list[float] = field(default_factory=list)  # window sends, others' sockets
    deliveries: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def start(self, t_from: int, t_to: int) -> None:
        self.t_from, self.t_to = t_from, t_to
        self.sent.clear()
        self.created_ms.clear()
        self.delivery_us.clear()
        self.deliveries = 0
        self.errors.clear()


class Person(WsClient):
    """One person's socket: times every ``message.created`` sent by someone else."""

    def __init__(self, request: tuple[bytes, str], user_id: int, traffic: Traffic) -> None:
        super().__init__(request)
        self.user_id = user_id
        self.traffic = traffic
        self.ready: asyncio.Future[None] = self.loop.create_future()

    def on_message(self, payload: bytes, now_ns: int) -> None:
        if not self.ready.done():
            self.ready.set_result(None)  # the hello: subscribed to the person's channels
            return
        if payload.find(_CREATED, 0, 40) < 0:
            if payload.find(b"error", 0, 40) >= 0:
                event = msgpack.unpackb(payload, raw=False, strict_map_key=False)
                self.traffic.errors[str((event.get("d") or {}).get("code", "?"))] += 1
            return
        d = msgpack.unpackb(payload, raw=False, strict_map_key=False).get("d") or {}
        cmid = d.get("client_msg_id")
        t = self.traffic
        if str(d.get("user_id")) == str(self.user_id):
            if cmid is not None and isinstance(d.get("ts"), int):
                t.created_ms[cmid] = d["ts"]
            return
        t.deliveries += 1
        sent = t.sent.get(cmid) if cmid is not None else None
        if sent is not None and sent[2]:
            t.delivery_us.append((now_ns - sent[0]) / 1000.0)

    def on_closed(self) -> None:
        self.traffic.errors["socket_closed"] += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the hello"))


@dataclass
class Member:
    """A person: their account, their two channels, their socket once connected."""

    account: Account
    app_channel: int
    plain_channel: int
    socket: Person | None = None


async def connect(people: list[Member], port: int, workspace: int, traffic: Traffic) -> None:
    loop = asyncio.get_running_loop()
    for p in people:
        req = upgrade_request("127.0.0.1", port, connect_path(workspace), SUBPROTOCOL,
                              auth_headers(p.account.token))
        _, sock = await loop.create_connection(
            functools.partial(Person, req, p.account.user_id, traffic), "127.0.0.1", port)
        await asyncio.wait_for(sock.ready, 30)
        p.socket = sock


async def send_at_rate(people: list[Member], mode: str, rate: float, t0: int, t_end: int,
                       traffic: Traffic, texts: list[str], tag: str) -> int:
    """Send ``rate`` messages per second in all from ``t0`` to ``t_end``
    (monotonic ns), round robin over people; returns how many were sent.
    A schedule of absolute times: a late tick sends at once, so the rate
    holds as long as the loop keeps up."""
    interval = int(1e9 / rate)
    n = 0
    next_t = t0
    while next_t < t_end:
        delay = (next_t - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        p = people[n % len(people)]
        channel = p.plain_channel if mode == "no" else p.app_channel
        cmid = f"{tag}-{n}"
        now = time.monotonic_ns()
        traffic.sent[cmid] = (now, time.time(), traffic.t_from <= now < traffic.t_to)
        assert p.socket is not None
        p.socket.send(msgpack.packb({"op": "send", "ref": n + 1, "d": {
            "channel_id": channel, "text": texts[n % len(texts)], "client_msg_id": cmid}}))
        n += 1
        next_t += interval
    return n


# -- set-up ------------------------------------------------------------------------


@dataclass
class World:
    owner: Account
    workspace: int
    people: list[Member]
    app_channels: list[int]
    plain_channels: list[int]
    apps_installed: int = 0


async def provision(api_url: str, n_people: int, n_channels: int) -> World:
    p = Provisioner(api_url)
    try:
        owner = await p.account(0)
        ws, _ = await p.workspace(owner, "Events bench")
        accounts = await p.accounts(n_people, start=1)
        await p.add_members(owner, ws, accounts)
        app_ch = await p.channels([(owner, ws, f"apps-{i}") for i in range(n_channels)])
        plain_ch = await p.channels([(owner, ws, f"plain-{i}") for i in range(n_channels)])
        people = [Member(a, app_ch[k % n_channels], plain_ch[k % n_channels])
                  for k, a in enumerate(accounts)]
        for i in range(n_channels):
            ids = [str(x.account.user_id) for x in people if x.app_channel == app_ch[i]]
            if ids:
                for cid in (app_ch[i], plain_ch[i]):
                    await p.call("POST", f"/v1/workspaces/{ws}/channels/{cid}/members",
                                 owner.token, {"user_ids": ids})
        return World(owner, ws, people, app_ch, plain_ch)
    finally:
        await p.close()


def app_manifest(i: int, receiver_port: int) -> dict[str, Any]:
    return {
        "display_information": {"name": f"Bench app {i}"},
        "features": {"bot_user": {"display_name": f"bench-app-{i}"}},
        "oauth_config": {"scopes": {"bot": ["channels:history", "channels:join",
                                            "chat:write"]}},
        "settings": {"event_subscriptions": {
            "request_url": f"http://127.0.0.1:{receiver_port}/apps/{i}/events",
            "bot_events": ["message.channels"]}},
    }


async def install_apps(api_url: str, world: World, n_apps: int, receiver_port: int) -> None:
    """Create, install and add to every app channel ``n_apps`` apps; each
    request URL must have passed url_verification."""
    from parley import slack_ids as ids

    p = Provisioner(api_url)
    sem = asyncio.Semaphore(SETUP_CONCURRENCY)
    owner, ws = world.owner, world.workspace

    async def one(i: int) -> None:
        async with sem:
            made = await p.call("POST", f"/v1/workspaces/{ws}/apps", owner.token,
                                {"manifest": app_manifest(i, receiver_port)})
            app = made["app"]
            done = await p.call("POST", f"/v1/workspaces/{ws}/apps/{app['id']}/install",
                                owner.token, {})
            bot = {"authorization": f"Bearer {done['bot_token']}"}
            for cid in world.app_channels:
                r = await p.http.post("/api/conversations.join",
                                      data={"channel": ids.channel("public", cid)}, headers=bot)
                if not r.json().get("ok"):
                    raise RuntimeError(f"conversations.join: {r.text[:300]}")

    try:
        await asyncio.gather(*(one(i) for i in range(n_apps)))
    finally:
        await p.close()
    world.apps_installed = n_apps


# -- the receiver process ----------------------------------------------------------


class ReceiverProcess:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "app-receiver.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.app_receiver", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        wait_listening(self.port, self.proc, 30.0, self.log)
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    async def set_slow(self, apps: list[int], sleep_s: float) -> None:
        (await self.http.post("/control/slow", json={"apps": apps, "sleep_s": sleep_s})
         ).raise_for_status()

    async def records(self) -> dict[str, Any]:
        r = await self.http.get("/control/records")
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    async def close(self) -> None:
        await self.http.aclose()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- one phase ---------------------------------------------------------------------


def _self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _dispatcher_cpu_s(server: ParleyProcess) -> float:
    """CPU seconds of the server's Events API dispatcher child (``app_events_dispatch``
    ``process``, server/app_events_proc.py); 0 when it dispatches inline."""
    total = 0.0
    for child in server.ps.children(recursive=True):
        try:
            if "app-events" in child.cmdline():
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue  # gone between the listing and the reading
    return total


def _ms(summary: dict[str, Any], key: str) -> float | None:
    v = summary.get(key)
    return None if v is None else float(v)


async def run_phase(index: int, mode: str, args: argparse.Namespace, world: World,
                    server: ParleyProcess, receiver: ReceiverProcess, traffic: Traffic,
                    texts: list[str]) -> dict[str, Any]:
    slow = (list(range(world.apps_installed)) if mode == "slowall"
            else list(range(min(args.slow_apps, world.apps_installed))) if mode == "slow"
            else [])
    await receiver.set_slow(slow, args.sleep)
    await receiver.records()  # drop anything left from the set-up or an undrained phase
    now = time.monotonic_ns()
    t0 = now + 200_000_000
    t_from = t0 + int(args.warmup * 1e9)
    t_to = t_from + int(args.duration * 1e9)
    traffic.start(t_from, t_to)
    sender = asyncio.create_task(send_at_rate(world.people, mode, args.rate, t0, t_to,
                                              traffic, texts, f"p{index}"))
    await asyncio.sleep((t_from - time.monotonic_ns()) / 1e9)
    wall_from = time.time()
    cpu0, pg0, rc0, me0 = server.cpu_s(), postgres_cpu_s(), receiver.cpu_s(), _self_cpu_s()
    dc0 = _dispatcher_cpu_s(server)
    await asyncio.sleep(max(0.0, (t_to - time.monotonic_ns()) / 1e9))
    wall_to = time.time()
    cpu1, pg1, rc1, me1 = server.cpu_s(), postgres_cpu_s(), receiver.cpu_s(), _self_cpu_s()
    dc1 = _dispatcher_cpu_s(server)
    await sender
    await asyncio.sleep(SETTLE_S)
    # Drain: every app fast again, wait until every event of the phase arrived.
    records: list[list[Any]] = list((await receiver.records())["records"])
    await receiver.set_slow([], args.sleep)
    expected = len(traffic.sent) * world.apps_installed if mode != "no" else 0
    drain_start = time.monotonic()
    while len(records) < expected and time.monotonic() - drain_start < args.drain:
        await asyncio.sleep(0.25)
        records += (await receiver.records())["records"]
    drain_s = time.monotonic() - drain_start

    window_sends = {c: s for c, s in traffic.sent.items() if s[2]}
    in_window = [r for r in records if wall_from <= r[2] < wall_to]
    send_to_app = [(r[2] - window_sends[r[1]][1]) * 1e6 for r in records if r[1] in window_sends]
    commit_to_app = [(r[2] * 1000 - traffic.created_ms[r[1]]) * 1000 for r in records
                     if r[1] in window_sends and r[1] in traffic.created_ms]
    window_s = wall_to - wall_from
    events_window = len(in_window)
    server_cpu = cpu1 - cpu0
    people = latency_summary(traffic.delivery_us)
    apps_here = world.apps_installed if mode != "no" else 0
    return {
        "index": index, "mode": mode, "apps_installed": world.apps_installed,
        "apps_receiving": apps_here, "slow_apps": len(slow),
        "messages_sent_per_s": round(len(window_sends) / window_s, 1),
        "people_deliveries": len(traffic.delivery_us), "people_delivery": people,
        # Every sample (ms), so a mode's percentiles pool its phases (a phase
        # at 5 messages/s has only a few hundred: its p99 is a few samples).
        "people_delivery_samples_ms": [round(v / 1000, 2) for v in traffic.delivery_us],
        "gateway_errors": dict(traffic.errors),
        "events_offered_per_s": round(len(window_sends) * apps_here / window_s, 1),
        "events_per_s": round(events_window / window_s, 1),
        "events_expected": expected, "events_received": len(records),
        "drained": len(records) >= expected, "drain_s": round(drain_s, 2),
        "event_latency_send_to_app": latency_summary(send_to_app),
        "event_latency_commit_to_app": latency_summary(commit_to_app),
        "server_cpu_share": round(server_cpu / window_s, 3),
        "server_cpu_s_per_1000_events": (round(server_cpu * 1000 / events_window, 3)
                                         if events_window else None),
        # The dispatcher child (0 with app_events_dispatch=inline, where
        # its work is in server_cpu); "all" is the two together.
        "dispatcher_cpu_share": round((dc1 - dc0) / window_s, 3),
        "all_cpu_s_per_1000_events": (round((server_cpu + dc1 - dc0) * 1000 / events_window, 3)
                                      if events_window else None),
        "postgres_cpu_share": round((pg1 - pg0) / window_s, 3),
        "receiver_cpu_share": round((rc1 - rc0) / window_s, 3),
        "generator_cpu_share": round((me1 - me0) / window_s, 3),
    }


def summarize(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode: people's delivery percentiles over the samples of all its
    phases, the mean of its phases' other figures, and what the mode adds
    against the ``no`` phases (people's p99; server CPU per 1,000 events)."""
    out: dict[str, Any] = {}
    for mode in MODES:
        ps = [p for p in phases if p["mode"] == mode]
        if not ps:
            continue

        def mean(get: Any, ps: list[dict[str, Any]] = ps) -> float | None:
            vals = [v for v in (get(p) for p in ps) if v is not None]
            return round(statistics.fmean(vals), 3) if vals else None

        pooled = latency_summary(v * 1000 for p in ps for v in p["people_delivery_samples_ms"])
        out[mode] = {
            "phases": len(ps),
            "people_samples": pooled["samples"],
            "people_p50_ms": pooled["p50_ms"],
            "people_p99_ms": pooled["p99_ms"],
            "events_per_s": mean(lambda p: p["events_per_s"]),
            "event_send_to_app_p99_ms": mean(
                lambda p: _ms(p["event_latency_send_to_app"], "p99_ms")),
            "server_cpu_share": mean(lambda p: p["server_cpu_share"]),
            "server_cpu_s_per_1000_events": mean(lambda p: p["server_cpu_s_per_1000_events"]),
            "dispatcher_cpu_share": mean(lambda p: p.get("dispatcher_cpu_share")),
            "all_cpu_s_per_1000_events": mean(lambda p: p.get("all_cpu_s_per_1000_events")),
        }
    base = out.get("no", {}).get("people_p99_ms")
    base_cpu = out.get("no", {}).get("server_cpu_share")
    for mode, s in out.items():
        if base is not None and s["people_p99_ms"] is not None:
            s["people_p99_added_ms"] = round(s["people_p99_ms"] - base, 3)
        if mode != "no" and base_cpu is not None and s["events_per_s"]:
            # The CPU apps add, per 1,000 events: the share above the no-apps phases.
            s["added_server_cpu_s_per_1000_events"] = round(
                (s["server_cpu_share"] - base_cpu) * 1000 / s["events_per_s"], 3)
    return out


def print_table(phases: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    def f(v: Any, w: int, d: int = 1) -> str:
        return f"{'-':>{w}}" if v is None else f"{v:>{w}.{d}f}"

    print(f"{'#':>2} {'mode':8} {'msg/s':>6} {'ppl p50':>8} {'ppl p99':>8} {'ev/s':>7} "
          f"{'offered':>8} {'ev p50':>8} {'ev p99':>8} {'srv CPU':>8} {'s/1k ev':>8} "
          f"{'disp CPU':>8} {'all s/1k':>8} {'pg CPU':>7} {'drain':>6}")
    for p in phases:
        pd, ev = p["people_delivery"], p["event_latency_send_to_app"]
        print(f"{p['index']:>2} {p['mode']:8} {p['messages_sent_per_s']:6.1f} "
              f"{f(pd['p50_ms'], 8, 2)} {f(pd['p99_ms'], 8, 2)} {p['events_per_s']:7.1f} "
              f"{p['events_offered_per_s']:8.1f} {f(ev['p50_ms'], 8)} {f(ev['p99_ms'], 8)} "
              f"{p['server_cpu_share']:8.2f} {f(p['server_cpu_s_per_1000_events'], 8, 3)} "
              f"{p['dispatcher_cpu_share']:8.2f} {f(p['all_cpu_s_per_1000_events'], 8, 3)} "
              f"{p['postgres_cpu_share']:7.2f} {('ok' if p['drained'] else 'NO'):>6}")
    print()
    print(f"{'mode':8} {'ppl p99':>8} {'+p99 vs no':>11} {'ev/s':>8} {'ev p99':>8} "
          f"{'CPU s/1k ev':>12} {'added s/1k':>11} {'disp CPU':>9} {'all s/1k':>9}")
    for mode, s in summary.items():
        print(f"{mode:8} {f(s['people_p99_ms'], 8, 2)} {f(s.get('people_p99_added_ms'), 11, 2)} "
              f"{f(s['events_per_s'], 8)} {f(s['event_send_to_app_p99_ms'], 8)} "
              f"{f(s['server_cpu_s_per_1000_events'], 12, 3)} "
              f"{f(s.get('added_server_cpu_s_per_1000_events'), 11, 3)} "
              f"{f(s['dispatcher_cpu_share'], 9, 2)} {f(s['all_cpu_s_per_1000_events'], 9, 3)}")


# -- main --------------------------------------------------------------------------


async def run(args: argparse.Namespace, server: ParleyProcess,
              receiver: ReceiverProcess) -> tuple[list[dict[str, Any]], dict[str, float]]:
    timings: dict[str, float] = {}
    t = time.monotonic()
    world = await provision(server.api_url, args.people, args.channels)
    timings["provision_s"] = round(time.monotonic() - t, 2)
    traffic = Traffic()
    assert server.gateway_port is not None
    await connect(world.people, server.gateway_port, world.workspace, traffic)
    texts = textgen.corpus(4096, SEED)
    phases = []
    try:
        for i, mode in enumerate(args.order.split(",")):
            if mode != "no" and world.apps_installed == 0:
                t = time.monotonic()
                await install_apps(server.api_url, world, args.apps, receiver.port)
                got = await receiver.records()
                if got["verifications"] < args.apps:
                    raise RuntimeError(f"{got['verifications']} url_verification requests for "
                                       f"{args.apps} apps")
                timings["install_apps_s"] = round(time.monotonic() - t, 2)
            phases.append(await run_phase(i, mode, args, world, server, receiver, traffic,
                                          texts))
            if not args.quiet:
                print(f"phase {i} {mode}: done", file=sys.stderr)
    finally:
        for p in world.people:
            if p.socket is not None:
                p.socket.close()
    return phases, timings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench app_events", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=100, help="apps installed")
    ap.add_argument("--people", type=int, default=24, help="people (one socket each)")
    ap.add_argument("--channels", type=int, default=4,
                    help="app channels (and as many plain channels)")
    # 5 messages/s to 100 apps offers 500 events/s, under what the dispatcher
    # delivered on the two-core machine (about 700/s saturated), so a phase's
    # backlog drains in seconds and the run stays under two minutes.
    ap.add_argument("--rate", type=float, default=5.0, help="messages per second in all")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds sent before the window")
    ap.add_argument("--drain", type=float, default=20.0,
                    help="most seconds to wait for a phase's events to reach the apps")
    ap.add_argument("--order", default="no,fast,slow,no,fast,slow",
                    help=f"phases, comma-separated, from {', '.join(MODES)}")
    ap.add_argument("--slow-apps", type=int, default=1, help="apps that are slow in 'slow'")
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds a slow app sleeps")
    ap.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a Parley setting for the server (repeatable)")
    ap.add_argument("--database-url", default="", help="an external PostgreSQL")
    ap.add_argument("--pg-admin-url", default="",
                    help="an admin DSN: a fresh database is created and dropped")
    ap.add_argument("--out", type=Path, default=None,
                    help="result directory or .json file (default bench/results/)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    bad = [m for m in args.order.split(",") if m not in MODES]
    if bad or args.apps < 1 or args.people < 2 or args.channels < 1 or args.rate <= 0:
        ap.error(f"bad phases {bad}" if bad else "need --apps >= 1, --people >= 2, "
                 "--channels >= 1, --rate > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = dict(SERVER_SETTINGS)
    for s in args.server_setting:
        name, _, value = s.partition("=")
        extra[f"PARLEY_{name.strip().upper()}"] = value
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-app-events-"))
    dbs = Databases(database_url=args.database_url, admin_url=args.pg_admin_url,
                    workdir=workdir)
    server: ParleyProcess | None = None
    receiver: ReceiverProcess | None = None
    try:
        server = ParleyProcess("serve", workdir=workdir, database_url=dbs.url,
                               jwt_secret=secrets.token_urlsafe(32), extra_env=extra)
        receiver = ReceiverProcess(workdir)

        async def go() -> tuple[list[dict[str, Any]], dict[str, float]]:
            assert server is not None and receiver is not None
            try:
                return await run(args, server, receiver)
            finally:
                await receiver.close()

        phases, timings = asyncio.run(go())
    finally:
        if receiver is not None and receiver.proc.poll() is None:
            receiver.proc.kill()
        if server is not None:
            server.stop()
        dbs.close()
    summary = summarize(phases)
    print_table(phases, summary)
    timings["total_s"] = round(time.monotonic() - started, 1)
    result = {"scenario": "app-events", "revision": git_revision(), "machine": machine_info(),
              "parameters": {k: (str(v) if isinstance(v, Path) else v)
                             for k, v in vars(args).items() if k not in ("out", "quiet")}
              | {"database": dbs.kind, "seed": SEED, "settle_s": SETTLE_S},
              "phases": phases, "summary": summary, "timings": timings,
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = args.out or RESULTS_DIR
    if out.suffix != ".json":
        out = out / f"app-events-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"result: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
