"""Files through the real API (HTTP and WebSocket), on both blob stores:
the local disk (``parley``) and S3 (``parley_s3``: moto's S3 server over
HTTP).  Clients follow the upload tickets and download redirects exactly as
a browser would, with a plain HTTP client.

Covered: both upload paths (ticket + complete, streamed through the API),
completion checks (wrong size, missing bytes, a lying content type), server
and workspace limits, thumbnails (a decompression bomb and a timeout
included), authorization (another workspace, a private channel, a guest,
after removal), deletion, the cleanup of stale uploads, and the security
headers of every download.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import json
import os
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from parley.actions import files as file_actions
from server.runner import Running
from storage import thumbnails
from tests.api.helpers import Team, User, drain, expect, make_team, settle

STORES = ["local", "s3"]


@pytest.fixture(params=STORES)
def app(request: pytest.FixtureRequest) -> Running:
    name = "parley" if request.param == "local" else "parley_s3"
    running: Running = request.getfixturevalue(name)
    return running


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (2.5
    gigapixels: decoding it would need gigabytes).  Made with Pillow, then
    the IHDR dimensions are rewritten and its CRC fixed."""
    data = bytearray(png(1, 1))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


async def request_upload(t: Team, user: User, size: int, name: str = "photo.png",
                         content_type: str = "image/png", status: int = 201,
                         err: str | None = None, ws: str | None = None) -> Any:
    return await expect(user.api, "POST", t.w("/files", ws), status, err,
                        json={"name": name, "size": size, "content_type": content_type})


async def follow_ticket(started: dict[str, Any], data: bytes) -> httpx.Response:
    """Upload straight to storage as a client would: a form POST (S3) or a
    PUT (the local store, served by the API)."""
    ticket = started["upload"]
    async with httpx.AsyncClient(timeout=30) as http:
        if ticket["method"] == "POST":
            return await http.post(ticket["url"], data=ticket["fields"],
                                   files={"file": ("upload", data, "application/octet-stream")})
        return await http.put(ticket["url"], content=data, headers=ticket["headers"])


async def upload(t: Team, user: User, data: bytes, name: str = "photo.png",
                 content_type: str = "image/png", ws: str | None = None) -> dict[str, Any]:
    started = await request_upload(t, user, len(data), name, content_type, ws=ws)
    resp = await follow_ticket(started, data)
    assert resp.status_code in (200, 201, 204), resp.text
    done: dict[str, Any] = await expect(user.api, "POST", started["complete_url"], 200)
    return done


async def share(t: Team, user: User, channel: str, *file_ids: str,
                text: str = "") -> dict[str, Any]:
    return await t.post(user, channel, text, file_ids=list(file_ids))


async def raw_download(user: User, path: str) -> httpx.Response:
    """GET without following redirects (to look at the redirect itself)."""
    return await user.api.http.get(path, follow_redirects=False)


async def fetch(user: User, path: str) -> httpx.Response:
    """Download as a browser would: follow the redirect, if any, to storage
    with a client that carries no token."""
    resp = await raw_download(user, path)
    assert resp.status_code in (200, 302), (resp.status_code, resp.text)
    if resp.status_code == 302:
        async with httpx.AsyncClient() as plain:
            resp = await plain.get(resp.headers["location"])
        assert resp.status_code == 200, resp.text
    return resp


def assert_safe_headers(resp: httpx.Response) -> None:
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["content-security-policy"] == "sandbox"
    assert "no-store" in resp.headers["cache-control"]


# -- uploads ------------------------------------------------------------------------


