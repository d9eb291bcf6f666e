"""Files uploaded the way Slack apps upload them (``files_upload_v2``):
ask for an upload URL for a pending file, POST the raw bytes to it, then
complete (and share) the files in one call.

Rules:

* The upload URL carries a ticket signed with a key derived from the
  server secret (``AppKeys.upload_ticket``): the file, its workspace and an
  expiry (``upload_url_ttl_s``).  It is the grant, like the local blob
  store's signed URLs; the bytes are streamed through ``files.upload_content``
  as the file's uploader, bounded by the declared length, so everything the
  files action checks (size, sniffed type, thumbnails) applies.
* Completing shares the files in one message of the uploader (with the
  ``initial_comment`` as its text) through ``messages.post_message``, so it
  gets a seq and reaches sockets like any other message.
"""

from __future__ import annotations

import math
import mimetypes
from collections.abc import AsyncIterable, Sequence

from parley.actions import files, messages
from parley.auth import Identity
from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.model import FileRecord, Message, MessageExtras
from parley.services import Services


async def request_upload(svc: Services, ident: Identity, workspace_id: int, filename: str,
                         length: int) -> tuple[FileRecord, str]:
    """A pending file of ``length`` bytes and the ticket of its upload URL."""
    if length < 1:
        raise InvalidInput("invalid_length", "length is the file's size in bytes (at least 1)")
    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    start = await files.request_upload(svc, ident, workspace_id, filename, length, ctype)
    ticket = svc.app_keys.upload_ticket(workspace_id, start.file.id,
                                        svc.settings.upload_url_ttl_s)
    return start.file, ticket


async def upload(svc: Services, ticket: str, chunks: AsyncIterable[bytes],
                 content_length: int | None) -> FileRecord:
    """The bytes POSTed to an upload URL: streamed into the file, which is
    then ready (its type sniffed, a thumbnail made)."""
    found = svc.app_keys.check_upload_ticket(ticket)
    if found is None:
        raise Forbidden("invalid_upload_url", "the upload URL is invalid or has expired")
    workspace_id, file_id = found
    f = await svc.store.files.file(workspace_id, file_id)
    if f is None or f.state == "deleted":
        raise NotFound("file_not_found", "no such file")
    uploader = Identity(user_id=f.uploader_id, session_id=0, expires_at=math.inf)
    return await files.upload_content(svc, uploader, workspace_id, file_id, chunks,
                                      content_length)


async def complete(svc: Services, ident: Identity, workspace_id: int, file_ids: Sequence[int],
                   *, channel_ids: Sequence[int], initial_comment: str,
                   thread_root_id: int | None,
                   extras: MessageExtras | None = None) -> tuple[list[FileRecord], list[Message]]:
    """The caller's uploaded files (each must have received its bytes) and,
    for each channel, the message sharing them."""
    ready: list[FileRecord] = []
    for fid in dict.fromkeys(file_ids):
        f = await files.get_file(svc, ident, workspace_id, fid)
        if f.uploader_id != ident.user_id:
            raise NotFound("file_not_found", "no such file")
        if f.state != "ready":
            raise Conflict("file_not_uploaded", "the file's bytes were not uploaded yet")
        ready.append(f)
    posted = [await messages.post_message(svc, ident, workspace_id, cid, initial_comment,
                                          thread_root_id=thread_root_id,
                                          file_ids=[f.id for f in ready], extras=extras)
              for cid in channel_ids]
    return ready, posted
