"""Files: upload (direct to storage, or streamed through the API), complete,
attach to messages, list, download, delete, limits, and the cleanup of
uploads never completed.

Rules:

* **Keys are ours.**  A file's bytes live under ``w/<workspace>/<file>/...``;
  the name the uploader gives is display text only.  A client uploads to the
  *staging* key ``w/<w>/<f>/upload``; completing moves it to a fresh key
  ``w/<w>/<f>/<random>`` that nothing else can ever write, checks the size,
  sniffs the type and marks the file ready with that key in one
  compare-and-set.  So bytes re-uploaded with a still-valid ticket after
  completion (or by a racing second completion) are never served under the
  type sniffed from other bytes.
* **Never trust the client's type.**  The served Content-Type is sniffed
  from the first bytes (``parley.media.sniff``); only ``SAFE_INLINE`` types
  (png, jpeg, gif, webp) are shown inline, everything else (SVG and HTML
  included) is ``attachment``; every download also carries ``nosniff`` and
  ``CSP: sandbox`` (``api/routes_files.py``).
* **Visibility.**  A ready file is visible to its uploader and to whoever can
  see a live message sharing it (membership of the channel, or a public
  channel for roles that may browse).  Anything else answers 404
  ``file_not_found``, exactly like a missing file.  Access is checked on
  every request, so losing the channel refuses the next URL at once; a URL
  already handed out lives at most ``download_url_ttl_s`` (<= 15 minutes).
* **Limits before bytes.**  Size and type are checked against the server's
  and the workspace's limits when the upload is requested (declared values)
  and again on completion (real size, sniffed type).  The streaming path
  refuses a Content-Length over the bound before reading, and counts bytes
  while streaming (413 ``file_too_large``).
* **Thumbnails are untrusted work.**  They are made behind the
  ``Thumbnailer`` port (a bounded child process, ``storage/thumbnails.py``)
  within ``thumbnail_max_pixels``, ``thumbnail_memory_mb`` and
  ``thumbnail_timeout_s``.  A file without a thumbnail is still ready: a
  decompression bomb just gets none.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from parley import events, media
from parley.actions import validate
from parley.actions.channels import readable_channel
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound, TooLarge
from parley.errors import Unavailable as UnavailableError
from parley.model import FileLimits, FileRecord, Member
from parley.permissions import Perm, allowed, require
from parley.ports.blobs import (
    MAX_DOWNLOAD_URL_TTL_S,
    BlobNotFound,
    BlobTooLarge,
    BlobUnavailable,
    InvalidKey,
    SignedGrant,
    UploadTicket,
)
from parley.ports.media import THUMBNAIL_INPUT_MAX
from parley.services import Services

log = logging.getLogger("parley.files")
T = TypeVar("T")

NAME_MAX = 255  # characters of a file name
FILES_PER_MESSAGE = 10
CHANNEL_FILES_PAGE_MAX = 100
SHARES_SCANNED = 50  # channels looked at when authorizing a download
ALLOWED_TYPES_MAX = 50  # patterns in a workspace's allowed list
CLEANUP_INTERVAL_S = 300.0  # how often the cleanup task looks for stale uploads
CLEANUP_BATCH = 200
_MIME_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 type and subtype names
_MIME_RE = re.compile(rf"^{_MIME_NAME}/{_MIME_NAME}$")
_PATTERN_RE = re.compile(rf"^(\*|\*/\*|{_MIME_NAME}/(\*|{_MIME_NAME}))$")


class UnsupportedType(DomainError):
    """The file's type is not allowed here (415)."""

    status = 415


def _not_found() -> NotFound:
    return NotFound("file_not_found", "no such file")


# -- keys ---------------------------------------------------------------------------


def staging_key(workspace_id: int, file_id: int) -> str:
    return f"w/{workspace_id}/{file_id}/upload"


def _final_key(workspace_id: int, file_id: int) -> str:
    return f"w/{workspace_id}/{file_id}/{secrets.token_hex(8)}"


# -- limits -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    max_file_bytes: int
    server_types: tuple[str, ...]
    workspace: FileLimits

    def type_allowed(self, ctype: str) -> bool:
        ws = self.workspace.allowed_types
        return (media.type_matches(ctype, self.server_types)
                and (ws is None or media.type_matches(ctype, ws)))


async def limits(svc: Services, ident: Identity, workspace_id: int) -> EffectiveLimits:
    await require_member(svc, ident, workspace_id)
    return await _limits(svc, workspace_id)


