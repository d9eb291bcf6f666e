"""Dependencies shared by the route modules: the services, the caller's
identity, and rate limits.

Rate limits: every mutation (POST, PUT, PATCH, DELETE) of an authenticated
caller takes a token from the caller's bucket; register, login and refresh
take one from the client address's bucket.  An empty bucket answers 429
``rate_limited`` with ``Retry-After``.  Buckets live in the API process
(``parley.ratelimit``), sized by ``rest_rate_per_s`` and ``rest_burst``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from api.schemas import ErrorEnvelope
from parley.actions import accounts
from parley.auth import Identity
from parley.errors import RateLimited, Unauthenticated
from parley.ratelimit import TokenBuckets
from parley.services import Services

_DESCRIPTIONS = {
    400: "Invalid input (`invalid_request` for malformed JSON, parameters or ids; a specific "
         "code such as `invalid_channel_name` otherwise)",
    401: "Missing, invalid or expired token (`missing_token`, `invalid_token`, "
         "`token_expired`, `session_revoked`)",
    403: "Not allowed (`permission_denied`, `not_in_channel`, `channel_archived`, "
         "`not_author`, ...)",
    404: "Not found, or not visible to you (`workspace_not_found`, `channel_not_found`, "
         "`message_not_found`, `user_not_found`, `invite_not_found`, `thread_not_found`)",
    409: "Conflict (`name_taken`, `message_deleted`, `default_channel`, ...)",
    413: "Too large (`payload_too_large`: a request body over 1 MiB, chunked or not; "
         "`message_too_long`, `file_too_large`)",
    429: "Rate limited (`rate_limited`); see the Retry-After header",
    503: "A dependency is down (`store_unavailable`); retry",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": desc}
    for status, desc in _DESCRIPTIONS.items()
}


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


async def identity(request: Request,
                   authorization: Annotated[str | None, Header()] = None) -> Identity:
    if not authorization:
        raise Unauthenticated("missing_token", "send Authorization: Bearer <access token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("invalid_token", "use the Bearer scheme")
    return await accounts.authenticate(services(request), token.strip())


Auth = Annotated[Identity, Depends(identity)]


def _buckets(request: Request) -> TokenBuckets:
    """The app's buckets, rebuilt when the settings change (tests tune them)."""
    s = services(request).settings
    current: TokenBuckets | None = getattr(request.app.state, "buckets", None)
    if current is None or (current.rate, current.burst) != (s.rest_rate_per_s, s.rest_burst):
        current = TokenBuckets(s.rest_rate_per_s, float(s.rest_burst))
        request.app.state.buckets = current
    return current


def _take(request: Request, key: object) -> None:
    wait = _buckets(request).take(key, time.monotonic())
    if wait > 0:
        raise RateLimited("rate_limited", "too many requests; slow down",
                          retry_after_s=max(1.0, wait))


async def limited_identity(request: Request, ident: Auth) -> Identity:
    """The caller, after taking a token from their mutation bucket."""
    _take(request, ("user", ident.user_id))
    return ident


Mutator = Annotated[Identity, Depends(limited_identity)]


async def limit_by_address(request: Request) -> None:
    _take(request, ("addr", request.client.host if request.client else "-"))
