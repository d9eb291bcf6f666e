"""The router's CPU per delivery, without sockets or a hub.

``python -m bench.router_cpu [--events N] [--subscribers 1,10,100] [--json-share F]``

One gateway's ``Router`` with S local subscribers of one channel (a share
of them on the JSON codec) is handed N ``message.created`` publications in
seq order, the way a hub hands them over (``on_message(topic, payload)``);
the connections are in-memory sinks, so what is timed is the router: read
the event's seq, order it, build the frames, queue them (``fanout_write``).
Reported: process CPU microseconds per event and per delivery (event x
subscriber), best of ``--repeat`` runs.  The payloads are realistic
message.created events (``bench/corpus.py``-like text of ~200 bytes, real
field set), built with the same helpers the server publishes with, so the
script measures whichever payload format the checkout it runs in uses
(run it with PYTHONPATH set to another worktree to measure that one).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any

from gateway.router import Router
from parley import events
from parley.model import Message

WORKSPACE, CHANNEL = 1, 42
_WORDS = ("the", "launch", "is", "on", "track", "for", "friday", "can", "you", "review",
          "deploy", "notes", "before", "standup", "thanks", "I", "think", "we", "should",
          "ship", "metrics", "dashboard", "looks", "good", "👍", "merci", "données", "見て")


class _Hub:
    async def subscribe(self, topic: str) -> None:
        pass

    async def unsubscribe(self, topic: str) -> None:
        pass


class _Conn:
    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes, /) -> None:
        self.bytes += len(data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        raise AssertionError(f"closed {code}")


class _Sub:
    user_id = 7
    session_id = 1
    holding = False

    def __init__(self, binary: bool) -> None:
        self.binary = binary
        self._conn = _Conn()

    @property
    def conn(self) -> _Conn:
        return self._conn

    def hold(self, channel_id: int, seq: int | None, binary_frame: bytes,
             text_frame: Callable[[], bytes]) -> None:
        raise AssertionError("not holding")

    def on_user_event(self, event: dict[str, Any]) -> None:
        pass


def _text(rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < 180:
        words.append(rng.choice(_WORDS))
    return " ".join(words)


def publications(n: int, seed: int = 7) -> list[bytes]:
    """``n`` message.created hub payloads, seqs 1..n, as the server publishes them."""
    rng = random.Random(seed)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    out = []
    for seq in range(1, n + 1):
        msg = Message(id=10**15 + seq, channel_id=CHANNEL, seq=seq, workspace_id=WORKSPACE,
                      user_id=1000 + seq % 50, text=_text(rng), client_msg_id=f"c-{seq}",
                      thread_root_id=None, created_at=now, edited_at=None, deleted=False)
        body = events.encode(events.MESSAGE_CREATED, events.message_data(msg))
        wrap = getattr(events, "publication", None)  # the hub's header, where it exists
        out.append(body if wrap is None else wrap(body, seq))
    return out


async def measure(subscribers: int, json_share: float, n: int) -> float:
    """Process CPU seconds to route ``n`` events to ``subscribers``."""

    async def fetch(wid: int, cid: int, after: int) -> list[tuple[int, bytes]]:
        return []

    async def position(wid: int, cid: int) -> int:
        return 0

    router = Router(_Hub(), fetch, position)  # type: ignore[arg-type]
    n_json = round(subscribers * json_share)
    for i in range(subscribers):
        await router.add_channel(_Sub(binary=i >= n_json), WORKSPACE, CHANNEL)  # type: ignore[arg-type]
    payloads = publications(n)
    topic = events.channel_topic(CHANNEL)
    on_message = router.on_message
    started = time.process_time()
    for payload in payloads:
        on_message(topic, payload)
    spent = time.process_time() - started
    await router.close()
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--subscribers", default="1,10,100")
    p.add_argument("--json-share", type=float, default=0.0,
                   help="share of subscribers on the JSON codec (0..1)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"{'subscribers':>11} {'us/event':>9} {'us/delivery':>11}")
    for s in (int(x) for x in args.subscribers.split(",")):
        best = min(asyncio.run(measure(s, args.json_share, args.events))
                   for _ in range(args.repeat))
        print(f"{s:>11} {best / args.events * 1e6:>9.2f} "
              f"{best / (args.events * s) * 1e6:>11.3f}")


if __name__ == "__main__":
    main()
