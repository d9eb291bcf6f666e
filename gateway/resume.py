"""Hold and resume: what a connection sends between its upgrade and going live.

Sans-IO: no sockets, no database, no clocks.  ``gateway.replay`` feeds it
(events the router delivers, the client's ``resume`` command, the channel
heads it read) and sends what it returns.  docs/protocol.md ("Reconnecting
and resuming") is the contract; this file keeps it.

Rules for this file:

* Nothing reaches a socket before ``hello``.  From the upgrade until the
  connection is live, the router's channel events wait in a ``Hold``
  (per channel, in arrival order, which is seq order: the router delivers
  each channel in order, once).
* A connection goes live through ``Hold.release(floors, ...)`` only.  Per
  channel, ``floors[cid]`` is the last seq the client has been given or told
  about (hello's ``last_seq``, the end of a replay, the ``to_seq`` of a
  resync); held events at or below it are dropped, those above it are sent.
  A held channel with no floor is sent whole (it was joined meanwhile: its
  ``channel.joined`` tells the client where it starts).
* A resumed connection ends, for every channel of the session, in exactly one
  ``Decision``: REPLAY from the client's cursor, or RESYNC with a range the
  client must fetch; both followed by every live event after their floor.
  There is no third way to go live (in particular, not "live from wherever
  the gateway is"): a silent gap cannot be expressed.
* Only the first ``resume`` of a connection is handled (``Phase``): a second
  replay would send again what the first already sent.

Theory of operation: why a held event and a replayed one never leave a gap.
The session joins a channel's fan-out while opening, at the gateway's
position P0 for that channel; from then on the router hands it every seq
above P0, in order.  The replay later reads the channel's head H from
PostgreSQL, and H >= P0 because the router only delivers committed seqs.  So
replay (cursor, H] and held (P0, now] together cover (cursor, now] with no
hole, and dropping held seqs <= H removes exactly the overlap.  When the
gateway's live stream is still behind H at release, the session keeps a
*live floor* (``release``'s second result) and drops live seqs up to it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Container, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

from gateway.protocol import EV_RESYNC_REQUIRED
from gateway.protocol import codec as codecs

T = TypeVar("T")

MAX_HELD_EVENTS = 10_000  # channel events held for one connection before it is closed (4004)
MAX_CURSORS = 10_000  # channels one resume may name



class Phase(enum.Enum):
    """Where a connection is between its upgrade and going live."""

    # Values are the state names of docs/protocol.md's connection state table.
    OPENING = "opening"  # 101 sent; reading channels, subscribing; nothing sent, commands queued
    HOLDING = "holding-for-resume"  # ?resume=1: hello sent; channel events held for resume
    REPLAYING = "replaying"  # a resume (or the wait's end) is being answered; events held
    LIVE = "live"  # events are sent as they arrive


class Reason(enum.Enum):
    """Why a channel got ``channel.resync_required`` (its ``reason`` field)."""

    TOO_FAR_BEHIND = "too_far_behind"  # more than resume_max_events after the cursor
    NOT_NAMED = "not_named"  # a channel of the session the resume map left out
    CURSOR_AHEAD = "cursor_ahead"  # the cursor is beyond the channel's last seq
    NO_RESUME = "no_resume"  # ?resume=1, but no resume arrived within RESUME_WAIT_S
    HISTORY_SHORT = "history_short"  # history ended before the head read for it (not expected)


class Decision(NamedTuple):
    """What one channel of a resume gets.

    REPLAY (``reason`` None): seqs after ``from_seq - 1`` up to ``to_seq``
    are sent from history.  RESYNC: ``channel.resync_required`` with this
    range; nothing of it is sent.  Either way live events follow ``to_seq``.
    """

    from_seq: int
    to_seq: int
    reason: Reason | None


def decide(cursor: int | None, head: int, limit: int,
           unnamed: Reason = Reason.NOT_NAMED) -> Decision:
    """The outcome of one channel, from the client's ``cursor`` (None: the
    map did not name it) and the channel's ``head`` (its last seq)."""
    if cursor is None:
        return Decision(1, head, unnamed)
    if cursor > head:
        # The client holds seqs the server does not: its copy is of another
        # history (a restored database, a client bug).  Everything must be
        # refetched; skipping "already seen" seqs would drop real messages.
        return Decision(1, head, Reason.CURSOR_AHEAD)
    if head - cursor > limit:
        return Decision(cursor + 1, head, Reason.TOO_FAR_BEHIND)
    return Decision(cursor + 1, head, None)


