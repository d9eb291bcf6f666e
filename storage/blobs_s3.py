"""``BlobStore`` on S3 or any S3-compatible service (MinIO, moto in tests),
through boto3.

Rules of this file:

* boto3 is blocking: every call runs on this store's own thread pool
  (``_run``), never on the event loop; the pool is as wide as the HTTP
  connection pool, so no call waits for a connection while holding a thread.
* ``put`` never holds more than one part in memory: up to ``PART_SIZE`` bytes
  are buffered, anything larger goes up as a multipart upload, which is
  aborted on failure or when the size bound is passed (S3 then stores
  nothing: an object appears only on ``CompleteMultipartUpload``).
* Presigned uploads are POST policies bound to the exact key, the exact
  Content-Type and a ``content-length-range``; presigned downloads are GETs of
  at most ``MAX_DOWNLOAD_URL_TTL_S`` that override Content-Type and
  Content-Disposition (S3's ``response-content-*`` parameters), so the
  uploader's claimed type is never what a browser sees.
* S3 checks its own signatures; ``verify`` never grants anything.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from parley.ports.blobs import (
    MAX_DOWNLOAD_URL_TTL_S,
    MAX_UPLOAD_URL_TTL_S,
    BlobInfo,
    BlobNotFound,
    BlobTooLarge,
    BlobUnavailable,
    InvalidKey,
    SignedGrant,
    UploadTicket,
    valid_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

PART_SIZE = 8 * 1024 * 1024  # multipart part size (S3's minimum is 5 MiB, except the last)
MAX_PARTS = 10_000  # S3's limit per multipart upload
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Objects in one bucket; keys as given (already workspace-prefixed)."""

    served_by_api = False

    def __init__(self, *, bucket: str, endpoint: str = "", region: str = "us-east-1",
                 access_key: str = "", secret_key: str = "", max_workers: int = 16,
                 part_size: int = PART_SIZE) -> None:
        if not bucket:
            raise ValueError("an S3 bucket is required")
        self.bucket = bucket
        self.part_size = part_size
        config = botocore.config.Config(
            signature_version="s3v4", s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max_workers, connect_timeout=5, read_timeout=60)
        self._client: S3Client = boto3.client(
            "s3", endpoint_url=endpoint or None, region_name=region,
            aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None,
            config=config)
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="parley-s3")
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kw))
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _MISSING:
                raise BlobNotFound(str(exc)) from exc
            raise BlobUnavailable(str(exc)) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise BlobUnavailable(str(exc)) from exc

    @staticmethod
    def _check(key: str) -> None:
        if not valid_key(key):
            raise InvalidKey(f"invalid blob key {key!r}")

    # -- bytes ---------------------------------------------------------------

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_size: int,
                  content_type: str = "application/octet-stream") -> int:
        self._check(key)
        c = self._client
        part_size = max(self.part_size, -(-max_size // MAX_PARTS))
        buf = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def flush(data: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                created = await self._run(c.create_multipart_upload, Bucket=self.bucket,
                                          Key=key, ContentType=content_type)
                upload_id = created["UploadId"]
            n = len(parts) + 1
            resp = await self._run(c.upload_part, Bucket=self.bucket, Key=key,
                                   UploadId=upload_id, PartNumber=n, Body=data)
            parts.append({"PartNumber": n, "ETag": resp["ETag"]})

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise BlobTooLarge(f"more than {max_size} bytes")
                buf += chunk
                while len(buf) >= part_size:
                    data = bytes(buf[:part_size])
                    del buf[:part_size]
                    await flush(data)
            if upload_id is None:
                await self._run(c.put_object, Bucket=self.bucket, Key=key, Body=bytes(buf),
                                ContentType=content_type)
            else:
                if buf:
                    await flush(bytes(buf))
                await self._run(c.complete_multipart_upload, Bucket=self.bucket, Key=key,
                                UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                # Shielded: a cancelled request must not leave parts behind.
                await asyncio.shield(self._abort(key, upload_id))
            raise
        return size

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._run(self._client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                            UploadId=upload_id)
        except (BlobUnavailable, BlobNotFound):
            pass  # a bucket lifecycle rule for incomplete uploads is the backstop

    async def get(self, key: str, *, offset: int = 0, length: int | None = None,
                  chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        self._check(key)
        kw: dict[str, Any] = {}
        if length is not None:
            if length <= 0:
                if await self.stat(key) is None:
                    raise BlobNotFound(key)
                return
            kw["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            kw["Range"] = f"bytes={offset}-"
        try:
            resp = await self._run(self._client.get_object, Bucket=self.bucket, Key=key, **kw)
        except BlobUnavailable as exc:
            cause = exc.__cause__
            if (isinstance(cause, botocore.exceptions.ClientError)
                    and _code(cause) == "InvalidRange"):
                return  # offset at or past the end: nothing to read
            raise
        body = resp["Body"]
        try:
            while True:
                chunk = await self._run(body.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            await self._run(body.close)

    async def stat(self, key: str) -> BlobInfo | None:
        self._check(key)
        try:
            head = await self._run(self._client.head_object, Bucket=self.bucket, Key=key)
        except BlobNotFound:
            return None
        return BlobInfo(size=int(head["ContentLength"]), content_type=head.get("ContentType"))

    async def delete(self, key: str) -> None:
        self._check(key)
        await self._run(self._client.delete_object, Bucket=self.bucket, Key=key)

    async def move(self, src: str, dst: str) -> None:
        self._check(src)
        self._check(dst)
        # The managed copy switches to a multipart copy above 5 GiB (S3's
        # single-request limit); the bytes never pass through this process.
        await self._run(self._client.copy, {"Bucket": self.bucket, "Key": src}, self.bucket,
                        dst)
        await self._run(self._client.delete_object, Bucket=self.bucket, Key=src)

    # -- presigned URLs --------------------------------------------------------

    async def upload_ticket(self, key: str, *, max_size: int, content_type: str,
                            expires_s: int) -> UploadTicket:
        self._check(key)
        ttl = max(1, min(expires_s, MAX_UPLOAD_URL_TTL_S))
        post = await self._run(
            self._client.generate_presigned_post, self.bucket, key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type},
                        ["content-length-range", 0, max_size]],
            ExpiresIn=ttl)
        return UploadTicket(method="POST", url=post["url"], expires_at=time.time() + ttl,
                            fields=dict(post["fields"]))

    async def download_url(self, key: str, *, content_type: str, disposition: str,
                           expires_s: int) -> str:
        self._check(key)
        ttl = max(1, min(expires_s, MAX_DOWNLOAD_URL_TTL_S))
        url: str = await self._run(
            self._client.generate_presigned_url, "get_object",
            Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type,
                    "ResponseContentDisposition": disposition},
            ExpiresIn=ttl, HttpMethod="GET")
        return url

    def verify(self, op: str, key: str, params: Mapping[str, str]) -> SignedGrant | None:
        return None  # S3 checks its own signatures; the API serves no S3 URL

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        self._client.close()