async def _limits(svc: Services, workspace_id: int) -> EffectiveLimits:
    own = await svc.store.file_limits.file_limits(workspace_id)
    cap = svc.settings.max_file_bytes
    if own.max_file_bytes is not None:
        cap = min(cap, own.max_file_bytes)
    return EffectiveLimits(cap, svc.settings.file_types or ("*",), own)


async def set_limits(svc: Services, ident: Identity, workspace_id: int,
                     max_file_bytes: int | None,
                     allowed_types: Sequence[str] | None) -> EffectiveLimits:
    """Holders of *manage workspace files* (staff) set the workspace's own
    limits (None: the server's).  They only tighten the server's: the
    effective size is the smaller of the two and a type must be allowed by
    both."""
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.MANAGE_WORKSPACE_FILES)
    if max_file_bytes is not None and max_file_bytes < 1:
        raise InvalidInput("invalid_limits", "max_file_bytes must be at least 1")
    types: tuple[str, ...] | None = None
    if allowed_types is not None:
        types = tuple(dict.fromkeys(t.strip().lower() for t in allowed_types))
        if len(types) > ALLOWED_TYPES_MAX or not all(_PATTERN_RE.match(t) for t in types):
            raise InvalidInput("invalid_limits",
                               f"allowed_types holds up to {ALLOWED_TYPES_MAX} MIME types or "
                               "patterns such as image/* or *")
    await svc.store.file_limits.set_file_limits(workspace_id, FileLimits(max_file_bytes, types))
    return await _limits(svc, workspace_id)


# -- upload -------------------------------------------------------------------------


def _file_name(name: str) -> str:
    # Display text only, but a download suggests it: keep the last path
    # component, no control characters.
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if (not name or len(name) > NAME_MAX or name in {".", ".."} or not validate.storable(name)
            or any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in name)):
        raise InvalidInput("invalid_file_name",
                           f"a file name has 1 to {NAME_MAX} characters and no control "
                           "characters")
    return name


def _declared_type(ctype: str) -> str:
    ctype = ctype.split(";", 1)[0].strip().lower()
    if not _MIME_RE.match(ctype):
        raise InvalidInput("invalid_content_type", "content_type must be a MIME type")
    return ctype


@dataclass(frozen=True, slots=True)
class UploadStart:
    file: FileRecord
    ticket: UploadTicket


async def request_upload(svc: Services, ident: Identity, workspace_id: int, name: str,
                         size: int, content_type: str) -> UploadStart:
    """A pending file and a ticket for uploading exactly it: one key, at most
    ``size`` bytes, valid for ``upload_url_ttl_s``."""
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.POST_MESSAGE)
    name = _file_name(name)
    declared = _declared_type(content_type)
    lim = await _limits(svc, workspace_id)
    if size < 1:
        raise InvalidInput("invalid_file_size", "a file has at least one byte")
    if size > lim.max_file_bytes:
        raise TooLarge("file_too_large",
                       f"files are limited to {lim.max_file_bytes} bytes in this workspace")
    if not lim.type_allowed(declared):
        raise UnsupportedType("file_type_not_allowed",
                              f"{declared} files are not allowed in this workspace")
    file_id = svc.ids.next_id()
    record = await svc.store.files.create_file(FileRecord(
        id=file_id, workspace_id=workspace_id, uploader_id=ident.user_id,
        key=staging_key(workspace_id, file_id), name=name, size=size, declared_type=declared,
        content_type=None, state="pending", created_at=svc.ids.timestamp(file_id)))
    ticket = await _blob_call(svc.blobs.upload_ticket(
        record.key, max_size=size, content_type=declared,
        expires_s=svc.settings.upload_url_ttl_s))
    return UploadStart(record, ticket)


async def _own_pending(svc: Services, ident: Identity, workspace_id: int,
                       file_id: int) -> FileRecord | None:
    """The caller's file for completing: None when it is already ready."""
    await require_member(svc, ident, workspace_id)
    f = await svc.store.files.file(workspace_id, file_id)
    if f is None or f.uploader_id != ident.user_id or f.state == "deleted":
        raise _not_found()
    return None if f.state == "ready" else f


