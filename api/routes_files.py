"""Files: request an upload, upload (straight to storage with the ticket, or
streamed through the API), complete, read, download, delete, a channel's
files and the workspace's limits; plus the signed URLs of the local blob
store (``/v1/blobs/...``), which only a store that the API serves issues.

Downloads answer 302 to a presigned URL of at most 15 minutes (S3) or the
bytes themselves (local store), always with ``X-Content-Type-Options:
nosniff``, ``Content-Security-Policy: sandbox`` and no caching; the bytes
carry the sniffed Content-Type and ``Content-Disposition: attachment``
unless they are a safe image type.

The two upload bodies (``PUT .../content`` and ``PUT /v1/blobs/...``) are
streamed: they bypass the 1 MiB JSON body limit (``STREAMED_PATHS``, used
by ``api.app``) and are bounded by the file's declared size instead.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from api.deps import Auth, Mutator, Svc, limit_by_address
from api.params import Id, IdPath, PageSize
from api.schemas import (
    ErrorEnvelope,
    FileLimitsIn,
    FileLimitsOut,
    FileList,
    FileOut,
    UploadIn,
    UploadOut,
    UploadTicketOut,
)
from parley.actions import files
from parley.errors import InvalidInput
from parley.services import Services

WS = "/v1/workspaces/{workspace_id}"
FILE = WS + "/files/{file_id}"
BLOB = "/v1/blobs/{key:path}"
#: Request bodies streamed by these routes, not buffered (see ``api.app``).
STREAMED_PATHS = re.compile(r"^/v1/(workspaces/[^/]+/files/[^/]+/content|blobs/.*)$")

#: Headers of every download answer (the bytes, or the redirect to them): the
#: browser must not sniff, run or cache what it gets (docs/architecture.md, Files).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    "Cache-Control": "private, no-store",
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The bytes (local store): sniffed Content-Type, Content-Disposition",
          "content": {"application/octet-stream": _BINARY}},
    302: {"description": "Redirect to a presigned GET of at most 15 minutes (S3)"},
}
_UPLOAD_BODY = {"requestBody": {"required": True,
                                "content": {"application/octet-stream": _BINARY}}}

router = APIRouter(tags=["files"], responses={
    415: {"model": ErrorEnvelope,
          "description": "The file's type is not allowed (`file_type_not_allowed`)"}})

Cursor = Annotated[Id | None, Query(description="From next_cursor")]
Key = Annotated[str, Path(min_length=1, max_length=256, description="A blob key")]
Signed = Annotated[str | None, Query(max_length=512,
                                     description="Part of the signed URL, as issued")]


def _absolute(request: Request, url: str) -> str:
    return str(request.base_url).rstrip("/") + url if url.startswith("/") else url


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit takes "²", int() does not
        raise InvalidInput("invalid_request", "Content-Length must be a number")
    return int(raw)


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise InvalidInput("upload_interrupted", "the client went away mid-upload") from exc


async def _answer(s: Services, d: files.Download) -> Response:
    headers = dict(SECURITY_HEADERS)
    if d.url is not None:
        return RedirectResponse(d.url, status_code=302, headers=headers)
    body = await files.open_stream(s, d.key)
    headers["Content-Disposition"] = d.disposition
    if d.size is not None:
        headers["Content-Length"] = str(d.size)
    return StreamingResponse(body, media_type=d.content_type, headers=headers)


# -- limits -------------------------------------------------------------------------


@router.get(WS + "/file-limits", response_model=FileLimitsOut)
async def get_limits(workspace_id: IdPath, me: Auth, s: Svc) -> FileLimitsOut:
    """The workspace's file limits: the largest size and the allowed types."""
    return FileLimitsOut.of(await files.limits(s, me, workspace_id))


@router.put(WS + "/file-limits", response_model=FileLimitsOut)
async def set_limits(workspace_id: IdPath, body: FileLimitsIn, me: Mutator,
                     s: Svc) -> FileLimitsOut:
    """Staff tighten the workspace's file limits (null: the server's)."""
    return FileLimitsOut.of(await files.set_limits(s, me, workspace_id, body.max_file_bytes,
                                                   body.allowed_types))


# -- upload -------------------------------------------------------------------------


@router.post(WS + "/files", status_code=201, response_model=UploadOut)
async def request_upload(workspace_id: IdPath, body: UploadIn, me: Mutator, s: Svc,
                         request: Request) -> UploadOut:
    """Start an upload: a pending file and a short-lived ticket to upload
    exactly `size` bytes to it.  Then either follow the ticket and
    `POST .../complete`, or `PUT` the bytes to `content_url`.  Size and type
    over the limits are refused here, before any byte is sent."""
    start = await files.request_upload(s, me, workspace_id, body.name, body.size,
                                       body.content_type)
    t = start.ticket
    base = f"/v1/workspaces/{workspace_id}/files/{start.file.id}"
    return UploadOut(
        file=FileOut.of(start.file),
        upload=UploadTicketOut(method="PUT" if t.method == "PUT" else "POST",
                               url=_absolute(request, t.url), fields=dict(t.fields),
                               headers=dict(t.headers), expires_ts=int(t.expires_at * 1000)),
        content_url=base + "/content", complete_url=base + "/complete")


