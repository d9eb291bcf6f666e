"""Which lane a channel's appends take (``storage.writer.lane_of``): ids made
the way Parley makes them spread evenly over the lanes, and a channel always
takes the same one."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from core_ext import SnowflakeGenerator
from parley.actions import accounts, channels, workspaces
from parley.auth import Identity
from server.composition import Runtime
from storage.writer import lane_of


def _spread(ids: list[int], lanes: int) -> list[int]:
    counts = Counter(lane_of(i, lanes) for i in ids)
    return [counts.get(lane, 0) for lane in range(lanes)]


async def test_channels_created_in_a_row_through_the_action_spread_over_all_lanes(
        runtime: Runtime) -> None:
    """120 channels created one after another by the real action (so one id
    per millisecond or so, sequence bits 0: what ``channel_id % lanes`` put in
    lane 0) land in every one of 4 lanes, each within half of its share."""
    svc = runtime.services
    user = await accounts.register(svc, "lanes@example.com", "correct horse battery", "L")
    ident = Identity(user_id=user.id, session_id=1, expires_at=time.time() + 3600)
    ws = await workspaces.create_workspace(svc, ident, "Lanes")
    ids = [(await channels.create_channel(svc, ident, ws.id, f"c{i}", "public")).id
           for i in range(120)]
    assert sum(1 for i in ids if i % 4 == 0) > 100, "the ids are what defeated the modulo"
    counts = _spread(ids, 4)
    assert all(15 <= c <= 45 for c in counts), counts


@pytest.mark.parametrize("lanes", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("worker_id", [0, 1, 713])
def test_allocator_ids_a_few_ms_apart_spread_evenly(lanes: int, worker_id: int) -> None:
    """Ids from the snowflake allocator with a clock that moves 1-9 ms per
    call (fixed seed), as a stream of REST creations makes them: every lane
    gets its share within 25 %."""
    rng = random.Random(13)
    now = [1_800_000_000_000]

    def clock() -> int:
        now[0] += rng.randint(1, 9)
        return now[0]

    gen = SnowflakeGenerator(worker_id, clock_ms=clock)
    ids = [int(gen.next_id()) for _ in range(4000)]
    assert {i & 0xFFF for i in ids} == {0}  # sequence 0 throughout
    share = len(ids) / lanes
    counts = _spread(ids, lanes)
    assert all(0.75 * share <= c <= 1.25 * share for c in counts), counts


def test_a_channel_always_takes_the_same_lane() -> None:
    rng = random.Random(5)
    ids = [rng.randrange(1, 2**63) for _ in range(1000)]
    first = [lane_of(i, 4) for i in ids]
    assert [lane_of(i, 4) for i in ids] == first
    assert all(0 <= lane < 4 for lane in first)
    assert {lane_of(i, 1) for i in ids} == {0}
    # A pure function of the id, fixed by the code (no per-process hash seed):
    assert [lane_of(i, 4) for i in (1, 2**22, 2**62, 2**63 - 1)] == [2, 1, 1, 3]