async def test_direct_upload_complete_and_download(app: Running) -> None:
    t = await make_team(app)
    image = png()
    started = await request_upload(t, t.bob, len(image), "ünïcode \"photo\".png")
    assert started["file"]["state"] == "pending" and started["file"]["content_type"] is None
    await expect(t.bob.api, "POST", started["complete_url"], 409, "upload_missing")
    assert (await follow_ticket(started, image)).status_code in (200, 201, 204)
    f = await expect(t.bob.api, "POST", started["complete_url"], 200)
    assert (f["state"], f["content_type"], f["size"]) == ("ready", "image/png", len(image))
    assert (f["width"], f["height"], f["has_thumbnail"]) == (64, 48, True)
    again = await expect(t.bob.api, "POST", started["complete_url"], 200)  # idempotent
    assert again == f

    direct = await raw_download(t.bob, f["url"])
    assert_safe_headers(direct)  # the redirect too: it is per-user authorization
    resp = await fetch(t.bob, f["url"])
    assert resp.content == image
    assert resp.headers["content-type"] == "image/png"
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith("inline;")  # a safe image type
    assert "filename*=UTF-8''%C3%BCn%C3%AFcode%20%22photo%22.png" in disposition
    if direct.status_code == 302:  # S3: a presigned GET of at most 15 minutes
        q = parse_qs(urlsplit(direct.headers["location"]).query)
        assert int(q["X-Amz-Expires"][0]) <= 15 * 60
    else:
        assert_safe_headers(resp)
    await t.close()


async def test_streamed_upload_through_the_api(app: Running) -> None:
    t = await make_team(app)
    data = os.urandom(9 * 1024 * 1024 + 17)  # S3: a multipart upload of two parts

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i:i + 256 * 1024]

    started = await request_upload(t, t.bob, len(data), "blob.bin", "application/x-thing")
    f = await expect(t.bob.api, "PUT", started["content_url"], 200, content=body())
    assert (f["state"], f["content_type"], f["size"]) == ("ready", "application/octet-stream",
                                                          len(data))
    resp = await fetch(t.bob, f["url"])
    assert resp.content == data
    assert resp.headers["content-disposition"].startswith("attachment;")
    assert resp.headers["content-type"] == "application/octet-stream"
    await expect(t.bob.api, "PUT", started["content_url"], 409, "file_already_complete",
                 content=b"x")
    await t.close()


async def test_streamed_upload_is_bounded_by_the_declared_size(parley: Running) -> None:
    t = await make_team(parley)
    started = await request_upload(t, t.bob, 1000, "a.txt", "text/plain")
    # Content-Length over the bound: refused before a byte is read.
    await expect(t.bob.api, "PUT", started["content_url"], 413, "file_too_large",
                 content=b"x" * 2000)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b"y" * 100

    await expect(t.bob.api, "PUT", started["content_url"], 413, "file_too_large",
                 content=chunked())
    f = await expect(t.bob.api, "GET", t.w(f"/files/{started['file']['id']}"), 200)
    assert f["state"] == "pending"  # nothing was stored; the upload may be retried
    f = await expect(t.bob.api, "PUT", started["content_url"], 200, content=b"z" * 1000)
    assert (f["state"], f["content_type"]) == ("ready", "text/plain")
    # Someone else's pending upload cannot be written.
    other = await request_upload(t, t.bob, 10, "b.txt", "text/plain")
    await expect(t.carol.api, "PUT", other["content_url"], 404, "file_not_found",
                 content=b"0123456789")
    await t.close()


async def test_big_bodies_are_refused_on_json_routes_but_not_uploads(parley: Running) -> None:
    t = await make_team(parley)
    size = 3 * 1024 * 1024  # over the 1 MiB JSON body limit
    started = await request_upload(t, t.bob, size, "big.bin", "application/octet-stream")
    f = await expect(t.bob.api, "PUT", started["content_url"], 200, content=b"\0" * size)
    assert f["size"] == size
    await expect(t.bob.api, "POST", t.w("/files"), 413, "payload_too_large",
                 content=b"{" + b" " * size + b"}", headers={"content-type": "application/json"})
    await t.close()


# -- completion checks ----------------------------------------------------------------


async def test_completion_refuses_a_wrong_size(app: Running) -> None:
    t = await make_team(app)
    started = await request_upload(t, t.bob, 100, "a.txt", "text/plain")
    assert (await follow_ticket(started, b"short")).status_code in (200, 201, 204)
    await expect(t.bob.api, "POST", started["complete_url"], 409, "upload_size_mismatch")
    f = await expect(t.bob.api, "GET", t.w(f"/files/{started['file']['id']}"), 200)
    assert f["state"] == "pending"  # the client may upload again with the same ticket
    assert (await follow_ticket(started, b"a" * 100)).status_code in (200, 201, 204)
    f = await expect(t.bob.api, "POST", started["complete_url"], 200)
    assert (f["state"], f["size"]) == ("ready", 100)
    await t.close()