async def upload_content(svc: Services, ident: Identity, workspace_id: int, file_id: int,
                         chunks: AsyncIterable[bytes], content_length: int | None) -> FileRecord:
    """Stream the bytes of a pending file through the API, then complete it.
    Never more than one chunk (S3: one part) in memory; more bytes than
    declared answer 413 and store nothing."""
    f = await _own_pending(svc, ident, workspace_id, file_id)
    if f is None:
        raise Conflict("file_already_complete", "the file was uploaded already")
    if content_length is not None and content_length > f.size:
        raise TooLarge("file_too_large", f"this upload was declared as {f.size} bytes")
    key = _final_key(workspace_id, file_id)
    try:
        await _blob_call(svc.blobs.put(key, chunks, max_size=f.size,
                                       content_type="application/octet-stream"))
    except BlobTooLarge as exc:
        raise TooLarge("file_too_large", f"this upload was declared as {f.size} bytes") from exc
    return await _finish(svc, f, key)


async def complete_upload(svc: Services, ident: Identity, workspace_id: int,
                          file_id: int) -> FileRecord:
    """Check what a direct upload stored and make the file ready.
    Idempotent: completing a ready file returns it."""
    f = await _own_pending(svc, ident, workspace_id, file_id)
    if f is None:
        done = await svc.store.files.file(workspace_id, file_id)
        if done is None:
            raise _not_found()
        return done
    key = _final_key(workspace_id, file_id)
    try:
        await _blob_call(svc.blobs.move(f.key, key))
    except BlobNotFound as exc:
        raise Conflict("upload_missing", "nothing was uploaded for this file yet") from exc
    return await _finish(svc, f, key)


async def _finish(svc: Services, f: FileRecord, key: str) -> FileRecord:
    """Check the bytes under ``key`` (ours alone) and mark ``f`` ready."""
    ready: FileRecord | None = None
    thumb: str | None = None
    try:
        info = await _blob_call(svc.blobs.stat(key))
        if info is None:
            raise Conflict("upload_missing", "nothing was uploaded for this file yet")
        if info.size != f.size:
            raise Conflict("upload_size_mismatch",
                           f"{info.size} bytes arrived but {f.size} were declared; "
                           "upload again")
        head = b"".join([c async for c in svc.blobs.get(key, length=media.SNIFF_BYTES)])
        ctype = media.sniff(head)
        if not (await _limits(svc, f.workspace_id)).type_allowed(ctype):
            await svc.store.files.mark_file_deleted(f.workspace_id, f.id, only_pending=True)
            raise UnsupportedType("file_type_not_allowed",
                                  f"the file's content is {ctype}, which is not allowed in "
                                  "this workspace")
        width = height = None
        if ctype in media.THUMBNAIL_TYPES and f.size <= THUMBNAIL_INPUT_MAX:
            made = await svc.thumbnails.thumbnail(
                svc.blobs.get(key, chunk_size=256 * 1024),
                max_pixels=svc.settings.thumbnail_max_pixels,
                memory_mb=svc.settings.thumbnail_memory_mb,
                timeout_s=svc.settings.thumbnail_timeout_s)
            if made is not None:
                png, width, height = made.png, made.width, made.height
                thumb = key + ".thumb"
                await _blob_call(svc.blobs.put(thumb, _one(png), max_size=len(png),
                                               content_type="image/png"))
        ready = await svc.store.files.mark_file_ready(
            f.workspace_id, f.id, size=info.size, content_type=ctype, thumbnail_key=thumb,
            width=width, height=height, key=key)
    finally:
        if ready is None:  # refused, failed, or another completion won
            await _forget(svc, key, thumb)
    if ready is not None:
        # Bytes a still-valid ticket wrote besides the streamed upload.
        await _forget(svc, staging_key(f.workspace_id, f.id))
        return ready
    now = await svc.store.files.file(f.workspace_id, f.id)
    if now is None or now.state != "ready":
        raise _not_found()
    return now


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _forget(svc: Services, *keys: str | None) -> None:
    for k in keys:
        if k is None:
            continue
        try:
            await svc.blobs.delete(k)
        except (BlobUnavailable, InvalidKey):
            log.warning("could not delete blob %s; it is orphaned", k, exc_info=True)


async def _blob_call(aw: Awaitable[T]) -> T:
    try:
        return await aw
    except BlobUnavailable as exc:
        raise UnavailableError("storage_unavailable",
                               "file storage is unavailable; nothing was changed, retry") from exc


# -- reading ------------------------------------------------------------------------


