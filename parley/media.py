"""What the server decides about a file's bytes, whatever the client claims:
its type (sniffed from the first bytes), whether a browser may show it
inline, and the Content-Disposition that says so.  Pure functions; the
thumbnails themselves are made behind a port (``parley.ports.media``).

Rules: only ``SAFE_INLINE`` types (raster formats that cannot run script)
are ever ``inline``; SVG and HTML are sniffed as such (browsers sniff
leniently, so we err the same way) and always served as ``attachment``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from urllib.parse import quote

SNIFF_BYTES = 4096  # how much of a file the type sniffer reads
# Types a browser may show inline: raster formats that cannot run script.
SAFE_INLINE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
THUMBNAIL_TYPES = SAFE_INLINE  # larger than ports.media.THUMBNAIL_INPUT_MAX: none either


# -- types --------------------------------------------------------------------------

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
)
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe",
                 b"<meta", b"<title", b"<style", b"<img", b"<a ", b"<div", b"<p>", b"<!--")


def sniff(head: bytes) -> str:
    """The content type of a file from its first bytes (``SNIFF_BYTES``).

    Binary formats by signature; text as HTML or SVG when it looks like
    markup anywhere near the start (browsers sniff leniently, so we err the
    same way), else ``text/plain``; anything else ``application/octet-stream``.
    """
    for offset, magic, ctype in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return ctype
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in {b"heic", b"heix", b"mif1"}:
            return "image/heic"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head[:2] == b"\xff\xfb" or head[:2] == b"\xff\xf3":
        return "audio/mpeg"
    text = _as_text(head)
    if text is None:
        return "application/octet-stream"
    lowered = text.lstrip("\ufeff \t\r\n").lower().encode()
    if b"<svg" in lowered:
        return "image/svg+xml"
    if any(m in lowered for m in _HTML_MARKERS):
        return "text/html"
    if lowered.startswith(b"<?xml"):
        return "application/xml"
    return "text/plain"


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    for cut in range(4):  # the sample may end inside a multi-byte character
        try:
            text = head[:len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if all(ch in "\t\r\n\f" or not unicodedata.category(ch).startswith("C")
               for ch in text[:512]):
            return text
        return None
    return None


def type_matches(ctype: str, patterns: Sequence[str]) -> bool:
    major = ctype.split("/", 1)[0]
    return any(p in {"*", "*/*"} or p == ctype or p == f"{major}/*" for p in patterns)


def content_disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII fallback plus the UTF-8 name (``filename*``)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"{kind}; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(name, safe='')}"


def disposition_for(content_type: str, name: str) -> str:
    """``inline`` for ``SAFE_INLINE`` types, else ``attachment``, with the name."""
    return content_disposition("inline" if content_type in SAFE_INLINE else "attachment", name)
