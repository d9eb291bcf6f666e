"""The WebSocket opening handshake, server side, sans-IO (RFC 6455 section 4).

``HandshakeParser.feed(bytes)`` returns ``None`` until the request head is
complete, then an ``UpgradeRequest``; ``accept_response`` and
``reject_response`` build the bytes to send back.  Nothing here does I/O.

Rules (in the order they are checked; the first failure wins):

1. Lines end with CRLF.  A bare LF or CR, a control character other than
   HT (NUL included), or a line starting with SP or HT (obs-fold) -> 400 as
   soon as the byte arrives: such a head can never become valid, and waiting
   for a CRLFCRLF that a bare-LF client never sends would hold the socket
   until the handshake timeout.  The head (request line + headers + blank
   line) must end within ``max_header_bytes`` bytes and have at most
   ``max_headers`` fields, else 431.  A header name that is not an RFC 9110
   token, or a line without ``:`` -> 400.
2. Request line ``METHOD SP origin-form SP HTTP/1.1``: a malformed line, a
   target not starting with ``/``, or a version other than HTTP/1.1 -> 400;
   a method other than GET -> 405 with ``Allow: GET``.
3. Exactly one ``Host`` (missing or repeated -> 400).  A body (any
   ``Transfer-Encoding`` or a non-zero ``Content-Length``) -> 400: the bytes
   after the head are WebSocket frames and nothing else.
4. ``Upgrade`` must list the ``websocket`` token -> else 426 with
   ``Upgrade: websocket``.  ``Connection`` must list ``upgrade`` -> else 400.
5. ``Sec-WebSocket-Version`` must be exactly ``13`` -> else 426 with
   ``Sec-WebSocket-Version: 13``.
6. ``Sec-WebSocket-Key`` must appear once and be the base64 of 16 bytes -> 400.
7. Repeated query parameters -> 400 (parameter pollution is ambiguous).

Header names are lower-cased; repeated list-valued headers are joined with
``", "`` (RFC 9110 5.3); repeated singleton headers are an error.  Header
bytes are decoded as ISO-8859-1, so any byte sequence maps to a string.
We never negotiate extensions: ``Sec-WebSocket-Extensions`` is ignored and
never sent (no permessage-deflate).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qsl

__all__ = [
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "HandshakeError",
    "HandshakeParser",
    "UpgradeRequest",
    "accept_key",
    "accept_response",
    "reject_response",
]

#: Largest request head accepted, in bytes (431 beyond).
DEFAULT_MAX_HEADER_BYTES: Final = 16384
#: Most header fields accepted in one request (431 beyond).
DEFAULT_MAX_HEADERS: Final = 100
#: RFC 6455 section 1.3: appended to the client key before hashing.
_WS_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HEAD_END: Final = b"\r\n\r\n"
_KEY_BYTES: Final = 16  # a Sec-WebSocket-Key decodes to 16 random bytes
# Bytes a request head never holds (rule 1), each match needing at most one
# byte before it (the LF lookbehind) and one after it (CR, obs-fold), so
# scanning from one byte before the previous end finds every match once.
_BAD_HEAD_RE: Final = re.compile(
    rb"(?P<ctl>[\x00-\x08\x0b\x0c\x0e-\x1f\x7f])|(?P<cr>\r[^\n])|(?P<lf>(?<!\r)\n)"
    rb"|(?P<fold>\n[ \t])")
_BAD_HEAD_MESSAGES: Final = {
    "ctl": "control character in the request head",
    "cr": "a CR not followed by LF in the request head",
    "lf": "request head lines must end with CRLF, not a bare LF",
    "fold": "obsolete line folding is not allowed",
}

# RFC 9110 5.6.2 token.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible ASCII, obs-text, space and tab; never CR, LF or NUL.
_BAD_VALUE_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Request targets: visible ASCII only.
_TARGET_RE: Final = re.compile(r"/[\x21-\x7e]*")
# Headers that may be repeated: their values are comma-separated lists.
_LIST_HEADERS: Final = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "cache-control",
        "pragma",
        "accept",
        "accept-encoding",
        "accept-language",
        "cookie",
        "via",
        "x-forwarded-for",
        "forwarded",
    }
)


class HandshakeError(Exception):
    """The request cannot be upgraded; answer it with ``reject_response``.

    ``status`` is the HTTP status, ``code`` a stable machine-readable error
    code (``snake_case``), ``message`` human-readable text, and ``headers``
    extra response headers the status requires (``Allow``, ``Upgrade``,
    ``Sec-WebSocket-Version``).
    """

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A valid WebSocket upgrade request.

    ``path`` is the raw (still percent-encoded) path without the query;
    ``query`` the decoded query parameters; ``headers`` lower-cased names to
    values; ``subprotocols`` the offered ``Sec-WebSocket-Protocol`` tokens in
    client order; ``leftover`` the bytes received after the request head
    (early WebSocket frames), to be fed to the frame parser.
    """

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    key: str
    origin: str | None
    subprotocols: list[str]
    leftover: bytes = field(default=b"", repr=False)

    @property
    def host(self) -> str:
        """The ``Host`` header (always present)."""
        return self.headers["host"]


