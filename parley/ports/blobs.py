"""The ``BlobStore`` contract: where file bytes live.

Rules for this file (the same as for every port, see ``parley/ports/__init__.py``):

* It imports nothing of ours; the composition root and the actions import it.
* The ``BlobStore`` docstring is the contract; one conformance suite
  (``tests/storage/test_blobstore_conformance.py``) checks it against every
  implementation (``blobs_local.py`` on disk, ``blobs_s3.py`` against a real
  S3 HTTP endpoint) with per-test isolation.

Theory of operation
-------------------
PostgreSQL holds what a file *is* (name, size, type, state, who may see it);
the blob store holds only bytes under an opaque **key**.  Keys are generated
by the server (``w/<workspace id>/<file id>``, never from a file name) and
every store refuses a key outside ``KEY_RE``, so a key can never name a path
outside the store.

Bytes reach a store two ways:

* **Direct**: the client is handed an ``UploadTicket`` (a presigned S3 POST,
  or an HMAC-signed PUT URL that the API serves for the local store) bound to
  one key, a size bound and a short expiry, and uploads without the API in
  the middle.  The server then ``stat``s the object and reads its first bytes
  before trusting it.
* **Streamed through the API**: ``put`` consumes an async iterator of chunks
  and never holds the whole object (S3: multipart upload, one part buffered;
  local: chunks appended to a temporary file, renamed into place).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: Keys every store accepts: 1-8 segments of ``[A-Za-z0-9._-]`` that start with
#: a letter or digit (so never ``.`` or ``..``), joined by ``/``; at most 256
#: characters.  Server-generated keys are ``w/<workspace id>/<file id>[.thumb]``.
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,7}$")
KEY_MAX = 256
#: The longest a download URL may live: a URL handed out stays usable that
#: long even if the caller loses access, so it is short.
MAX_DOWNLOAD_URL_TTL_S = 15 * 60
#: The longest an upload ticket may live.
MAX_UPLOAD_URL_TTL_S = 60 * 60


def valid_key(key: str) -> bool:
    return len(key) <= KEY_MAX and KEY_RE.fullmatch(key) is not None


class BlobError(Exception):
    """Base of the errors a store raises on purpose."""


class BlobNotFound(BlobError):
    """No object under that key."""


class BlobTooLarge(BlobError):
    """A streamed ``put`` passed its ``max_size``; nothing was stored."""


class InvalidKey(BlobError, ValueError):
    """The key is not a valid server-generated key (``KEY_RE``)."""


class BlobUnavailable(BlobError):
    """The storage service cannot be reached or failed; retrying may work."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    size: int  # bytes
    content_type: str | None  # as stored (the uploader's claim: never trusted)


@dataclass(frozen=True, slots=True)
class UploadTicket:
    """How a client uploads directly.

    ``method`` ``"POST"``: an HTML-form POST to ``url`` with ``fields`` first
    and the file last (a presigned S3 POST).  ``method`` ``"PUT"``: the raw
    bytes as the body of a PUT to ``url`` with ``headers``.  A ``url`` that
    starts with ``/`` is relative to the API's base URL (a store whose URLs
    the API serves).
    """

    method: str  # 'POST' | 'PUT'
    url: str
    expires_at: float  # unix seconds
    fields: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignedGrant:
    """What a verified signed URL of an API-served store allows."""

    op: str  # 'put' | 'get'
    key: str
    max_size: int | None = None  # put: the most bytes accepted
    content_type: str | None = None  # get: the Content-Type to answer with
    disposition: str | None = None  # get: the Content-Disposition to answer with


class BlobStore(Protocol):
    """Bytes by key.

    Contract, for every implementation:

    * **Keys** are validated on every call: anything outside ``KEY_RE``
      raises ``InvalidKey`` before any I/O.
    * ``put`` is **atomic**: readers see the whole new object or the previous
      state, never a prefix.  It consumes ``chunks`` without holding the
      whole object in memory, and when more than ``max_size`` bytes arrive it
      stores nothing and raises ``BlobTooLarge``.  Returns the size stored.
    * ``get`` streams ``[offset, offset + length)`` (to the end when
      ``length`` is None) in chunks of at most ``chunk_size`` bytes; a
      missing key raises ``BlobNotFound`` before the first chunk.
    * ``stat`` is None for a missing key; ``delete`` is idempotent.
    * ``move`` gives ``dst`` the bytes of ``src`` (readers of ``dst`` see the
      old object or the whole new one) and removes ``src``; a missing ``src``
      raises ``BlobNotFound`` and changes nothing.  Not atomic across the two
      keys: a crash may leave both.
    * ``upload_ticket`` binds one key, at most ``max_size`` bytes and an
      expiry of at most ``MAX_UPLOAD_URL_TTL_S``; nothing is written until
      the client uploads.  What arrives is not trusted: the caller ``stat``s
      and sniffs it afterwards.
    * ``download_url`` is valid for at most ``MAX_DOWNLOAD_URL_TTL_S``
      (longer requests are clamped) and answers with exactly the given
      ``content_type`` and ``disposition``, whatever the object was uploaded
      with.
    * ``served_by_api`` is True when the URLs point at the API itself (the
      local store): the API checks them with ``verify`` and streams bytes.
      Otherwise (S3) the URLs point at the storage service, which checks its
      own signatures, and ``verify`` always answers None.
    * ``verify`` answers the grant of a signed URL only when its signature
      matches (compared in constant time), it has not expired and it was
      issued for ``op`` and ``key``; else None.
    * Failures of the service raise ``BlobUnavailable`` (retryable).
    """

    @property
    def served_by_api(self) -> bool: ...

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_size: int,
                  content_type: str = "application/octet-stream") -> int: ...

    def get(self, key: str, *, offset: int = 0, length: int | None = None,
            chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]: ...

    async def stat(self, key: str) -> BlobInfo | None: ...

    async def delete(self, key: str) -> None: ...

    async def move(self, src: str, dst: str) -> None: ...

    async def upload_ticket(self, key: str, *, max_size: int, content_type: str,
                            expires_s: int) -> UploadTicket: ...

    async def download_url(self, key: str, *, content_type: str, disposition: str,
                           expires_s: int) -> str: ...

    def verify(self, op: str, key: str, params: Mapping[str, str]) -> SignedGrant | None: ...

    async def close(self) -> None:
        """Release clients and threads.  Idempotent."""
