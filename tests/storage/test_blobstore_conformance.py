"""Conformance suite for ``parley.ports.blobs.BlobStore``.

Every contract test runs against ``LocalBlobStore`` (a temporary directory)
and ``S3BlobStore`` (moto's S3 server over HTTP, a fresh bucket per test).
moto does not check presigned signatures, policies or expiry, so:

* signatures and expiry are tested on the local store (``test_local_*``);
* for S3 the presign parameters are inspected (``test_s3_*``): expiry within
  bounds, the exact key, the size range and the response overrides.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import secrets
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from parley.ports.blobs import (
    MAX_DOWNLOAD_URL_TTL_S,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    InvalidKey,
)
from storage.blobs_local import URL_PREFIX, LocalBlobStore
from storage.blobs_s3 import S3BlobStore
from tests.fixtures.s3 import S3Endpoint

KINDS = ["local", "s3"]
MIB = 1024 * 1024
S3_TEST_PART = 5 * MIB  # S3's smallest part: makes multipart uploads cheap to test


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                clock: Clock) -> AsyncIterator[BlobStore]:
    s: BlobStore
    if request.param == "local":
        s = LocalBlobStore(tmp_path / "files", b"k" * 32, clock=clock)
    else:
        endpoint: S3Endpoint = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        s = S3BlobStore(bucket=bucket, endpoint=endpoint.url, region=endpoint.region,
                        access_key=endpoint.access_key, secret_key=endpoint.secret_key,
                        part_size=S3_TEST_PART)
    try:
        yield s
    finally:
        await s.close()


def key() -> str:
    return f"w/{secrets.randbelow(10**12) + 1}/{secrets.randbelow(10**12) + 1}"


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def read_all(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


async def test_put_then_get_returns_the_same_bytes(store: BlobStore) -> None:
    k = key()
    data = os.urandom(300_000)
    assert await store.put(k, chunks_of(data), max_size=len(data)) == len(data)
    assert await read_all(store.get(k)) == data
    info = await store.stat(k)
    assert info is not None and info.size == len(data)


async def test_put_streams_large_objects_in_parts(store: BlobStore) -> None:
    k = key()
    data = os.urandom(11 * MIB + 123)  # three parts of the S3 store
    assert await store.put(k, chunks_of(data, MIB), max_size=12 * MIB) == len(data)
    assert await read_all(store.get(k, chunk_size=MIB)) == data


async def test_empty_object(store: BlobStore) -> None:
    k = key()
    assert await store.put(k, chunks_of(b""), max_size=10) == 0
    info = await store.stat(k)
    assert info is not None and info.size == 0
    assert await read_all(store.get(k)) == b""


async def test_get_streams_a_range(store: BlobStore) -> None:
    k = key()
    data = bytes(range(256)) * 40
    await store.put(k, chunks_of(data), max_size=len(data))
    assert await read_all(store.get(k, offset=10, length=20)) == data[10:30]
    assert await read_all(store.get(k, length=16)) == data[:16]
    assert await read_all(store.get(k, offset=len(data) - 5)) == data[-5:]
    assert await read_all(store.get(k, offset=len(data) + 10, length=4)) == b""
    got = [c async for c in store.get(k, chunk_size=1000)]
    assert all(len(c) <= 1000 for c in got) and b"".join(got) == data


async def test_missing_objects(store: BlobStore) -> None:
    k = key()
    assert await store.stat(k) is None
    with pytest.raises(BlobNotFound):
        await read_all(store.get(k))
    await store.delete(k)  # idempotent: deleting nothing is fine


async def test_delete_removes_and_is_idempotent(store: BlobStore) -> None:
    k = key()
    await store.put(k, chunks_of(b"hello"), max_size=5)
    await store.delete(k)
    await store.delete(k)
    assert await store.stat(k) is None


async def test_move_replaces_the_target_and_removes_the_source(store: BlobStore) -> None:
    src, dst = key(), key()
    await store.put(src, chunks_of(b"new"), max_size=10)
    await store.put(dst, chunks_of(b"old"), max_size=10)
    await store.move(src, dst)
    assert await store.stat(src) is None
    assert await read_all(store.get(dst)) == b"new"
    with pytest.raises(BlobNotFound):
        await store.move(src, dst)
    assert await read_all(store.get(dst)) == b"new"


async def test_put_over_the_bound_stores_nothing(store: BlobStore) -> None:
    k = key()
    with pytest.raises(BlobTooLarge):
        await store.put(k, chunks_of(b"x" * 1001, 100), max_size=1000)
    assert await store.stat(k) is None
    # Past a multipart part too: the upload is aborted, nothing appears.
    big = os.urandom(6 * MIB)
    with pytest.raises(BlobTooLarge):
        await store.put(k, chunks_of(big, MIB), max_size=6 * MIB - 1)
    assert await store.stat(k) is None


async def test_put_is_atomic_for_readers(store: BlobStore) -> None:
    k = key()
    await store.put(k, chunks_of(b"old"), max_size=10)
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"new "
        await release.wait()
        yield b"bytes"

    task = asyncio.create_task(store.put(k, slow(), max_size=100))
    await asyncio.sleep(0.05)
    assert await read_all(store.get(k)) == b"old"  # never a prefix of the new one
    release.set()
    assert await task == 9
    assert await read_all(store.get(k)) == b"new bytes"


async def test_a_failing_upload_leaves_the_previous_object(store: BlobStore) -> None:
    k = key()
    await store.put(k, chunks_of(b"kept"), max_size=10)

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(k, broken(), max_size=100)
    assert await read_all(store.get(k)) == b"kept"


BAD_KEYS: Iterable[str] = ("", "../etc/passwd", "/abs", "w/1/../../x", "w//1", "w/1/",
                           ".hidden", "w/.tmp/x", "w\\1", "w/1/\x00", "w/ 1",
                           "a/" * 9 + "b", "x" * 300, "w/%2e%2e/x")


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_invalid_keys_are_refused_before_any_io(store: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put(bad, chunks_of(b"x"), max_size=1)
    with pytest.raises(InvalidKey):
        await store.stat(bad)
    with pytest.raises(InvalidKey):
        await store.delete(bad)
    with pytest.raises(InvalidKey):
        await store.move(bad, key())
    with pytest.raises(InvalidKey):
        await store.move(key(), bad)
    with pytest.raises(InvalidKey):
        await read_all(store.get(bad))
    with pytest.raises(InvalidKey):
        await store.download_url(bad, content_type="text/plain", disposition="attachment",
                                 expires_s=60)
    with pytest.raises(InvalidKey):
        await store.upload_ticket(bad, max_size=1, content_type="text/plain", expires_s=60)


def _params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_upload_ticket_uploads_the_bound_key(store: BlobStore) -> None:
    """A client following the ticket stores its bytes under exactly that key."""
    k = key()
    data = b"\x89PNG fake image bytes"
    ticket = await store.upload_ticket(k, max_size=len(data), content_type="image/png",
                                       expires_s=600)
    if store.served_by_api:
        assert ticket.method == "PUT" and ticket.url.startswith(URL_PREFIX + k + "?")
        grant = store.verify("put", k, _params(ticket.url))
        assert grant is not None and grant.max_size == len(data)
        await store.put(k, chunks_of(data), max_size=grant.max_size)
    else:
        assert ticket.method == "POST"
        assert ticket.fields["key"] == k
        async with httpx.AsyncClient() as http:
            resp = await http.post(ticket.url, data=dict(ticket.fields),
                                   files={"file": ("x.png", data, "image/png")})
        assert resp.status_code in (200, 201, 204), resp.text
        assert store.verify("put", k, {}) is None  # S3 checks its own signatures
    assert await read_all(store.get(k)) == data


async def test_download_url_overrides_type_and_disposition(store: BlobStore) -> None:
    k = key()
    await store.put(k, chunks_of(b"<svg onload=alert(1)>"), max_size=100,
                    content_type="image/svg+xml")
    disp = 'attachment; filename="x.svg"'
    url = await store.download_url(k, content_type="application/octet-stream",
                                   disposition=disp, expires_s=300)
    if store.served_by_api:
        grant = store.verify("get", k, _params(url))
        assert grant is not None
        assert (grant.content_type, grant.disposition) == ("application/octet-stream", disp)
    else:
        async with httpx.AsyncClient() as http:
            resp = await http.get(url)
        assert resp.status_code == 200
        assert resp.content == b"<svg onload=alert(1)>"
        assert resp.headers["content-type"] == "application/octet-stream"
        assert resp.headers["content-disposition"] == disp


# -- local store: signatures and expiry ------------------------------------------


@pytest.fixture
def local(tmp_path: Path, clock: Clock) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "files", b"s" * 32, clock=clock)


async def test_local_signature_covers_every_parameter(local: LocalBlobStore) -> None:
    k = key()
    url = await local.download_url(k, content_type="image/png", disposition="inline",
                                   expires_s=60)
    good = _params(url)
    assert local.verify("get", k, good) is not None
    for name, value in (("ct", "text/html"), ("cd", "inline; x"), ("exp", "9999999999"),
                        ("op", "put"), ("sig", good["sig"][:-2] + "AA"), ("sig", "")):
        assert local.verify("get", k, {**good, name: value}) is None, name
    assert local.verify("get", key(), good) is None  # another key
    assert local.verify("put", k, good) is None  # another operation
    other = LocalBlobStore(local.root, b"another secret" * 3)
    assert other.verify("get", k, good) is None  # another server secret


async def test_local_urls_expire(local: LocalBlobStore, clock: Clock) -> None:
    k = key()
    url = await local.download_url(k, content_type="image/png", disposition="inline",
                                   expires_s=60)
    put = await local.upload_ticket(k, max_size=10, content_type="image/png", expires_s=60)
    clock.now += 59
    assert local.verify("get", k, _params(url)) is not None
    assert local.verify("put", k, _params(put.url)) is not None
    clock.now += 2
    assert local.verify("get", k, _params(url)) is None
    assert local.verify("put", k, _params(put.url)) is None


async def test_local_download_urls_live_at_most_15_minutes(local: LocalBlobStore,
                                                           clock: Clock) -> None:
    url = await local.download_url(key(), content_type="image/png", disposition="inline",
                                   expires_s=24 * 3600)
    assert int(_params(url)["exp"]) <= clock.now + MAX_DOWNLOAD_URL_TTL_S


async def test_local_store_keeps_files_inside_its_root(local: LocalBlobStore,
                                                       tmp_path: Path) -> None:
    k = key()
    await local.put(k, chunks_of(b"data"), max_size=10)
    assert (local.root / k).read_bytes() == b"data"
    assert not any(local.tmp.iterdir())  # no temporary file left behind
    with pytest.raises(InvalidKey):
        await local.stat(".tmp/x")


# -- S3: presign parameters (moto does not check them) ------------------------------


@pytest.fixture
async def s3(s3_server: S3Endpoint, s3_bucket: str) -> AsyncIterator[S3BlobStore]:
    s = S3BlobStore(bucket=s3_bucket, endpoint=s3_server.url, region=s3_server.region,
                    access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    try:
        yield s
    finally:
        await s.close()


async def test_s3_presigned_post_binds_key_type_size_and_expiry(s3: S3BlobStore) -> None:
    k = key()
    before = dt.datetime.now(dt.UTC)
    ticket = await s3.upload_ticket(k, max_size=1234, content_type="image/png", expires_s=600)
    policy = json.loads(base64.b64decode(ticket.fields["policy"]))
    conditions = policy["conditions"]
    assert {"key": k} in conditions  # the exact key, not a prefix (no starts-with)
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)
    assert ["content-length-range", 0, 1234] in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert {"bucket": s3.bucket} in conditions
    expires = dt.datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert dt.timedelta(seconds=590) <= expires - before <= dt.timedelta(seconds=610)
    assert ticket.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"


async def test_s3_presigned_get_is_short_and_overrides_headers(s3: S3BlobStore) -> None:
    k = key()
    url = await s3.download_url(k, content_type="image/png", disposition="inline",
                                expires_s=24 * 3600)
    parts = urlsplit(url)
    q = _params(url)
    assert parts.path == f"/{s3.bucket}/{k}"
    assert int(q["X-Amz-Expires"]) <= MAX_DOWNLOAD_URL_TTL_S
    assert q["response-content-type"] == "image/png"
    assert q["response-content-disposition"] == "inline"
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"


async def test_s3_aborted_uploads_leave_no_parts(s3: S3BlobStore, s3_server: S3Endpoint,
                                                 s3_bucket: str) -> None:
    k = key()
    with pytest.raises(BlobTooLarge):
        await s3.put(k, chunks_of(os.urandom(9 * MIB), MIB), max_size=9 * MIB - 1)
    client = s3_server.client()
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
