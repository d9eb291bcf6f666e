"""Full-text search on PostgreSQL: the search query (``PgSearch``) and the
indexer that keeps its side table current (``PgSearchIndexer``).

Tables (migration ``shard/0008_search_indexer.sql``, which states the crash
argument in full):

* ``message_search``: one row per searchable message, its tsvector and the
  keys search scopes by; written only by the indexer.
* ``search_queue``: one row per message changed since it was last indexed;
  written by the batch insert (``parley_append_batch``), the edit and the
  delete (``storage/pg_messages.py``, ``QUEUE_FOR_INDEXER``) in their own
  transactions.

Rules of this file:

* One indexer batch is one transaction: claim queue rows (``FOR UPDATE SKIP
  LOCKED``), make ``message_search`` match the messages' current text,
  delete the claimed rows, commit.  Everything or nothing of a batch happens.
* The queue is split into ``partitions`` parts by a hash of the message id
  (``hashint8``: snowflakes made one at a time all end in sequence 0, so
  their low bits would not spread).  Each part is indexed on its own, so a
  shard's indexing can use several PostgreSQL backends at once: one
  indexer's batches are serial (claim, tsvector, GIN, commit), and one
  backend applied about 6,000 realistic messages/s on a two-core machine.
* A batch takes ``pg_try_advisory_xact_lock(INDEXER_LOCK_KEY, partition)``
  first, so one indexer works on a part at a time (another returns at once).
  The transaction-level form, not ``pg_try_advisory_lock``: the lock goes with the commit or the
  rollback, so a pooled connection can never carry it into another use, and
  a crashed indexer's lock dies with its transaction.  Advisory locks are
  per database, and every shard is its own database, so one constant key
  means "this shard".
* Search reads ``message_search`` joined to ``messages`` and applies the
  same permission filter as before the side table existed: what decides
  visibility is the message row and the channel, never the index.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from parley.model import Message
from storage.pg_common import (
    MESSAGE_COLUMNS,
    PgPart,
    Pools,
    message_from_row,
    shard_pool,
    transaction,
)

SEARCH_MAX_ROWS = 200  # one search page at most
#: Arbitrary constant naming "the search indexer of this shard" among advisory locks.
INDEXER_LOCK_KEY = 0x50534958  # "PSIX"

#: Queue a message for the indexer ($1 message id, $2 'insert' | 'edit' | 'delete'),
#: inside the transaction of the change.  DO UPDATE, not DO NOTHING: it waits
#: while an indexer holds the row, then inserts it again once that indexer has
#: deleted it, so a change committed after the indexer read the text is indexed
#: by a later batch (migration 0008).
QUEUE_FOR_INDEXER = """INSERT INTO search_queue (message_id, op) VALUES ($1, $2)
   ON CONFLICT (message_id) DO UPDATE SET op = EXCLUDED.op, queued_at = clock_timestamp()"""

#: One indexer batch ($1 = the most rows to claim, $2 partitions, $3 this
#: batch's partition): the counts of rows claimed,
#: entries written and entries removed.  Oldest first (snowflake ids grow with
#: time).  A claimed id whose message is live gets its entry (re)computed; one
#: whose message is deleted (or gone) loses its entry.
_INDEX_BATCH = """
WITH claimed AS (
    DELETE FROM search_queue q
     WHERE q.message_id IN (SELECT message_id FROM search_queue
                             WHERE $2::int = 1
                                OR (hashint8(message_id)::bigint & 2147483647) % $2::int = $3::int
                             ORDER BY message_id LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING q.message_id
), live AS (
    SELECT m.id, m.workspace_id, m.channel_id, to_tsvector('simple', m.text) AS tsv
      FROM claimed c JOIN messages m ON m.id = c.message_id
     WHERE m.deleted_at IS NULL
), put AS (
    INSERT INTO message_search (message_id, workspace_id, channel_id, tsv)
    SELECT id, workspace_id, channel_id, tsv FROM live
    ON CONFLICT (message_id) DO UPDATE SET tsv = EXCLUDED.tsv
    RETURNING message_id
), gone AS (
    DELETE FROM message_search s USING claimed c
     WHERE s.message_id = c.message_id
       AND NOT EXISTS (SELECT 1 FROM live l WHERE l.id = c.message_id)
    RETURNING s.message_id
)
SELECT (SELECT count(*) FROM claimed) AS claimed, (SELECT count(*) FROM put) AS put,
       (SELECT count(*) FROM gone) AS gone"""


class PgSearch(PgPart):
    """``SearchIndex`` on PostgreSQL (reads ``message_search``)."""

    async def search(self, workspace_id: int, user_id: int, query: str, *,
                     include_public: bool, channel_id: int | None, author_id: int | None,
                     since: dt.datetime | None, until: dt.datetime | None,
                     before_id: int | None, limit: int) -> list[Message]:
        """Messages matching ``query`` (web-search syntax) in the channels the
        user may read: their channels, and with ``include_public`` the public
        ones.  Newest first, keyset-paged by message id.  A message is found
        once the indexer has applied it (docs/architecture.md, "Search")."""
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {MESSAGE_COLUMNS} FROM message_search s
                JOIN messages m ON m.id = s.message_id AND m.workspace_id = $1
                JOIN channels c ON c.id = m.channel_id AND c.workspace_id = $1
                WHERE s.workspace_id = $1
                  AND s.tsv @@ websearch_to_tsquery('simple', $3)
                  AND m.deleted_at IS NULL
                  AND (EXISTS (SELECT 1 FROM channel_members cm
                               WHERE cm.channel_id = m.channel_id AND cm.user_id = $2
                                 AND cm.workspace_id = $1)
                       OR ($4 AND c.kind = 'public'))
                  AND ($5::bigint IS NULL OR m.channel_id = $5)
                  AND ($6::bigint IS NULL OR m.user_id = $6)
                  AND ($7::timestamptz IS NULL OR m.created_at >= $7)
                  AND ($8::timestamptz IS NULL OR m.created_at < $8)
                  AND ($9::bigint IS NULL OR m.id < $9)
                ORDER BY m.id DESC LIMIT $10""",  # noqa: S608
            workspace_id, user_id, query, include_public, channel_id, author_id, since, until,
            before_id, min(limit, SEARCH_MAX_ROWS))
        return [message_from_row(r) for r in rows]