@pytest.mark.parametrize(("data", "sniffed"), [
    (b"<html><body><script>alert(document.cookie)</script></body></html>", "text/html"),
    (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
     "image/svg+xml"),
    (b"%PDF-1.7 not really", "application/pdf"),
])
async def test_a_lying_content_type_is_never_served(app: Running, data: bytes,
                                                    sniffed: str) -> None:
    t = await make_team(app)
    f = await upload(t, t.bob, data, "cute-cat.png", "image/png")  # claims to be a PNG
    assert f["content_type"] == sniffed
    assert not f["has_thumbnail"]
    resp = await fetch(t.bob, f["url"])
    assert resp.content == data
    assert resp.headers["content-type"].split(";")[0] == sniffed  # ours, not the claim
    assert resp.headers["content-disposition"].startswith("attachment;")  # never inline
    if app.rt.services.blobs.served_by_api:
        assert_safe_headers(resp)
    await t.close()


async def test_bytes_uploaded_after_completion_are_never_served(parley: Running) -> None:
    """The ticket outlives the completion; what it writes later must not
    replace what was checked (it lands in the staging key only)."""
    t = await make_team(parley)
    image = png()
    started = await request_upload(t, t.bob, len(image))
    await follow_ticket(started, image)
    f = await expect(t.bob.api, "POST", started["complete_url"], 200)
    evil = b"<html><script>alert(1)</script>" + b" " * (len(image) - 31)
    assert len(evil) == len(image)
    assert (await follow_ticket(started, evil)).status_code == 204
    again = await expect(t.bob.api, "POST", started["complete_url"], 200)
    assert again["content_type"] == "image/png"
    assert (await fetch(t.bob, f["url"])).content == image
    await t.close()


# -- limits -------------------------------------------------------------------------


async def test_limits_refuse_before_any_byte_is_stored(app: Running) -> None:
    t = await make_team(app)
    await request_upload(t, t.bob, (1 << 30) + 1, status=413, err="file_too_large")
    await request_upload(t, t.bob, 0, status=400, err="invalid_request")
    await request_upload(t, t.bob, 10, name="a\x00b", status=400, err="invalid_file_name")
    await request_upload(t, t.bob, 10, content_type="not a type", status=400,
                         err="invalid_content_type")
    lim = await expect(t.bob.api, "GET", t.w("/file-limits"), 200)
    assert lim["max_file_bytes"] == 1 << 30 and lim["server_allowed_types"] == ["*"]

    await expect(t.bob.api, "PUT", t.w("/file-limits"), 403, "permission_denied",
                 json={"max_file_bytes": 1})
    await expect(t.ada.api, "PUT", t.w("/file-limits"), 400, "invalid_limits",
                 json={"allowed_types": ["image/<script>"]})
    lim = await expect(t.ada.api, "PUT", t.w("/file-limits"), 200,
                       json={"max_file_bytes": 1000, "allowed_types": ["image/*", "text/plain"]})
    assert lim["max_file_bytes"] == 1000
    assert lim["workspace_allowed_types"] == ["image/*", "text/plain"]
    await request_upload(t, t.bob, 1001, status=413, err="file_too_large")
    await request_upload(t, t.bob, 10, "a.pdf", "application/pdf", status=415,
                         err="file_type_not_allowed")
    # Declared as allowed, sniffed as not: refused on completion, and removed.
    started = await request_upload(t, t.bob, 20, "a.png", "image/png")
    await follow_ticket(started, b"<html>hello</html>..")
    await expect(t.bob.api, "POST", started["complete_url"], 415, "file_type_not_allowed")
    await expect(t.bob.api, "GET", t.w(f"/files/{started['file']['id']}"), 404,
                 "file_not_found")
    ok = await upload(t, t.bob, png(8, 8))
    assert ok["state"] == "ready"
    # Other workspaces keep the server's limits.
    eve_lim = await expect(t.eve.api, "GET", t.w("/file-limits", t.other), 200)
    assert eve_lim["max_file_bytes"] == 1 << 30
    await t.close()


