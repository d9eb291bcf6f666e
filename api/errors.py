"""One error envelope for every failure: ``{"error": {code, message, retryable}}``.

Validation problems (malformed JSON, a wrong type, a number or date out of
the ranges of ``api.params``) are 400 ``invalid_request``, with ``details``
naming each bad parameter or field (``loc``, e.g. ``["query", "since"]``);
a body over 1 MiB is 413 ``payload_too_large``, chunked or not; unknown
routes 404 ``not_found``; a dependency outage 503 ``store_unavailable``
(retryable).
A 500 means a bug: it is logged with its traceback and still answered in the
envelope, without internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.errors import DomainError
from parley.model import StoreUnavailable

log = logging.getLogger("parley.api")

MAX_BODY_BYTES = 1 << 20  # 1 MiB: JSON requests; file uploads have their own route

_STATUS_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
                 415: "unsupported_media_type", 429: "rate_limited"}


def error_response(status: int, code: str, message: str, *, retryable: bool = False,
                   headers: dict[str, str] | None = None, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        headers = None
        if exc.retry_after_s is not None:
            headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
        return error_response(exc.status, exc.code, exc.message, retryable=exc.retryable,
                              headers=headers)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return error_response(503, "store_unavailable", "the database is unavailable; retry",
                              retryable=True, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                   for e in exc.errors()]
        if any(e.get("type") == "string_unicode" for e in exc.errors()):
            # A lone surrogate (a "\ud800" escape json.loads accepted), refused
            # by pydantic in a length-limited field: the same code as the JSON
            # gateway gives it (gateway/protocol/codec.py), not the generic one.
            return error_response(400, "invalid_text", "a string holds a lone surrogate: "
                                  "strings must be Unicode text", details=details)
        return error_response(400, "invalid_request", "the request is not valid", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an internal error occurred")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 ``payload_too_large``,
    by Content-Length up front or, for a chunked body, by reading it here.

    The body is read whole (at most ``limit`` bytes) before the app runs and
    handed to it again: a JSON route buffers it anyway, and the refusal is
    then ours to send.  Counting inside the app's ``receive`` instead (as
    this did) raised in the middle of FastAPI's body parsing, which turns
    any exception there into 400 "There was an error parsing the body"."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False  # the server refuses a malformed length itself
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        chunks: list[bytes] = []
        seen = 0
        first: Message = {"type": "http.request", "body": b"", "more_body": False}
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client went away: let the app see it
                first = msg
                break
            body = msg.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # later calls wait for a disconnect, as before
            replayed = True
            return first

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = error_response(413, "payload_too_large",
                              f"request bodies are limited to {self.limit} bytes")
        await resp(scope, receive, send)
