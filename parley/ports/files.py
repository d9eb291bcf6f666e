"""Ports of files: the file index (bytes live in the blob store,
``ports.blobs``), where files are shared, and per-workspace limits.

Workspace-scoped like every shard port.  State changes are atomic
compare-and-set (``pending`` -> ``ready`` happens once; ``deleted`` is
final); a deleted file keeps its ``message_files`` rows so its messages can
show it as removed.  Connection failures raise ``StoreUnavailable``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from parley.model import FileLimits, FileRecord, FileShare


class FileStore(Protocol):
    """Files and their lifecycle."""

    async def create_file(self, file: FileRecord) -> FileRecord:
        """Insert a new pending file (its ``state`` is ignored)."""

    async def file(self, workspace_id: int, file_id: int) -> FileRecord | None:
        """The file in any state, or None."""

    async def files_by_id(self, workspace_id: int,
                          file_ids: Sequence[int]) -> list[FileRecord]:
        """Those of ``file_ids`` that exist in the workspace, in any state."""

    async def mark_file_ready(self, workspace_id: int, file_id: int, *, key: str, size: int,
                              content_type: str, thumbnail_key: str | None,
                              width: int | None, height: int | None) -> FileRecord | None:
        """pending -> ready with the key holding the checked bytes, their size
        and sniffed type; None when the file is not pending (completed or
        deleted meanwhile)."""

    async def mark_file_deleted(self, workspace_id: int, file_id: int, *,
                                only_pending: bool = False
                                ) -> tuple[FileRecord, list[tuple[int, int]]] | None:
        """-> deleted (only from pending with ``only_pending``); the record and
        the (channel id, message id) of live messages sharing it, or None when
        there was nothing to change."""

    async def stale_uploads(self, created_before: dt.datetime,
                            limit: int) -> list[FileRecord]:
        """Pending files created before the given time, on every shard (the
        cleanup task's scan; the only query that is not workspace-scoped)."""


class FileShareStore(Protocol):
    """Files shared by messages."""

    async def attach_files(self, workspace_id: int, channel_id: int, message_id: int,
                           file_ids: Sequence[int], uploader_id: int) -> list[FileRecord]:
        """Attach those of ``file_ids`` that are ready and uploaded by
        ``uploader_id``, in order; idempotent.  The files attached.  Each
        file newly attached writes the Events API's ``file_shared`` outbox
        rows in the same transaction (parley/ports/app_events.py)."""

    async def message_files(self, workspace_id: int,
                            message_ids: Sequence[int]) -> dict[int, list[FileRecord]]:
        """Files of each message (deleted ones included, to show as removed)."""

    async def file_shares(self, workspace_id: int, file_id: int, user_id: int,
                          limit: int) -> list[FileShare]:
        """Channels where a live message shares the file, members' ones first."""

    async def channel_files(self, workspace_id: int, channel_id: int, before_id: int | None,
                            limit: int) -> list[FileRecord]:
        """Ready files shared by live messages of the channel, newest first."""


class FileLimitStore(Protocol):
    """A workspace's own file limits (they only tighten the server's)."""

    async def file_limits(self, workspace_id: int) -> FileLimits:
        """The workspace's limits (each None: the server's setting applies)."""

    async def set_file_limits(self, workspace_id: int, limits: FileLimits) -> FileLimits:
        """Replace the workspace's limits; what is stored now."""