# -- thumbnails -----------------------------------------------------------------------


async def test_thumbnails_of_images(app: Running) -> None:
    t = await make_team(app)
    f = await upload(t, t.bob, png(1200, 600))
    assert f["has_thumbnail"] and (f["width"], f["height"]) == (1200, 600)
    resp = await fetch(t.bob, f["thumbnail_url"])
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["content-disposition"].startswith("inline;")
    with Image.open(io.BytesIO(resp.content)) as thumb:
        assert thumb.format == "PNG" and thumb.size == (360, 180)
    text = await upload(t, t.bob, b"just words", "a.txt", "text/plain")
    assert not text["has_thumbnail"] and text["thumbnail_url"] is None
    await expect(t.bob.api, "GET", t.w(f"/files/{text['id']}/thumbnail"), 404,
                 "thumbnail_not_found")
    await t.close()


async def test_a_decompression_bomb_gets_no_thumbnail_and_hurts_nothing(
        parley: Running) -> None:
    t = await make_team(parley)
    bomb = png_bomb()
    assert len(bomb) < 200
    started = dt.datetime.now(dt.UTC)
    f = await upload(t, t.bob, bomb, "bomb.png", "image/png")
    assert dt.datetime.now(dt.UTC) - started < dt.timedelta(seconds=5)
    assert (f["state"], f["content_type"], f["has_thumbnail"]) == ("ready", "image/png", False)
    assert f["width"] is None
    await expect(t.bob.api, "GET", t.w(f"/files/{f['id']}/thumbnail"), 404,
                 "thumbnail_not_found")
    # The bytes are still the user's file, and the server carries on.
    assert (await fetch(t.bob, f["url"])).content == bomb
    assert (await upload(t, t.bob, png()))["has_thumbnail"]
    await t.close()


async def test_thumbnails_are_bounded_in_pixels_and_time(parley: Running) -> None:
    t = await make_team(parley)
    svc = parley.rt.services
    svc.settings = dataclasses.replace(svc.settings, thumbnail_max_pixels=1000)
    f = await upload(t, t.bob, png(40, 30))  # 1,200 pixels: refused before decoding
    assert f["state"] == "ready" and not f["has_thumbnail"]
    svc.settings = dataclasses.replace(svc.settings, thumbnail_max_pixels=40_000_000,
                                       thumbnail_timeout_s=0.001)
    f = await upload(t, t.bob, png(40, 30))  # the worker cannot even start in time
    assert f["state"] == "ready" and not f["has_thumbnail"]
    await t.close()


