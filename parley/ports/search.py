"""The search indexer port: how committed message changes reach the index.

Search is off the commit path (issue 21): storing, editing or deleting a
message queues it in the same transaction, and an indexer, on any node,
applies the queue to the full-text index in batches afterwards.  An ack
waits only for the message row.  ``parley.actions.search.index_loop`` drives
an implementation; ``storage/pg_search.py`` is the PostgreSQL one; the suite
is ``tests/storage/test_pg_search.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class SearchIndexer(Protocol):
    """Applies queued message changes to the search index, shard by shard.

    Contract, for every implementation:

    * **Durable queue.** Every change committed through the message ports (a
      stored message, an edit, a delete) is queued in the transaction that
      commits it; an aborted change is never queued.
    * **Atomic batches.** ``index_batch`` applies up to ``limit`` queued
      changes and removes them from the queue in one transaction: after a
      crash, an error or a cancellation before it returns, none of them is
      applied or removed (they are simply applied by a later batch).
    * **Nothing twice.** The index holds at most one entry per message, and
      applying a change is idempotent (the entry is made from the message's
      current text), so no message is ever indexed twice, whether batches
      run one after another, concurrently, or again after a crash.
    * **Converges.** Once a message's last change has been applied, its
      entry reflects its latest committed text; a deleted message has none.
    * **Partitions.** A shard's queue is split into ``partitions`` disjoint
      parts by message id (a fixed hash, so a message is always in the same
      part, and every queued change is in exactly one).  Parts are indexed
      independently, so several backends of one shard can work at once.
    * **One indexer per partition.** At most one call indexes a (shard,
      partition) at a time, across every process; a call that finds it busy
      returns ``None`` at once instead of waiting.
    * **Visibility.** When ``index_batch`` has returned ``0`` for every
      partition of a shard, every change committed on it before those calls
      is searchable.

    Errors: ``parley.model.StoreUnavailable`` when the database is
    unreachable (nothing was applied; retry later).
    """

    @property
    def shards(self) -> Sequence[str]:
        """The shards this indexer follows."""

    @property
    def partitions(self) -> int:
        """How many parts each shard's queue is split into (>= 1)."""

    async def index_batch(self, shard: str, limit: int, partition: int = 0) -> int | None:
        """Apply up to ``limit`` queued changes of ``shard``'s ``partition``
        (0 <= partition < ``partitions``): how many were applied (0: that
        part of the queue was empty), or None when another indexer holds it."""

    async def backlog(self, shard: str) -> int:
        """Changes of ``shard`` committed and not yet applied (a change an
        indexer is applying counts until its batch commits)."""
