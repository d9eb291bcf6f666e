"""``AppHealthStore`` on PostgreSQL (contract: parley/ports/app_health.py;
tables: migration shard/0013).

Invariants:

* Counts are one upsert per shard per flush (``unnest`` of arrays), summing
  into the (app, minute) row, so concurrent dispatchers add up.
* Disabling is ``UPDATE ... WHERE events_disabled_at IS NULL``: one
  process wins, the others get nothing back.  Enabling is one transaction
  (the flag, the counts, the cursors, the outbox rows).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from parley.ports.app_health import DeliveryCount, FailingApp
from parley.ports.apps import AppRecord
from storage.pg_apps import APP_COLUMNS, app_record
from storage.pg_common import PgPart, shard_pool, transaction

_ADD = """
INSERT INTO app_delivery_stats AS s (workspace_id, app_id, minute, ok, failed)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::int[], $5::int[])
ON CONFLICT (app_id, minute) DO UPDATE
SET ok = s.ok + EXCLUDED.ok, failed = s.failed + EXCLUDED.failed
"""

_FAILING = """
SELECT s.workspace_id, s.app_id, sum(s.ok)::bigint AS ok, sum(s.failed)::bigint AS failed
FROM app_delivery_stats s
JOIN apps a ON a.id = s.app_id AND a.workspace_id = s.workspace_id
WHERE s.minute > $1 AND a.events_disabled_at IS NULL AND a.deleted_at IS NULL
  AND a.installed_at IS NOT NULL
GROUP BY s.workspace_id, s.app_id
HAVING sum(s.ok + s.failed) >= $2 AND sum(s.failed) >= $3::float8 * sum(s.ok + s.failed)
ORDER BY s.app_id
"""


class PgAppHealth(PgPart):
    """``AppHealthStore`` on PostgreSQL."""

    __slots__ = ()

    async def add_counts(self, counts: Sequence[DeliveryCount]) -> None:
        by_shard: dict[int, list[DeliveryCount]] = defaultdict(list)
        for c in counts:
            by_shard[c.workspace_id].append(c)
        for workspace_id, rows in by_shard.items():
            pool = await shard_pool(self, workspace_id)
            await self._call(pool.execute, _ADD, [c.workspace_id for c in rows],
                             [c.app_id for c in rows], [c.minute for c in rows],
                             [c.ok for c in rows], [c.failed for c in rows])

    async def failing_apps(self, since: dt.datetime, min_tries: int,
                           min_failed_ratio: float) -> list[FailingApp]:
        out: list[FailingApp] = []
        for pool in list(self.pools.values()):
            rows = await self._call(pool.fetch, _FAILING, since, min_tries, min_failed_ratio)
            out += [FailingApp(workspace_id=r["workspace_id"], app_id=r["app_id"],
                               ok=r["ok"], failed=r["failed"]) for r in rows]
        return out

    async def disable_events(self, workspace_id: int, app_id: int,
                             reason: str) -> AppRecord | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""UPDATE apps a SET events_disabled_at = now(), events_disabled_reason = $3
                WHERE a.id = $1 AND a.workspace_id = $2 AND a.deleted_at IS NULL
                  AND a.events_disabled_at IS NULL
                RETURNING {APP_COLUMNS}""",  # noqa: S608 - no user input in the SQL text
            app_id, workspace_id, reason)
        return None if row is None else app_record(row)

    async def enable_events(self, workspace_id: int, app_id: int) -> AppRecord | None:
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            row = await conn.fetchrow(
                f"""UPDATE apps a SET events_disabled_at = NULL, events_disabled_reason = NULL
                    WHERE a.id = $1 AND a.workspace_id = $2 AND a.deleted_at IS NULL
                      AND a.events_disabled_at IS NOT NULL
                    RETURNING {APP_COLUMNS}""",  # noqa: S608
                app_id, workspace_id)
            if row is None:
                return None
            await conn.execute("DELETE FROM app_delivery_stats WHERE app_id = $1", app_id)
            # Past what was posted while the app was off (cursors are per
            # pair, so this also ends any retry state they held).
            await conn.execute(
                """UPDATE app_event_cursors c
                   SET delivered = greatest(c.delivered, 2 * cc.last_seq + 1), attempts = 0,
                       retry_reason = NULL, not_before = NULL
                   FROM channel_counters cc
                   WHERE cc.channel_id = c.channel_id AND c.app_id = $1
                     AND c.workspace_id = $2""",
                app_id, workspace_id)
            await conn.execute(
                "DELETE FROM app_event_outbox WHERE app_id = $1 AND workspace_id = $2",
                app_id, workspace_id)
        return app_record(row)

    async def prune(self, before: dt.datetime) -> None:
        for pool in list(self.pools.values()):
            await self._call(pool.execute,
                             "DELETE FROM app_delivery_stats WHERE minute < $1", before)