def test_the_thumbnail_worker_refuses_a_bomb_before_decoding() -> None:
    """The worker itself, as a process: exit 3 on the bomb, at once."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", thumbnails._WORKER_CODE, "40000000", "512",
                           "5", "360"], input=png_bomb(), capture_output=True, timeout=30,
                          check=False)
    assert proc.returncode == 3, proc.stderr
    ok = subprocess.run([sys.executable, "-c", thumbnails._WORKER_CODE, "40000000", "512",
                         "5", "360"], input=png(720, 720), capture_output=True, timeout=30,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    assert struct.unpack(">II", ok.stdout[:8]) == (720, 720)
    with Image.open(io.BytesIO(ok.stdout[8:])) as im:
        assert im.size == (360, 360)


# -- sharing and authorization ------------------------------------------------------


async def test_files_are_visible_exactly_where_they_are_shared(app: Running) -> None:
    t = await make_team(app)
    secret = await t.channel(t.bob, "secret", "private", members=(t.carol,))
    image = png()
    f = await upload(t, t.bob, image)
    path = t.w(f"/files/{f['id']}")
    # Not shared yet: only the uploader.
    await expect(t.carol.api, "GET", path, 404, "file_not_found")
    await expect(t.carol.api, "GET", path + "/download", 404, "file_not_found")

    msg = await share(t, t.bob, secret, f["id"], text="the plan")
    assert [x["id"] for x in msg["files"]] == [f["id"]]
    page = await expect(t.carol.api, "GET", t.c(secret, "/messages"), 200)
    assert page["messages"][-1]["files"][0]["content_type"] == "image/png"
    assert (await fetch(t.carol, path + "/download")).content == image
    assert (await fetch(t.carol, path + "/thumbnail")).headers["content-type"] == "image/png"
    listed = await expect(t.carol.api, "GET", t.c(secret, "/files"), 200)
    assert [x["id"] for x in listed["files"]] == [f["id"]]

    # Not a member of the private channel: an admin, a guest.
    for outsider in (t.ann, t.gus):
        await expect(outsider.api, "GET", path, 404, "file_not_found")
        await expect(outsider.api, "GET", path + "/download", 404, "file_not_found")
        await expect(outsider.api, "GET", t.c(secret, "/files"), 404, "channel_not_found")
    # Another workspace, with its own id or Acme's.
    await expect(t.eve.api, "GET", t.w(f"/files/{f['id']}/download", t.other), 404,
                 "file_not_found")
    await expect(t.eve.api, "GET", path + "/download", 404, "workspace_not_found")

    # Shared in a public channel: members who may browse see it, guests do not.
    await share(t, t.bob, t.general, f["id"])
    assert (await fetch(t.ann, path + "/download")).status_code == 200
    public = await t.channel(t.bob, "public-room")
    g = await upload(t, t.bob, b"notes", "notes.txt", "text/plain")
    await share(t, t.bob, public, g["id"])
    assert (await fetch(t.carol, t.w(f"/files/{g['id']}/download"))).content == b"notes"
    await expect(t.gus.api, "GET", t.w(f"/files/{g['id']}/download"), 404, "file_not_found")

    # Removed from the channel: the next URL is refused at once.
    await expect(t.bob.api, "DELETE", t.c(secret, f"/members/{t.carol.id}"), 204)
    h = await upload(t, t.bob, b"after", "after.txt", "text/plain")
    await share(t, t.bob, secret, h["id"])
    await expect(t.carol.api, "GET", t.w(f"/files/{h['id']}/download"), 404, "file_not_found")
    await expect(t.carol.api, "GET", t.w(f"/files/{h['id']}"), 404, "file_not_found")
    assert (await fetch(t.bob, t.w(f"/files/{h['id']}/download"))).content == b"after"
    # A deleted message no longer shares its files.
    k = await upload(t, t.bob, b"gone soon", "k.txt", "text/plain")
    m = await share(t, t.bob, public, k["id"])
    assert (await fetch(t.carol, t.w(f"/files/{k['id']}/download"))).status_code == 200
    await expect(t.bob.api, "DELETE", t.m(public, m["id"]), 204)
    await expect(t.carol.api, "GET", t.w(f"/files/{k['id']}/download"), 404, "file_not_found")
    await t.close()


async def test_only_your_own_ready_files_can_be_shared(app: Running) -> None:
    t = await make_team(app)
    f = await upload(t, t.bob, b"mine", "m.txt", "text/plain")
    await expect(t.carol.api, "POST", t.c(t.general, "/messages"), 404, "file_not_found",
                 json={"text": "stolen", "file_ids": [f["id"]]})
    pending = await request_upload(t, t.bob, 10, "p.txt", "text/plain")
    await expect(t.bob.api, "POST", t.c(t.general, "/messages"), 409, "file_not_ready",
                 json={"text": "soon", "file_ids": [pending["file"]["id"]]})
    eves = await upload(t, t.eve, b"eve", "e.txt", "text/plain", ws=t.other)
    await expect(t.bob.api, "POST", t.c(t.general, "/messages"), 404, "file_not_found",
                 json={"text": "x", "file_ids": [eves["id"]]})
    await expect(t.bob.api, "POST", t.c(t.general, "/messages"), 400, "empty_message",
                 json={"text": ""})
    # Several files, in order, with no text; duplicates count once.
    g = await upload(t, t.bob, png(), "g.png")
    msg = await share(t, t.bob, t.general, g["id"], f["id"], g["id"])
    assert [x["id"] for x in msg["files"]] == [g["id"], f["id"]] and msg["text"] == ""
    many = [f["id"]] * 11
    await expect(t.bob.api, "POST", t.c(t.general, "/messages"), 400, "invalid_request",
                 json={"text": "x", "file_ids": many})
    await t.close()


async def test_deleting_a_file_shows_it_removed_in_its_messages(app: Running) -> None:
    t = await make_team(app)
    f = await upload(t, t.bob, png())
    msg = await share(t, t.bob, t.general, f["id"], text="look")
    ws = await t.connect(t.carol)
    await drain(ws, 0.2)
    record = await app.rt.services.store.files.file(int(t.ws), int(f["id"]))
    assert record is not None and record.thumbnail_key is not None

    await expect(t.carol.api, "DELETE", t.w(f"/files/{f['id']}"), 403, "not_uploader")
    await expect(t.bob.api, "DELETE", t.w(f"/files/{f['id']}"), 204)
    await expect(t.bob.api, "DELETE", t.w(f"/files/{f['id']}"), 204)  # twice is fine
    evs = [e for e in await drain(ws) if e["t"] == "message.updated"]
    removed = evs[0]["d"]["message"]["files"]
    assert [(x["id"], x["state"], x["name"], x["url"]) for x in removed] == [
        (int(f["id"]), "deleted", "", None)]
    got = await expect(t.carol.api, "GET", t.m(t.general, msg["id"]), 200)
    assert got["text"] == "look"
    assert [(x["id"], x["state"], x["name"]) for x in got["files"]] == [(f["id"], "deleted", "")]
    await expect(t.carol.api, "GET", t.w(f"/files/{f['id']}/download"), 404, "file_not_found")
    await expect(t.bob.api, "GET", t.w(f"/files/{f['id']}/download"), 404, "file_not_found")
    listed = await expect(t.carol.api, "GET", t.c(t.general, "/files"), 200)
    assert listed["files"] == []
    blobs = app.rt.services.blobs
    assert await blobs.stat(record.key) is None
    assert await blobs.stat(record.thumbnail_key) is None
    # Staff may delete what they can see.
    g = await upload(t, t.bob, b"spam", "s.txt", "text/plain")
    await share(t, t.bob, t.general, g["id"])
    await expect(t.ann.api, "DELETE", t.w(f"/files/{g['id']}"), 204)
    await ws.close()
    await t.close()


async def test_message_events_carry_files(parley: Running) -> None:
    t = await make_team(parley)
    ws = await t.connect(t.carol)
    await drain(ws, 0.2)
    f = await upload(t, t.bob, png(), "pic.png")
    await share(t, t.bob, t.general, f["id"], text="pic")
    created = [e for e in await drain(ws) if e["t"] == "message.created"]
    assert created[0]["d"]["files"][0]["name"] == "pic.png"
    assert created[0]["d"]["files"][0]["content_type"] == "image/png"
    await settle()
    await ws.close()
    await t.close()


# -- the cleanup task -----------------------------------------------------------------


async def test_uploads_never_completed_are_removed(app: Running) -> None:
    t = await make_team(app)
    svc = app.rt.services
    stale = await request_upload(t, t.bob, 5, "s.txt", "text/plain")
    await follow_ticket(stale, b"12345")
    done = await upload(t, t.bob, b"kept", "k.txt", "text/plain")
    record = await svc.store.files.file(int(t.ws), int(stale["file"]["id"]))
    assert record is not None and await svc.blobs.stat(record.key) is not None

    assert await file_actions.cleanup_stale_uploads(svc) == 0  # not old yet
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=svc.settings.pending_upload_ttl_s + 1)
    assert await file_actions.cleanup_stale_uploads(svc, later) == 1
    assert await file_actions.cleanup_stale_uploads(svc, later) == 0
    await expect(t.bob.api, "GET", t.w(f"/files/{stale['file']['id']}"), 404, "file_not_found")
    await expect(t.bob.api, "POST", stale["complete_url"], 404, "file_not_found")
    assert await svc.blobs.stat(record.key) is None
    assert (await fetch(t.bob, done["url"])).content == b"kept"
    await t.close()


async def test_the_runtime_runs_the_cleanup_task(parley: Running) -> None:
    t = await make_team(parley)
    svc = parley.rt.services
    stale = await request_upload(t, t.bob, 5, "s.txt", "text/plain")
    # server/runner.py started the maintenance tasks with the API: restart
    # them so that their first pass sees the shortened TTL.
    cleanup = [task for task in parley.rt.tasks if task.get_name() == "parley-upload-cleanup"]
    assert len(cleanup) == 1
    cleanup[0].cancel()
    parley.rt.tasks.remove(cleanup[0])
    svc.settings = dataclasses.replace(svc.settings, pending_upload_ttl_s=0)
    parley.rt.start_maintenance()
    parley.rt.start_maintenance()  # idempotent
    assert [t.get_name() for t in parley.rt.tasks].count("parley-upload-cleanup") == 1
    for _ in range(100):
        record = await svc.store.files.file(int(t.ws), int(stale["file"]["id"]))
        if record is not None and record.state == "deleted":
            break
        await settle(0.05)
    else:
        raise AssertionError("the cleanup task did not remove the stale upload")
    await t.close()


# -- the presigned and signed URLs ---------------------------------------------------


async def test_s3_tickets_bind_key_size_and_a_short_expiry(parley_s3: Running) -> None:
    t = await make_team(parley_s3)
    before = dt.datetime.now(dt.UTC)
    started = await request_upload(t, t.bob, 1234)
    ticket = started["upload"]
    assert ticket["method"] == "POST"
    policy = json.loads(base64.b64decode(ticket["fields"]["policy"]))
    key = f"w/{t.ws}/{started['file']['id']}/upload"
    assert ticket["fields"]["key"] == key and {"key": key} in policy["conditions"]
    assert ["content-length-range", 0, 1234] in policy["conditions"]
    expires = dt.datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expires - before <= dt.timedelta(minutes=15, seconds=5)
    await t.close()


async def test_local_signed_urls_are_checked(parley: Running) -> None:
    t = await make_team(parley)
    started = await request_upload(t, t.bob, 10, "a.txt", "text/plain")
    url = started["upload"]["url"]
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    async with httpx.AsyncClient(base_url=f"{parts.scheme}://{parts.netloc}") as http:
        for bad in ({**q, "sig": q["sig"][::-1]}, {**q, "max": "999999"},
                    {k: v for k, v in q.items() if k != "sig"}):
            resp = await http.put(parts.path, params=bad, content=b"0123456789")
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "invalid_signature"
        other = parts.path.replace(started["file"]["id"], "1")
        resp = await http.put(other, params=q, content=b"0123456789")
        assert resp.status_code == 403
        resp = await http.put(parts.path, params=q, content=b"01234567890")
        assert resp.status_code == 413 and resp.json()["error"]["code"] == "file_too_large"
        resp = await http.get(parts.path, params=q)  # an upload URL does not download
        assert resp.status_code == 403
        resp = await http.get("/v1/blobs/..%2F..%2Fsecret", params=q)
        assert resp.status_code in (403, 404)
        assert (await http.put(parts.path, params=q, content=b"0123456789")).status_code == 204
    await t.close()


async def test_files_can_be_attached_over_the_gateway(parley: Running) -> None:
    t = await make_team(parley)
    done = await upload(t, t.bob, png())
    ws = await t.connect(t.bob)
    await ws.send_cmd("send", {"channel_id": t.general, "text": "look",
                               "file_ids": [done["id"]]}, ref="f")
    ack = await ws.recv_type("ack")
    assert ack["ref"] == "f"
    created = await ws.recv_type("message.created")
    assert [f["id"] for f in created["d"]["files"]] == [int(done["id"])]
    await ws.send_cmd("send", {"channel_id": t.general, "text": "x", "file_ids": "nope"})
    assert (await ws.recv_type("error"))["d"]["code"] == "invalid_field"
    await ws.close()
    await t.close()