async def _readable(svc: Services, ident: Identity, workspace_id: int,
                    file_id: int) -> FileRecord:
    """A ready file the caller may see (see the module rules), else 404."""
    member = await require_member(svc, ident, workspace_id)
    return await _shown(svc, member, workspace_id, file_id,
                        await svc.store.files.file(workspace_id, file_id))


async def _shown(svc: Services, member: Member, workspace_id: int, file_id: int,
                 f: FileRecord | None) -> FileRecord:
    """``f`` (the row of ``file_id``, or None) if it is ready and ``member``
    may see it, else 404.  The shares are read for every caller but the
    uploader, whatever ``f`` is, so a real file one cannot see costs what a
    made-up id costs: the answer and its timing say nothing about existence."""
    if f is not None and f.state == "ready" and f.uploader_id == member.user_id:
        return f
    shares = await svc.store.shares.file_shares(workspace_id, file_id, member.user_id,
                                                SHARES_SCANNED)
    if f is None or f.state != "ready" or not allowed(member, Perm.READ_HISTORY):
        raise _not_found()
    # An app's bot reads only the channels it is in (channels.readable_channel).
    browse = allowed(member, Perm.BROWSE_PUBLIC_CHANNELS) and not member.is_bot
    if any(share.is_member or (share.kind == "public" and browse) for share in shares):
        return f
    raise _not_found()


async def get_file(svc: Services, ident: Identity, workspace_id: int,
                   file_id: int) -> FileRecord:
    """A file's metadata: its uploader sees it in any state, others only when
    it is ready and shared where they can see it."""
    member = await require_member(svc, ident, workspace_id)
    f = await svc.store.files.file(workspace_id, file_id)
    if f is not None and f.uploader_id == ident.user_id and f.state != "deleted":
        return f
    return await _shown(svc, member, workspace_id, file_id, f)


@dataclass(frozen=True, slots=True)
class Download:
    """How to answer a download: ``url`` to redirect to (a store with its
    own endpoint), or ``key`` to stream with these headers."""

    key: str
    size: int | None
    content_type: str
    disposition: str
    url: str | None


async def download(svc: Services, ident: Identity, workspace_id: int, file_id: int, *,
                   thumbnail: bool = False) -> Download:
    f = await _readable(svc, ident, workspace_id, file_id)
    if thumbnail:
        if f.thumbnail_key is None:
            raise NotFound("thumbnail_not_found", "this file has no thumbnail")
        key, size, ctype = f.thumbnail_key, None, "image/png"
        disposition = media.content_disposition("inline", f"{f.name}.thumb.png")
    else:
        key, size, ctype = f.key, f.size, f.content_type or "application/octet-stream"
        disposition = media.disposition_for(ctype, f.name)
    url = None
    if not svc.blobs.served_by_api:
        ttl = min(svc.settings.download_url_ttl_s, MAX_DOWNLOAD_URL_TTL_S)
        url = await _blob_call(svc.blobs.download_url(key, content_type=ctype,
                                                      disposition=disposition, expires_s=ttl))
    return Download(key=key, size=size, content_type=ctype, disposition=disposition, url=url)


async def open_stream(svc: Services, key: str) -> AsyncIterator[bytes]:
    """The bytes under ``key``, with the first chunk already read, so a
    missing object fails before any header is sent."""
    it = svc.blobs.get(key, chunk_size=256 * 1024)
    try:
        first = await _blob_call(anext(it, b""))
    except BlobNotFound as exc:
        raise _not_found() from exc

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in it:
            yield chunk

    return rest()


async def list_channel_files(svc: Services, ident: Identity, workspace_id: int,
                             channel_id: int, before_id: int | None,
                             limit: int) -> list[FileRecord]:
    """Ready files shared by live messages of a channel the caller can see,
    newest first."""
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    await readable_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.shares.channel_files(workspace_id, channel_id, before_id,
                                                max(1, min(limit, CHANNEL_FILES_PAGE_MAX)))


# -- signed URLs of a store the API serves (the local disk) ---------------------------------


def signed_grant(svc: Services, op: str, key: str, params: Mapping[str, str]) -> SignedGrant:
    grant = svc.blobs.verify(op, key, params)
    if grant is None:
        raise Forbidden("invalid_signature", "the link is invalid or has expired")
    return grant


