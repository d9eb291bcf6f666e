"""parley.media: the type is the bytes' and never the client's, and only raster
formats that cannot run script are ever shown inline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley import media


@pytest.mark.parametrize("head,ctype", [
    (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"\xff\xd8\xff\xe0", "image/jpeg"),
    (b"GIF89a", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"%PDF-1.7", "application/pdf"),
    (b"  <svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    (b"hello <script>alert(1)</script>", "text/html"),
    (b"<?xml version='1.0'?><a/>", "application/xml"),
    (b"just words\n", "text/plain"),
    (b"\x00\x01\x02binary", "application/octet-stream"),
])
def test_sniff_reads_the_type_from_the_bytes(head: bytes, ctype: str) -> None:
    assert media.sniff(head) == ctype


@pytest.mark.parametrize("ctype,kind", [
    ("image/png", "inline"), ("image/webp", "inline"), ("image/svg+xml", "attachment"),
    ("text/html", "attachment"), ("application/pdf", "attachment"),
])
def test_only_safe_raster_types_are_inline(ctype: str, kind: str) -> None:
    assert media.disposition_for(ctype, "x").startswith(kind + ";")


@given(st.text())
def test_a_disposition_is_one_ascii_header_line_whatever_the_name(name: str) -> None:
    value = media.disposition_for("image/png", name)
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert value.count('"') == 2  # the fallback name cannot break out of its quotes


def test_type_patterns() -> None:
    assert media.type_matches("image/png", ["image/*"])
    assert media.type_matches("text/plain", ["*"])
    assert not media.type_matches("text/html", ["image/*", "application/pdf"])