@router.post(FILE + "/complete", response_model=FileOut)
async def complete_upload(workspace_id: IdPath, file_id: IdPath, me: Mutator,
                          s: Svc) -> FileOut:
    """After a direct upload: the server checks the stored size, sniffs the
    type from the bytes and makes a thumbnail for images.  Idempotent."""
    return FileOut.of(await files.complete_upload(s, me, workspace_id, file_id))


@router.put(FILE + "/content", response_model=FileOut, openapi_extra=_UPLOAD_BODY)
async def upload_content(workspace_id: IdPath, file_id: IdPath, me: Mutator, s: Svc,
                         request: Request) -> FileOut:
    """Upload the bytes through the API (for clients that cannot reach the
    storage): streamed, never buffered whole; more bytes than declared
    answer 413.  Completes the upload."""
    return FileOut.of(await files.upload_content(s, me, workspace_id, file_id, _body(request),
                                                 _content_length(request)))


# -- reading ------------------------------------------------------------------------


@router.get(FILE, response_model=FileOut)
async def get_file(workspace_id: IdPath, file_id: IdPath, me: Auth, s: Svc) -> FileOut:
    """A file you uploaded, or one shared in a message you can see."""
    return FileOut.of(await files.get_file(s, me, workspace_id, file_id))


@router.get(FILE + "/download", response_class=Response, responses=_DOWNLOAD_RESPONSES)
async def download(workspace_id: IdPath, file_id: IdPath, me: Auth, s: Svc) -> Response:
    """The file's bytes, if you may see it (checked on every request)."""
    return await _answer(s, await files.download(s, me, workspace_id, file_id))


@router.get(FILE + "/thumbnail", response_class=Response, responses=_DOWNLOAD_RESPONSES)
async def thumbnail(workspace_id: IdPath, file_id: IdPath, me: Auth, s: Svc) -> Response:
    """An image's PNG thumbnail (at most 360 x 360)."""
    return await _answer(s, await files.download(s, me, workspace_id, file_id,
                                                 thumbnail=True))


@router.get(WS + "/channels/{channel_id}/files", response_model=FileList)
async def channel_files(
    workspace_id: IdPath, channel_id: IdPath, me: Auth, s: Svc, cursor: Cursor = None,
    limit: Annotated[PageSize, Query(le=files.CHANNEL_FILES_PAGE_MAX,
                                     description="Page size")] = 50,
) -> FileList:
    """Files shared in the channel's messages, newest first."""
    page = await files.list_channel_files(s, me, workspace_id, channel_id, cursor, limit)
    nxt = str(page[-1].id) if len(page) == limit else None
    return FileList(files=[FileOut.of(f) for f in page], next_cursor=nxt)


@router.delete(FILE, status_code=204)
async def delete_file(workspace_id: IdPath, file_id: IdPath, me: Mutator, s: Svc) -> Response:
    """Delete your file (staff: any they can see).  Its messages show it as
    removed.  Deleting twice is fine."""
    await files.delete_file(s, me, workspace_id, file_id)
    return Response(status_code=204)


# -- signed URLs of the local store -------------------------------------------------


def _signed(op: str | None, exp: str | None, max_: str | None, ct: str | None,
            cd: str | None, sig: str | None) -> dict[str, str]:
    given = {"op": op, "exp": exp, "max": max_, "ct": ct, "cd": cd, "sig": sig}
    return {k: v for k, v in given.items() if v is not None}


@router.get(BLOB, response_class=Response,
            responses={200: {"description": "The bytes, as the signature says",
                             "content": {"application/octet-stream": _BINARY}}})
async def signed_download(key: Key, s: Svc, op: Signed = None, exp: Signed = None,
                          ct: Signed = None, cd: Signed = None,
                          sig: Signed = None) -> Response:
    """A signed, expiring download URL of the local store (the signature is
    the grant; it names the Content-Type and Content-Disposition)."""
    grant = files.signed_grant(s, "get", key, _signed(op, exp, None, ct, cd, sig))
    headers = dict(SECURITY_HEADERS)
    headers["Content-Disposition"] = grant.disposition or "attachment"
    body = await files.open_stream(s, key)
    return StreamingResponse(body, media_type=grant.content_type or "application/octet-stream",
                             headers=headers)


@router.put(BLOB, status_code=204, openapi_extra=_UPLOAD_BODY,
            dependencies=[Depends(limit_by_address)])
async def signed_upload(key: Key, s: Svc, request: Request, op: Signed = None,
                        exp: Signed = None,
                        max_size: Annotated[str | None, Query(
                            alias="max", max_length=32,
                            description="Part of the signed URL, as issued")] = None,
                        sig: Signed = None) -> Response:
    """A signed, expiring upload URL of the local store: the raw bytes as the
    body, at most the signed size.  Then complete the upload."""
    await files.signed_upload(s, key, _signed(op, exp, max_size, None, None, sig), _body(request),
                              _content_length(request))
    return Response(status_code=204)
