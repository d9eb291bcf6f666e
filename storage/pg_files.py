"""The file ports on PostgreSQL: uploads, attachments, limits.

Invariants:

* A file's state only moves pending -> ready, pending -> deleted or
  ready -> deleted, each as one conditional UPDATE (compare-and-set), so two
  racing completions or a completion racing a deletion end in one state.
* ``message_files`` rows outlive the file (a deleted file shows as removed
  in its messages) but never a message's visibility: shares are counted only
  for live (not deleted) messages.
* Every query filters by ``workspace_id`` except ``stale_uploads``, the
  cleanup task's scan over every shard.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from parley.model import FileLimits, FileRecord, FileShare
from storage.pg_app_events import channel_outbox
from storage.pg_common import PgPart, shard_pool, transaction

_COLUMNS = ("f.id, f.workspace_id, f.uploader_id, f.object_key, f.name, f.size, "
            "f.declared_type, f.content_type, f.state, f.created_at, f.thumbnail_key, "
            "f.width, f.height")


def file_from_row(r: asyncpg.Record) -> FileRecord:
    return FileRecord(id=r["id"], workspace_id=r["workspace_id"], uploader_id=r["uploader_id"],
                      key=r["object_key"], name=r["name"], size=r["size"],
                      declared_type=r["declared_type"], content_type=r["content_type"],
                      state=r["state"], created_at=r["created_at"],
                      thumbnail_key=r["thumbnail_key"], width=r["width"], height=r["height"])


class PgFiles(PgPart):
    """``FileStore`` on PostgreSQL."""

    async def create_file(self, file: FileRecord) -> FileRecord:
        pool = await shard_pool(self, file.workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""INSERT INTO files AS f (id, workspace_id, uploader_id, object_key, name, size,
                                        declared_type, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLUMNS}""",  # noqa: S608
            file.id, file.workspace_id, file.uploader_id, file.key, file.name, file.size,
            file.declared_type, file.created_at)
        return file_from_row(row)

    async def file(self, workspace_id: int, file_id: int) -> FileRecord | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"SELECT {_COLUMNS} FROM files f WHERE f.id = $1 AND f.workspace_id = $2",  # noqa: S608
            file_id, workspace_id)
        return None if row is None else file_from_row(row)

    async def files_by_id(self, workspace_id: int,
                          file_ids: Sequence[int]) -> list[FileRecord]:
        if not file_ids:
            return []
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {_COLUMNS} FROM files f
                WHERE f.id = ANY($2::bigint[]) AND f.workspace_id = $1""",  # noqa: S608
            workspace_id, list(file_ids))
        return [file_from_row(r) for r in rows]

    async def mark_file_ready(self, workspace_id: int, file_id: int, *, key: str,
                              size: int, content_type: str, thumbnail_key: str | None,
                              width: int | None, height: int | None) -> FileRecord | None:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            f"""UPDATE files f SET state = 'ready', ready_at = now(), size = $3,
                       content_type = $4, thumbnail_key = $5, width = $6, height = $7,
                       object_key = $8
                WHERE f.id = $1 AND f.workspace_id = $2 AND f.state = 'pending'
                RETURNING {_COLUMNS}""",  # noqa: S608
            file_id, workspace_id, size, content_type, thumbnail_key, width, height, key)
        return None if row is None else file_from_row(row)

    async def mark_file_deleted(self, workspace_id: int, file_id: int, *,
                                only_pending: bool = False
                                ) -> tuple[FileRecord, list[tuple[int, int]]] | None:
        pool = await shard_pool(self, workspace_id)
        states = ["pending"] if only_pending else ["pending", "ready"]
        async with transaction(pool) as conn:
            row = await conn.fetchrow(
                f"""UPDATE files f SET state = 'deleted', deleted_at = now()
                    WHERE f.id = $1 AND f.workspace_id = $2 AND f.state = ANY($3::text[])
                    RETURNING {_COLUMNS}""",  # noqa: S608
                file_id, workspace_id, states)
            if row is None:
                return None
            shared = await conn.fetch(
                """SELECT mf.channel_id, mf.message_id FROM message_files mf
                   JOIN messages m ON m.id = mf.message_id
                   WHERE mf.file_id = $1 AND mf.workspace_id = $2 AND m.deleted_at IS NULL
                   ORDER BY mf.message_id""", file_id, workspace_id)
        return file_from_row(row), [(r["channel_id"], r["message_id"]) for r in shared]

    async def stale_uploads(self, created_before: dt.datetime,
                            limit: int) -> list[FileRecord]:
        out: list[FileRecord] = []
        for pool in list(self.pools.values()):
            rows = await self._call(
                pool.fetch,
                f"""SELECT {_COLUMNS} FROM files f
                    WHERE f.state = 'pending' AND f.created_at < $1
                    ORDER BY f.created_at LIMIT $2""",  # noqa: S608
                created_before, limit - len(out))
            out += [file_from_row(r) for r in rows]
            if len(out) >= limit:
                break
        return out



class PgShares(PgPart):
    """``FileShareStore`` on PostgreSQL."""

    async def attach_files(self, workspace_id: int, channel_id: int, message_id: int,
                           file_ids: Sequence[int], uploader_id: int) -> list[FileRecord]:
        if not file_ids:
            return []
        pool = await shard_pool(self, workspace_id)
        async with transaction(pool) as conn:
            # Lock the files so a concurrent deletion either precedes the
            # attachment (the file is skipped) or follows it (the message
            # then shows the file as removed).
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS}, ord.n FROM files f
                    JOIN unnest($2::bigint[]) WITH ORDINALITY AS ord(id, n) ON ord.id = f.id
                    WHERE f.workspace_id = $1 AND f.state = 'ready' AND f.uploader_id = $3
                    ORDER BY ord.n FOR UPDATE OF f""",  # noqa: S608
                workspace_id, list(file_ids), uploader_id)
            new = await conn.fetch(
                """INSERT INTO message_files (message_id, file_id, workspace_id, channel_id,
                                              position)
                   SELECT $1, id, $2, $3, n FROM unnest($4::bigint[], $5::smallint[]) AS t(id, n)
                   ON CONFLICT DO NOTHING RETURNING file_id, position""",
                message_id, workspace_id, channel_id, [r["id"] for r in rows],
                [r["n"] for r in rows])
            # The Events API's outbox, in this transaction: one file_shared per
            # file newly attached (a repeated call shares nothing again).
            await channel_outbox(conn, workspace_id, channel_id, "file_shared",
                                 [{"file_id": r["file_id"], "user_id": uploader_id}
                                  for r in sorted(new, key=lambda r: r["position"])])
        return [file_from_row(r) for r in rows]

    async def message_files(self, workspace_id: int,
                            message_ids: Sequence[int]) -> dict[int, list[FileRecord]]:
        if not message_ids:
            return {}
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT mf.message_id, {_COLUMNS} FROM message_files mf
                JOIN files f ON f.id = mf.file_id
                WHERE mf.message_id = ANY($2::bigint[]) AND mf.workspace_id = $1
                ORDER BY mf.message_id, mf.position""",  # noqa: S608
            workspace_id, list(message_ids))
        out: dict[int, list[FileRecord]] = {}
        for r in rows:
            out.setdefault(r["message_id"], []).append(file_from_row(r))
        return out

    async def file_shares(self, workspace_id: int, file_id: int, user_id: int,
                          limit: int) -> list[FileShare]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            """SELECT c.id, c.kind, (cm.user_id IS NOT NULL) AS is_member
               FROM (SELECT DISTINCT mf.channel_id FROM message_files mf
                     JOIN messages m ON m.id = mf.message_id AND m.deleted_at IS NULL
                     WHERE mf.file_id = $2 AND mf.workspace_id = $1) s
               JOIN channels c ON c.id = s.channel_id AND c.workspace_id = $1
               LEFT JOIN channel_members cm ON cm.channel_id = c.id AND cm.user_id = $3
               ORDER BY is_member DESC, c.id LIMIT $4""",
            workspace_id, file_id, user_id, limit)
        return [FileShare(channel_id=r["id"], kind=r["kind"], is_member=r["is_member"])
                for r in rows]

    async def channel_files(self, workspace_id: int, channel_id: int,
                            before_id: int | None, limit: int) -> list[FileRecord]:
        pool = await shard_pool(self, workspace_id)
        rows = await self._call(
            pool.fetch,
            f"""SELECT {_COLUMNS} FROM files f
                WHERE f.workspace_id = $1 AND f.state = 'ready'
                  AND f.id < COALESCE($3::bigint, 9223372036854775807)
                  AND EXISTS (SELECT 1 FROM message_files mf
                              JOIN messages m ON m.id = mf.message_id AND m.deleted_at IS NULL
                              WHERE mf.file_id = f.id AND mf.channel_id = $2
                                AND mf.workspace_id = $1)
                ORDER BY f.id DESC LIMIT $4""",  # noqa: S608
            workspace_id, channel_id, before_id, limit)
        return [file_from_row(r) for r in rows]



class PgFileLimits(PgPart):
    """``FileLimitStore`` on PostgreSQL."""

    async def file_limits(self, workspace_id: int) -> FileLimits:
        pool = await shard_pool(self, workspace_id)
        row = await self._call(
            pool.fetchrow,
            "SELECT max_file_bytes, allowed_types FROM file_limits WHERE workspace_id = $1",
            workspace_id)
        return _limits(row)

    async def set_file_limits(self, workspace_id: int,
                              limits: FileLimits) -> FileLimits:
        pool = await shard_pool(self, workspace_id)
        types = None if limits.allowed_types is None else list(limits.allowed_types)
        row = await self._call(
            pool.fetchrow,
            """INSERT INTO file_limits (workspace_id, max_file_bytes, allowed_types)
               VALUES ($1, $2, $3)
               ON CONFLICT (workspace_id) DO UPDATE
                   SET max_file_bytes = EXCLUDED.max_file_bytes,
                       allowed_types = EXCLUDED.allowed_types
               RETURNING max_file_bytes, allowed_types""",
            workspace_id, limits.max_file_bytes, types)
        return _limits(row)


def _limits(row: asyncpg.Record | None) -> FileLimits:
    if row is None:
        return FileLimits()
    types = row["allowed_types"]
    return FileLimits(max_file_bytes=row["max_file_bytes"],
                      allowed_types=None if types is None else tuple(types))
