"""Search visibility lag: from a message's ack to the moment search finds it.

``python -m bench.search_lag [--rates 1000,5000,10000] [--duration 5]``

For each rate, in a fresh, fully migrated database (``bench.pg_cost``'s
fixture: one workspace, ``--channels`` channels with a sender each): one
process runs the real group-commit writer (``storage.writer``) and the real
indexer loop (``parley.actions.search.index_loop`` over
``storage.pg_search.PgSearchIndexer``, its default batch and idle interval),
and sends ``--rate`` realistic messages per second for ``--duration``
seconds, paced every millisecond.  The ack time of a message is when the
writer's completion callback runs (after COMMIT).  An observer asks
``message_search`` every ``--poll-ms`` which acked messages are there yet;
a message's lag is the first answer that holds it minus its ack, so the
figures carry up to one poll interval of observer delay.  So that the
observer does not load PostgreSQL more than the indexer does, it follows a
sample (``--samples`` messages per second, spread evenly) and probes at
most the ``PROBE_MAX`` oldest of them per poll: the indexer takes the queue
oldest id first, so younger ones are rarely visible earlier, and when they
are, their lag is over-stated, never under-stated.  Prints p50/p99/max per rate and whether the
writer kept up (acks/s against the offered rate), and writes
bench/results/search_lag-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench import textgen
from bench.pg_cost import DEFAULT_ADMIN_URL, RESULTS_DIR, Fixture, make_fixture, next_id
from parley.actions.search import INDEX_BATCH, INDEX_BUSY_S, INDEX_IDLE_S, index_loop
from parley.model import Message, NewMessage
from storage.pg_search import PgSearchIndexer
from storage.writer import GroupCommitWriter

#: Pending sampled messages one observer poll probes at most (oldest first).
PROBE_MAX = 256


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _observe(fx: Fixture, acked: dict[int, float], lags: list[float],
                   poll_s: float, stop: asyncio.Event) -> None:
    pool = fx.db.pools[fx.db.shard_names[0]]
    while True:
        pending = list(itertools.islice(acked, PROBE_MAX))  # dicts keep insertion order
        if pending:
            rows = await pool.fetch(
                "SELECT message_id FROM message_search WHERE message_id = ANY($1::bigint[])",
                pending)
            now = time.perf_counter()
            lags.extend(now - acked.pop(r["message_id"]) for r in rows)
        if stop.is_set() and not acked:
            return
        await asyncio.sleep(poll_s)


async def one_rate(fx: Fixture, rate: float, duration: float, poll_s: float,
                   corpus: list[str], samples_per_s: float = 500.0,
                   busy_s: float = INDEX_BUSY_S, partitions: int = 1) -> dict[str, Any]:
    db = fx.db
    shard = db.shard_names[0]
    writer = GroupCommitWriter(db, window_ms=1.0, max_batch=512, lanes=4)
    # One loop per part, as the composition root runs them (server/composition.py).
    parts = PgSearchIndexer(db, partitions=partitions)
    loops = [asyncio.create_task(index_loop(parts, busy_s=busy_s, partition=p))
             for p in range(partitions)]
    indexer = asyncio.gather(*loops)
    acked: dict[int, float] = {}
    lags: list[float] = []
    errors = 0
    stop = asyncio.Event()
    observer = asyncio.create_task(_observe(fx, acked, lags, poll_s, stop))

    every = max(1, round(rate / samples_per_s))
    sampled: set[int] = set()
    acks = 0

    def done(result: Message | BaseException) -> None:
        nonlocal errors, acks
        if isinstance(result, BaseException):
            errors += 1
            return
        acks += 1
        if result.id in sampled:
            acked[result.id] = time.perf_counter()

    sent = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration:
        due = int(elapsed * rate)
        now = dt.datetime.now(dt.UTC)
        while sent < due:
            ch, user = fx.senders[sent % len(fx.senders)]
            mid = next_id()
            if sent % every == 0:
                sampled.add(mid)
            writer.submit(shard, NewMessage(
                id=mid, channel_id=ch, workspace_id=fx.workspace_id, user_id=user,
                text=corpus[sent % len(corpus)], client_msg_id=f"l{sent}",
                thread_root_id=None, created_at=now), done)
            sent += 1
        await asyncio.sleep(0.001)
    await writer.close()
    acks_s = acks / (time.perf_counter() - t0)
    stop.set()
    try:
        await asyncio.wait_for(observer, timeout=60)
        # Every sampled message found: the queue is (nearly) drained.
        indexed_s = sent / (time.perf_counter() - t0)
    finally:
        indexer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await indexer
    ms = [x * 1e3 for x in lags]
    # indexed_per_s below the offered rate: the indexer fell behind, and the
    # lag grows with the length of the run (not a steady state).
    return {"rate": rate, "sent": sent, "errors": errors, "acks_per_s": round(acks_s),
            "indexed_per_s": round(indexed_s), "kept_up": indexed_s >= 0.95 * rate,
            "lag_ms_p50": round(statistics.median(ms), 1), "lag_ms_p99": round(_pct(ms, 0.99), 1),
            "lag_ms_max": round(max(ms), 1), "measured": len(ms)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    corpus = textgen.corpus(4096, args.seed)
    out: dict[str, Any] = {"parameters": {
        "rates": args.rates, "duration_s": args.duration, "poll_ms": args.poll_ms,
        "channels": args.channels, "seed": args.seed, "samples_per_s": args.samples,
        "index_batch": INDEX_BATCH, "index_idle_ms": INDEX_IDLE_S * 1e3,
        "index_busy_ms": args.busy_ms, "partitions": args.partitions}, "runs": []}
    for rate in (float(r) for r in args.rates.split(",")):
        fx = await make_fixture(args.admin_url, "after", args.channels)
        try:
            out["runs"].append(await one_rate(fx, rate, args.duration, args.poll_ms / 1e3,
                                              corpus, args.samples, args.busy_ms / 1e3,
                                              args.partitions))
        finally:
            await fx.drop(args.admin_url)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.search_lag", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    ap.add_argument("--rates", default="1000,5000,10000", help="messages/s, comma-separated")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="observer poll interval")
    ap.add_argument("--samples", type=float, default=500.0,
                    help="messages per second whose lag is followed")
    ap.add_argument("--busy-ms", type=float, default=INDEX_BUSY_S * 1e3,
                    help="the indexer's pause after a partial batch (index_loop busy_s)")
    ap.add_argument("--channels", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=1,
                    help="parts of the search queue, one index_loop each (search_index_partitions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    print("Search visibility lag (ack -> found in message_search), realistic text:")
    for r in result["runs"]:
        print(f"  {r['rate']:>8,.0f}/s offered, {r['acks_per_s']:>7,}/s acked, "
              f"{r['indexed_per_s']:>7,}/s indexed{'' if r['kept_up'] else ' (behind)'}: lag p50 "
              f"{r['lag_ms_p50']} ms, p99 {r['lag_ms_p99']} ms, max {r['lag_ms_max']} ms "
              f"({r['measured']} messages, {r['errors']} errors)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"search_lag-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