class PgSearchIndexer(PgPart):
    """``SearchIndexer`` on PostgreSQL (``parley.ports.search``).

    ``exclusive=False`` skips the advisory lock, leaving only the queue's row
    locks between concurrent batches: for the tests that show those alone
    never index a message twice.
    """

    __slots__ = ("_partitions", "exclusive")

    def __init__(self, db: Pools, *, exclusive: bool = True, partitions: int = 1) -> None:
        super().__init__(db)
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.exclusive = exclusive
        self._partitions = partitions

    @property
    def shards(self) -> Sequence[str]:
        return list(self.pools)

    @property
    def partitions(self) -> int:
        return self._partitions

    async def index_batch(self, shard: str, limit: int, partition: int = 0) -> int | None:
        if not 0 <= partition < self._partitions:
            raise ValueError(f"partition {partition} is not in 0..{self._partitions - 1}")

        async def batch() -> int | None:
            async with transaction(self.pools[shard]) as conn:
                if self.exclusive and not await conn.fetchval(
                        "SELECT pg_try_advisory_xact_lock($1, $2)", INDEXER_LOCK_KEY, partition):
                    return None
                row = await conn.fetchrow(_INDEX_BATCH, limit, self._partitions, partition)
                return int(row["claimed"]) if row is not None else 0

        applied: int | None = await self._call(batch)
        return applied

    async def backlog(self, shard: str) -> int:
        return int(await self._call(self.pools[shard].fetchval,
                                    "SELECT count(*) FROM search_queue"))
