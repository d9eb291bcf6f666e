"""Full-text search over the messages the caller may read.

Readable means: messages of the channels the caller is a member of, and of
public channels when their role may browse them (the same rule as
``parley.actions.channels.visible_channel``), never deleted ones.  The
filter runs inside the one SQL query, so a page never holds, and a count
never reflects, a message the caller cannot see.

Indexing runs off the commit path (``index_loop``, started by the
composition root in every serving process): a message is searchable once
an indexer has applied it, normally within tens of milliseconds of its ack
(docs/architecture.md, "Search"; measured in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from parley.actions import validate
from parley.actions.channels import readable_channel
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import InvalidInput
from parley.model import Message
from parley.permissions import Perm, allowed, require
from parley.ports.search import SearchIndexer
from parley.services import Services

log = logging.getLogger("parley.search")

PAGE_MAX = 100
#: Queued changes one indexer batch applies at most (one transaction).  Big
#: enough that the per-transaction costs vanish (about 40 us of PostgreSQL
#: CPU per message either way), small enough that a batch commits in tens of
#: milliseconds, which bounds the lag it adds.
INDEX_BATCH = 500
#: Pause when the queues were empty: the lag added to the first message after
#: a quiet spell is at most this.
INDEX_IDLE_S = 0.05
#: Pause after a partial batch: messages are flowing, so the next pass comes
#: soon, with a few milliseconds' worth of them (measured, bench/search_lag.py
#: at 1,000/s: lag p50 48 ms, p99 113 ms with the idle pause after every
#: partial batch; 26 and 66 ms with this one).  A full batch means a
#: backlog: the loop goes again at once.
INDEX_BUSY_S = 0.005
#: Pause after a failure (the database unreachable): logged, then retried.
INDEX_RETRY_S = 1.0


async def search(svc: Services, ident: Identity, workspace_id: int, query: str, *,
                 channel_id: int | None = None, author_id: int | None = None,
                 since: dt.datetime | None = None, until: dt.datetime | None = None,
                 before_id: int | None = None, limit: int = 20) -> list[Message]:
    """Newest first; page with ``before_id`` = the last id of the previous page."""
    query = validate.search_query(query)
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    if channel_id is not None:
        await readable_channel(svc, ident, workspace_id, channel_id)
    for t in (since, until):
        if t is not None and t.tzinfo is None:
            raise InvalidInput("invalid_date", "dates need a time zone (e.g. Z or +02:00)")
    return await svc.store.search.search(
        workspace_id, ident.user_id, query,
        # An app's bot reads only the channels it is in (channels.readable_channel).
        include_public=allowed(member, Perm.BROWSE_PUBLIC_CHANNELS) and ident.app_id is None,
        channel_id=channel_id,
        author_id=author_id, since=since, until=until, before_id=before_id,
        limit=max(1, min(limit, PAGE_MAX)))


async def index_pass(indexer: SearchIndexer, batch: int = INDEX_BATCH,
                     partition: int | None = None) -> tuple[int, bool]:
    """One batch on every shard, of ``partition`` (None: of every partition,
    one after another): (changes applied, whether some batch was full)."""
    applied, more = 0, False
    parts = range(indexer.partitions) if partition is None else (partition,)
    for shard in indexer.shards:
        for part in parts:
            n = await indexer.index_batch(shard, batch, part)
            if n is None:
                continue  # another indexer holds this part: it is being indexed
            applied += n
            more = more or n >= batch
    return applied, more


async def index_loop(indexer: SearchIndexer, *, batch: int = INDEX_BATCH,
                     idle_s: float = INDEX_IDLE_S, busy_s: float = INDEX_BUSY_S,
                     retry_s: float = INDEX_RETRY_S, partition: int | None = None) -> None:
    """Apply queued changes forever: a pass over the shards, again at once
    while some shard has a backlog (a full batch), after ``busy_s`` when the
    pass applied something, after ``idle_s`` when it found nothing (or every
    part was held by another indexer).  ``partition``: only that part of
    each shard's queue (the composition root runs one loop per part, so a
    shard's parts are indexed concurrently); None: every part in turn.  Any
    number of processes may run it; each part has one indexer at a time (the
    port's contract).  Failures are logged and retried after ``retry_s``."""
    while True:
        try:
            applied, more = await index_pass(indexer, batch, partition)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("search indexing failed; retrying in %.1f s", retry_s, exc_info=True)
            await asyncio.sleep(retry_s)
            continue
        if not more:
            await asyncio.sleep(busy_s if applied else idle_s)


async def catch_up(indexer: SearchIndexer, *, timeout_s: float = 10.0,
                   poll_s: float = 0.005) -> None:
    """Return once every change committed before the call is searchable: the
    queue of every shard is empty.  Indexes itself where no other indexer
    holds a shard, waits where one does.  For tests and tools (search is
    eventually consistent; nothing on a request path waits for this)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        await index_pass(indexer)
        if all([await indexer.backlog(shard) == 0 for shard in indexer.shards]):
            return
        if loop.time() > deadline:
            raise TimeoutError(f"search index not caught up after {timeout_s} s")
        await asyncio.sleep(poll_s)