def resync_event(channel_id: int, d: Decision) -> dict[str, Any]:
    assert d.reason is not None
    return {"t": EV_RESYNC_REQUIRED, "d": {"channel_id": channel_id, "from_seq": d.from_seq,
                                        "to_seq": d.to_seq, "reason": d.reason.value}}


def parse_cursors(d: Mapping[str, Any]) -> dict[int, int]:
    """``resume``'s ``channels`` map (channel id -> cursor), in the client's
    order.  Raises ``codecs.BadEnvelope`` (``invalid_field``) when malformed."""
    raw = d.get("channels", {})
    if not isinstance(raw, dict) or len(raw) > MAX_CURSORS:
        raise codecs.BadEnvelope("invalid_field",
                                 f"'channels' maps up to {MAX_CURSORS} channel ids to seqs")
    out: dict[int, int] = {}
    for k, v in raw.items():
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**63:
            raise codecs.BadEnvelope("invalid_field", "a cursor is a seq >= 0")
        out[codecs.as_id(k, "channels")] = v
    return out


class Plan(NamedTuple):
    """Which channels a resume replays and in what order."""

    channels: list[tuple[int, int | None]]  # (channel, cursor or None if not named)
    ignored: list[int]  # named, but not a channel of this session


def plan(cursors: Mapping[int, int], members: set[int]) -> Plan:
    """Named channels first, in the client's order, then the session's
    channels it did not name (by id).  ``members``: the session's channels
    when the resume is handled; channels joined later are announced by
    ``channel.joined`` instead."""
    named: list[tuple[int, int | None]] = [(c, v) for c, v in cursors.items() if c in members]
    unnamed: list[tuple[int, int | None]] = [(c, None)
                                             for c in sorted(members - cursors.keys())]
    return Plan(named + unnamed, [c for c in cursors if c not in members])


class Hold(Generic[T]):
    """Channel events waiting for a connection to go live.

    ``add`` keeps each channel's events in arrival order; ``release`` says
    which to send (see the file's rules).  Bounded: past ``limit`` events
    ``add`` returns False and the caller closes the connection.
    """

    __slots__ = ("_by_channel", "count", "limit", "overflowed")

    def __init__(self, limit: int | None = None) -> None:
        self._by_channel: dict[int, list[tuple[int | None, T]]] = {}
        self.count = 0
        self.limit = MAX_HELD_EVENTS if limit is None else limit
        self.overflowed = False

    def add(self, channel_id: int, seq: int | None, item: T) -> bool:
        """Hold one event (``seq`` None: unsequenced).  False once over the limit."""
        if self.overflowed:
            return False
        self.count += 1
        if self.count > self.limit:
            self.overflowed = True
            self._by_channel.clear()
            return False
        self._by_channel.setdefault(channel_id, []).append((seq, item))
        return True

    def release(self, floors: Mapping[int, int], members: Container[int],
                live_position: Callable[[int], int | None]) -> tuple[list[T], dict[int, int]]:
        """(items to send, in order per channel; live floors).

        A channel not in ``members`` any more (left while held) is dropped
        whole: its ``channel.left`` ends it for the client.  A live floor is
        kept for each channel whose live stream (``live_position``, the
        gateway's last delivered seq) is behind what the client was given.
        """
        out: list[T] = []
        for cid, items in self._by_channel.items():
            if cid not in members:
                continue
            floor = floors.get(cid)
            for seq, item in items:
                if floor is None or seq is None or seq > floor:
                    out.append(item)
        # Held seqs never exceed the live position (the router delivered
        # them), so the live stream is behind the client exactly when its
        # position is below the floor, or unknown (still being read).
        live = {cid: floor for cid, floor in floors.items()
                if cid in members and ((p := live_position(cid)) is None or p < floor)}
        self._by_channel = {}
        self.count = 0
        return out, live