async def signed_upload(svc: Services, key: str, params: Mapping[str, str],
                        chunks: AsyncIterable[bytes], content_length: int | None) -> int:
    """Store the body of a PUT to a signed upload URL (at most its bound)."""
    grant = signed_grant(svc, "put", key, params)
    bound = grant.max_size or 0
    if content_length is not None and content_length > bound:
        raise TooLarge("file_too_large", f"this upload is limited to {bound} bytes")
    try:
        return await _blob_call(svc.blobs.put(key, chunks, max_size=bound))
    except BlobTooLarge as exc:
        raise TooLarge("file_too_large", f"this upload is limited to {bound} bytes") from exc


# -- attachments --------------------------------------------------------------------


async def attachable(svc: Services, ident: Identity, workspace_id: int,
                     file_ids: Sequence[int]) -> list[int]:
    """The ids, deduplicated in order, once each is a ready file the caller
    uploaded in this workspace (else 404 ``file_not_found``, like a missing
    one, or 409 ``file_not_ready``)."""
    ids = list(dict.fromkeys(file_ids))
    if len(ids) > FILES_PER_MESSAGE:
        raise InvalidInput("too_many_files",
                           f"a message has at most {FILES_PER_MESSAGE} files")
    found = {f.id: f for f in await svc.store.files.files_by_id(workspace_id, ids)}
    for fid in ids:
        f = found.get(fid)
        if f is None or f.uploader_id != ident.user_id or f.state == "deleted":
            raise _not_found()
        if f.state != "ready":
            raise Conflict("file_not_ready", "complete the upload before sharing the file")
    return ids


async def attachments(svc: Services, workspace_id: int,
                      message_ids: Sequence[int]) -> dict[int, list[FileRecord]]:
    return await svc.store.shares.message_files(workspace_id, message_ids)


# -- deleting -----------------------------------------------------------------------


async def delete_file(svc: Services, ident: Identity, workspace_id: int, file_id: int) -> None:
    """The uploader, or staff who can see it, deletes a file: its bytes go,
    and every message sharing it is updated to show it as removed.
    Deleting twice is not an error."""
    member = await require_member(svc, ident, workspace_id)
    f = await svc.store.files.file(workspace_id, file_id)
    if f is None or f.uploader_id != ident.user_id:
        # Visibility first (404 like a missing file), the permission after.
        f = await _shown(svc, member, workspace_id, file_id, f)
        if not allowed(member, Perm.DELETE_ANY_FILE):
            raise Forbidden("not_uploader", "only the uploader or an admin may delete a file")
    result = await svc.store.files.mark_file_deleted(workspace_id, file_id)
    if result is None:
        return  # deleted already
    gone, shared = result
    await _forget(svc, gone.key, gone.thumbnail_key, staging_key(workspace_id, file_id))
    items: list[tuple[str, bytes]] = []
    by_message = await svc.store.shares.message_files(workspace_id, [mid for _, mid in shared])
    for channel_id, message_id in shared:
        msg = await svc.store.messages.message(workspace_id, message_id)
        if msg is None or msg.deleted:
            continue
        items.append((events.channel_topic(channel_id), events.encode(
            events.MESSAGE_UPDATED, {"workspace_id": workspace_id, "channel_id": channel_id,
                                     "message": events.message_data(
                                         msg, by_message.get(message_id, []))})))
    await svc.publish_many(items)


# -- cleanup ------------------------------------------------------------------------


async def cleanup_stale_uploads(svc: Services, now: dt.datetime | None = None) -> int:
    """Remove uploads never completed within ``pending_upload_ttl_s``; how
    many.  Safe to run in several processes at once (compare-and-set)."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(seconds=svc.settings.pending_upload_ttl_s)
    removed = 0
    for f in await svc.store.files.stale_uploads(cutoff, CLEANUP_BATCH):
        if await svc.store.files.mark_file_deleted(f.workspace_id, f.id, only_pending=True):
            await _forget(svc, f.key)
            removed += 1
    return removed


async def cleanup_loop(svc: Services, interval_s: float = CLEANUP_INTERVAL_S) -> None:
    """Run ``cleanup_stale_uploads`` forever (started by the composition
    root's ``Runtime.start_maintenance``); failures are logged and retried."""
    while True:
        try:
            while await cleanup_stale_uploads(svc) >= CLEANUP_BATCH:
                pass  # a backlog: keep going
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("upload cleanup failed; retrying in %.0f s", interval_s, exc_info=True)
        await asyncio.sleep(interval_s)
