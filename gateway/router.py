"""Local fan-out: which of this gateway's sessions get which hub event.

Theory of operation:

* The gateway subscribes to a channel topic once, when the first local
  member session arrives, and unsubscribes when the last one leaves
  (the hub reference-counts too, but one subscription per channel keeps the
  bookkeeping here).
* Subscribe first, then read the channel's position from PostgreSQL, then
  start delivering: an event committed after the read arrives through the
  hub; one committed before it is history, which clients page or resume.
* Channel events go through a ``ChannelStream`` so every local session
  receives the channel strictly in seq order, exactly once, whatever the hub
  does: early events wait, gaps older than ``GAP_TIMEOUT_S`` and everything
  after a hub reset are backfilled from PostgreSQL.
* One frame per codec is built per event (msgpack: the hub payload itself)
  and written to every local session: no per-recipient encoding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core_ext import FanoutTarget, build_frame, fanout_write
from core_ext.defs_py import OP_BINARY, OP_TEXT
from gateway.ordering import ChannelStream
from parley import events
from parley.ports.hub import Hub, HubHandler

log = logging.getLogger("parley.gateway.router")

GAP_TIMEOUT_S = 0.15  # how long an early event waits for its predecessor before a fetch
SWEEP_INTERVAL_S = 0.05  # how often gaps are checked
BACKFILL_RETRY_S = 0.5  # after a failed backfill (PostgreSQL down): no retry storm, no log flood
RESET_CONCURRENCY = 8  # channels backfilled at once after a hub reset
SLOW_CONSUMER_CODE = 4002  # gateway.protocol.CloseCode.SLOW_CONSUMER


class Connection(FanoutTarget, Protocol):
    def close(self, code: int = 1000, reason: str = "") -> None: ...


class Subscriber(Protocol):
    """A local session as the router sees it."""

    user_id: int
    session_id: int
    binary: bool  # wants binary (msgpack) frames, else text (JSON)

    @property
    def conn(self) -> Connection: ...

    @property
    def holding(self) -> bool:
        """True while the session replays history: live frames go to ``hold``."""

    def hold(self, channel_id: int, seq: int | None, binary_frame: bytes,
             text_frame: Callable[[], bytes]) -> None: ...

    def on_user_event(self, event: dict[str, Any]) -> None: ...


FetchAfter = Callable[[int, int, int], Awaitable[list[tuple[int, bytes]]]]
Position = Callable[[int, int], Awaitable[int]]


@dataclass(slots=True, eq=False)
class _Channel:
    workspace_id: int
    sessions: set[Subscriber] = field(default_factory=set)
    # (seq or None, the event's msgpack bytes): read from the publication's
    # header, never decoded on the way (see parley.events).
    stream: ChannelStream[tuple[int | None, bytes]] = field(default_factory=ChannelStream)
    backfilling: bool = False
    needs_backfill: bool = False  # a backfill is owed: rerun by the running one or the sweeper
    retry_at: float = 0.0  # monotonic time before which the sweeper does not retry
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Fan-out lists, rebuilt lazily after a membership change (None = stale):
    # live binary connections, live text connections, sessions holding.
    _targets: tuple[list[Connection], list[Connection], list[Subscriber]] | None = None

    def targets(self) -> tuple[list[Connection], list[Connection], list[Subscriber]]:
        t = self._targets
        if t is None:
            t = ([s.conn for s in self.sessions if s.binary and not s.holding],
                 [s.conn for s in self.sessions if not s.binary and not s.holding],
                 [s for s in self.sessions if s.holding])
            self._targets = t
        return t

    def invalidate(self) -> None:
        self._targets = None


class Router:
    """Implements HubHandler for the gateway."""

    def __init__(self, hub: Hub, fetch_after: FetchAfter, position: Position, *,
                 outbound_limit_bytes: int = 4 << 20,
                 extra: dict[str, HubHandler] | None = None) -> None:
        self._hub = hub
        # Topic kinds handled elsewhere (``p`` -> presence): payloads passed on undecoded.
        self._extra = dict(extra or {})
        self._limit = outbound_limit_bytes
        self._fetch_after = fetch_after
        self._position = position
        self._channels: dict[int, _Channel] = {}
        self._users: dict[int, set[Subscriber]] = {}
        self._gapped: set[int] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered_events = 0  # statistics
        self.backfills = 0

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        for task in [self._sweeper, *self._tasks]:
            if task is not None:
                task.cancel()
        self._sweeper = None

    # -- membership ---------------------------------------------------------

    async def add_user(self, sub: Subscriber) -> None:
        subs = self._users.get(sub.user_id)
        if subs is None:
            subs = self._users[sub.user_id] = set()
            subs.add(sub)
            await self._hub.subscribe(events.user_topic(sub.user_id))
        else:
            subs.add(sub)

    async def add_channel(self, sub: Subscriber, workspace_id: int, channel_id: int) -> None:
        ch = self._channels.get(channel_id)
        if ch is not None:
            ch.sessions.add(sub)
            ch.invalidate()
            await ch.ready.wait()
            return
        ch = self._channels[channel_id] = _Channel(workspace_id)
        ch.sessions.add(sub)
        try:
            await self._hub.subscribe(events.channel_topic(channel_id))
            position = await self._position(workspace_id, channel_id)
        except BaseException:
            if self._channels.get(channel_id) is ch:
                del self._channels[channel_id]
            ch.ready.set()
            raise
        self._deliver(channel_id, ch, ch.stream.start(position + 1, time.monotonic()))
        ch.ready.set()

    def detach(self, sub: Subscriber, channel_id: int) -> None:
        """Stop delivering the channel to ``sub`` now, synchronously: called
        while handling ``channel.left`` so that no later hub event of the
        channel reaches a user who was removed from it."""
        ch = self._channels.get(channel_id)
        if ch is not None and sub in ch.sessions:
            ch.sessions.discard(sub)
            ch.invalidate()

    async def remove_channel(self, sub: Subscriber, channel_id: int) -> None:
        """Detach ``sub`` and drop the hub subscription if it was the last."""
        self.detach(sub, channel_id)
        ch = self._channels.get(channel_id)
        if ch is None:
            return
        if not ch.sessions:
            del self._channels[channel_id]
            self._gapped.discard(channel_id)
            await self._hub.unsubscribe(events.channel_topic(channel_id))

    async def remove(self, sub: Subscriber, channel_ids: set[int]) -> None:
        for cid in list(channel_ids):
            await self.remove_channel(sub, cid)
        subs = self._users.get(sub.user_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            if not subs:
                del self._users[sub.user_id]
                await self._hub.unsubscribe(events.user_topic(sub.user_id))

    def holding_changed(self, sub: Subscriber, channel_ids: set[int]) -> None:
        """``sub`` started or stopped holding: refresh its channels' lists."""
        for cid in channel_ids:
            ch = self._channels.get(cid)
            if ch is not None:
                ch.invalidate()

    def channel_position(self, channel_id: int) -> int | None:
        """The last seq delivered locally for the channel, if subscribed."""
        ch = self._channels.get(channel_id)
        if ch is None or ch.stream.next_seq is None:
            return None
        return ch.stream.next_seq - 1

    # -- HubHandler -----------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        extra = self._extra.get(topic.partition(":")[0])
        if extra is not None:
            extra.on_message(topic, payload)
            return
        kind, _, ident = topic.partition(":")
        if kind == "c":
            ch = self._channels.get(int(ident))
            if ch is None:
                return
            try:
                seq, body = events.read_publication(payload)
            except ValueError:
                log.warning("not a publication on %s", topic)
                return
            self._on_channel_event(int(ident), ch, seq, body)
        elif kind == "u":
            try:
                event = events.decode(payload)
            except ValueError:
                log.warning("undecodable hub payload on %s", topic)
                return
            for sub in list(self._users.get(int(ident), ())):
                sub.on_user_event(event)

    # -- LocalDelivery (parley.ports.hub) --------------------------------------

    def deliver_now(self, topic: str, body: bytes, seq: int) -> None:
        """A sequenced event published by this process, before the hub has it:
        the same path as ``on_message`` without the publication's wrapping
        and copy.  The hub's copy arrives later with the same seq and the
        stream drops it (``offer``: below ``next_seq``)."""
        if not topic.startswith(events.CHANNEL_TOPIC_PREFIX):
            return
        cid = int(topic[len(events.CHANNEL_TOPIC_PREFIX):])
        ch = self._channels.get(cid)
        if ch is not None:
            self._on_channel_event(cid, ch, seq, body)

    def on_reset(self) -> None:
        """The hub may have lost events: backfill every channel."""
        for extra in self._extra.values():
            extra.on_reset()
        task = asyncio.create_task(self._backfill_all())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- delivery -------------------------------------------------------------

    def _on_channel_event(self, cid: int, ch: _Channel, seq: int | None, body: bytes) -> None:
        if seq is None:  # unsequenced (typing, member joined): deliver now
            self._deliver(cid, ch, [(None, body)])
            return
        ready = ch.stream.offer(seq, (seq, body), time.monotonic())
        if ready:
            self._deliver(cid, ch, ready)
        if ch.stream.gap_since is not None:
            self._gapped.add(cid)
        elif not ch.needs_backfill:  # a pending rerun keeps the channel on the sweeper's list
            self._gapped.discard(cid)

    @staticmethod
    def frames(payload: bytes, event: dict[str, Any] | None = None
               ) -> tuple[bytes, Callable[[], bytes]]:
        """The frames of one event, for live delivery and replays alike: the
        binary frame (the msgpack payload as is) and the JSON text frame,
        built on first use and only once (``event``: the payload decoded,
        when the caller has it)."""
        binary = build_frame(OP_BINARY, payload)
        cache: list[bytes] = []

        def text_frame() -> bytes:
            if not cache:
                decoded = event if event is not None else events.decode(payload)
                cache.append(build_frame(OP_TEXT, events.to_json(decoded).encode()))
            return cache[0]

        return binary, text_frame

    def _deliver(self, cid: int, ch: _Channel, items: list[tuple[int | None, bytes]]) -> None:
        bin_conns, text_conns, holders = ch.targets()
        for seq, body in items:
            binary, text_frame = self.frames(body)
            if bin_conns:
                self._write(bin_conns, binary)
            if text_conns:
                self._write(text_conns, text_frame())
            for sub in holders:
                sub.hold(cid, seq, binary, text_frame)
            self.delivered_events += len(ch.sessions)

    def _write(self, conns: list[Connection], frame: bytes) -> None:
        """One frame to many sockets; close the ones that cannot keep up."""
        for i in fanout_write(conns, frame, self._limit):
            conns[i].close(SLOW_CONSUMER_CODE, "slow consumer")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.monotonic()
            for cid in list(self._gapped):
                ch = self._channels.get(cid)
                if ch is None:
                    self._gapped.discard(cid)
                    continue
                if ch.backfilling:
                    continue  # a rerun owed to the channel is made by the running backfill
                since = ch.stream.gap_since
                if ((ch.needs_backfill and now >= ch.retry_at)
                        or (since is not None and now - since >= GAP_TIMEOUT_S)):
                    task = asyncio.create_task(self._backfill(cid, ch))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif since is None and not ch.needs_backfill:
                    self._gapped.discard(cid)

    async def _backfill(self, cid: int, ch: _Channel) -> None:
        """Fetch from PostgreSQL everything after what was delivered, until
        caught up with the stream's buffer (or the channel's end).

        Invariant: every request is followed by a fetch that *starts* after
        the request.  A request made while a backfill runs (a second hub reset
        during a gap fetch) may concern events committed after that run read
        PostgreSQL, so it sets ``needs_backfill`` and the running one goes
        round again; otherwise a lost tail (no later event to reveal the gap)
        would never be fetched.
        """
        if ch.stream.next_seq is None:
            # Still reading its position: that read may predate what the hub
            # lost, so backfill from the sweeper once the stream has started.
            ch.needs_backfill = True
            self._gapped.add(cid)
            return
        if ch.backfilling:
            ch.needs_backfill = True
            return
        ch.backfilling = True
        self.backfills += 1
        try:
            while True:
                ch.needs_backfill = False
                await self._fetch_until_caught_up(cid, ch)
                if not ch.needs_backfill or self._channels.get(cid) is not ch:
                    break
        except Exception:
            log.warning("backfill of channel %s failed; will retry", cid, exc_info=True)
            ch.needs_backfill = True  # the sweeper retries
            ch.retry_at = time.monotonic() + BACKFILL_RETRY_S
            self._gapped.add(cid)
        finally:
            ch.backfilling = False

    async def _fetch_until_caught_up(self, cid: int, ch: _Channel) -> None:
        while self._channels.get(cid) is ch and ch.stream.next_seq is not None:
            after = ch.stream.next_seq - 1
            page = await self._fetch_after(ch.workspace_id, cid, after)
            for seq, body in page:
                self._on_channel_event(cid, ch, seq, body)
            if len(page) == 0 or (ch.stream.missing_range() is None and len(page) < 500):
                return

    async def _backfill_all(self) -> None:
        sem = asyncio.Semaphore(RESET_CONCURRENCY)

        async def one(cid: int, ch: _Channel) -> None:
            async with sem:
                await self._backfill(cid, ch)

        await asyncio.gather(*(one(cid, ch) for cid, ch in list(self._channels.items())),
                             return_exceptions=True)