def _comma_tokens(value: str) -> list[str]:
    """Split a comma-separated header value into stripped, non-empty items."""
    return [item.strip() for item in value.split(",") if item.strip()]


class HandshakeParser:
    """Accumulates bytes until a complete request head, then validates it.

    ``feed`` returns ``None`` while more bytes are needed, or the
    ``UpgradeRequest``; it raises ``HandshakeError`` for an invalid request.
    After it returned a request or raised, the parser is finished and
    ``feed`` raises RuntimeError.
    """

    __slots__ = ("_buffer", "_done", "_max_header_bytes", "_max_headers", "_scanned")

    def __init__(
        self,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        self._buffer = bytearray()
        self._done = False
        self._scanned = 0  # rule 1's scan starts here next time

    def feed(self, data: bytes) -> UpgradeRequest | None:
        """Add ``data``; return the request once its head is complete."""
        if self._done:
            raise RuntimeError("HandshakeParser already finished")
        # Search only where the terminator can newly appear: the last 3 old
        # bytes plus the new ones (linear overall, however the head is split).
        search_from = max(0, len(self._buffer) - (len(_HEAD_END) - 1))
        self._buffer += data
        end = self._buffer.find(_HEAD_END, search_from)
        # Only the head is scanned: what follows it are WebSocket frames.
        bad = _BAD_HEAD_RE.search(self._buffer, self._scanned,
                                  len(self._buffer) if end < 0 else end + len(_HEAD_END))
        if bad is not None:
            self._done = True
            raise HandshakeError(400, "bad_request", _BAD_HEAD_MESSAGES[bad.lastgroup or "ctl"])
        self._scanned = max(0, len(self._buffer) - 1)
        if end < 0:
            if len(self._buffer) > self._max_header_bytes:
                self._done = True
                raise HandshakeError(
                    431, "headers_too_large", "request head exceeds the size limit"
                )
            return None
        self._done = True
        head_len = end + len(_HEAD_END)
        if head_len > self._max_header_bytes:
            raise HandshakeError(431, "headers_too_large", "request head exceeds the size limit")
        head = bytes(self._buffer[:end]).decode("iso-8859-1")
        leftover = bytes(self._buffer[head_len:])
        self._buffer = bytearray()
        return self._parse_head(head, leftover)

    def _parse_head(self, head: str, leftover: bytes) -> UpgradeRequest:
        request_line, _, header_block = head.partition("\r\n")
        method, target = _parse_request_line(request_line)
        headers = self._parse_headers(header_block)
        return _validate(method, target, headers, leftover)

    def _parse_headers(self, block: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        if not block:
            return headers
        lines = block.split("\r\n")
        if len(lines) > self._max_headers:
            raise HandshakeError(431, "headers_too_large", "too many header fields")
        for line in lines:
            if line[:1] in (" ", "\t"):
                raise HandshakeError(400, "bad_request", "obsolete line folding is not allowed")
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN_RE.fullmatch(name):
                raise HandshakeError(400, "bad_request", "malformed header field")
            value = value.strip(" \t")
            if _BAD_VALUE_RE.search(value):
                raise HandshakeError(400, "bad_request", "control character in a header value")
            name = name.lower()
            if name in headers:
                if name not in _LIST_HEADERS:
                    raise HandshakeError(400, "bad_request", f"repeated {name} header")
                headers[name] = f"{headers[name]}, {value}"
            else:
                headers[name] = value
        return headers


def _parse_request_line(line: str) -> tuple[str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]):
        raise HandshakeError(400, "bad_request", "malformed request line")
    method, target, version = parts
    if version != "HTTP/1.1":
        raise HandshakeError(400, "bad_request", "WebSocket upgrades require HTTP/1.1")
    if not _TARGET_RE.fullmatch(target):
        raise HandshakeError(400, "bad_request", "request target must be an absolute path")
    if method != "GET":
        raise HandshakeError(
            405, "method_not_allowed", "WebSocket upgrades use GET", {"Allow": "GET"}
        )
    return method, target


def _validate(
    method: str, target: str, headers: dict[str, str], leftover: bytes
) -> UpgradeRequest:
    if not headers.get("host"):
        raise HandshakeError(400, "bad_request", "missing Host header")
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        raise HandshakeError(400, "bad_request", "an upgrade request must not have a body")
    upgrade = [token.lower() for token in _comma_tokens(headers.get("upgrade", ""))]
    if "websocket" not in upgrade:
        raise HandshakeError(
            426,
            "upgrade_required",
            "this endpoint only speaks WebSocket",
            {"Upgrade": "websocket"},
        )
    connection = [token.lower() for token in _comma_tokens(headers.get("connection", ""))]
    if "upgrade" not in connection:
        raise HandshakeError(400, "bad_request", "Connection header lacks the upgrade token")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(
            426,
            "unsupported_version",
            "only WebSocket version 13 is supported",
            {"Sec-WebSocket-Version": "13"},
        )
    key = headers.get("sec-websocket-key", "")
    try:
        raw_key = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw_key = b""
    if len(raw_key) != _KEY_BYTES:
        raise HandshakeError(400, "bad_key", "Sec-WebSocket-Key must be base64 of 16 bytes")
    path, _, query_string = target.partition("?")
    query: dict[str, str] = {}
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=False,
                          errors="strict")
    except UnicodeDecodeError:
        raise HandshakeError(400, "bad_request", "query string is not UTF-8") from None
    for name, value in pairs:
        if name in query:
            raise HandshakeError(400, "bad_request", f"repeated query parameter {name!r}")
        query[name] = value
    return UpgradeRequest(
        method=method,
        target=target,
        path=path,
        query=query,
        headers=headers,
        key=key,
        origin=headers.get("origin"),
        subprotocols=_comma_tokens(headers.get("sec-websocket-protocol", "")),
        leftover=leftover,
    )


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + _WS_GUID).encode("ascii")).digest()  # noqa: S324 - RFC 6455
    return base64.b64encode(digest).decode("ascii")


def _header_lines(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """Validated ``Name: value`` lines; ValueError on a response-splitting attempt."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = []
    for name, value in items:
        if not _TOKEN_RE.fullmatch(name) or _BAD_VALUE_RE.search(value):
            raise ValueError(f"invalid response header {name!r}")
        lines.append(f"{name}: {value}")
    return lines


def accept_response(
    request: UpgradeRequest,
    subprotocol: str | None,
    extra_headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> bytes:
    """The ``101 Switching Protocols`` response accepting ``request``.

    ``subprotocol`` must be one the client offered (ValueError otherwise) or
    None.  ``extra_headers`` must not set a header the handshake owns.
    """
    if subprotocol is not None and subprotocol not in request.subprotocols:
        raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
    extra = _header_lines(extra_headers)
    for line in extra:
        name = line.partition(":")[0].lower()
        if name in ("upgrade", "connection") or name.startswith("sec-websocket-"):
            raise ValueError(f"extra header {name!r} is owned by the handshake")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(request.key)}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


def reject_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> bytes:
    """An HTTP/1.1 error response with a JSON body; the connection then closes.

    Body: ``{"error": {"code": code, "message": message}}``, with
    ``Content-Type: application/json``, the exact ``Content-Length`` and
    ``Connection: close``.
    """
    if not 400 <= status <= 599:
        raise ValueError("a rejection needs a 4xx or 5xx status")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    owned = ("content-type", "content-length", "connection")
    lines.extend(
        line for line in _header_lines(headers) if line.partition(":")[0].lower() not in owned
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + body
