"""Domain errors: one machine-readable code each, mapped to HTTP statuses by
the API and to typed error frames by the gateway.  Never a bare 500."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the caller can act on.

    ``code`` is stable and machine-readable (documented in docs/protocol.md
    and in the OpenAPI error schema); ``status`` is the HTTP status the API
    uses; ``retryable`` tells clients whether the same request may succeed
    later unchanged.
    """

    status = 400
    retryable = False

    def __init__(self, code: str, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidInput(DomainError):
    status = 400


class Unauthenticated(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class TooLarge(DomainError):
    status = 413


class RateLimited(DomainError):
    status = 429
    retryable = True


class Unavailable(DomainError):
    """A dependency (the database) is down; nothing was written."""

    status = 503
    retryable = True


class AppFailed(DomainError):
    """An app did not answer a request made for the caller (a slash
    command): nothing else happened; the same request may work later."""

    status = 424
    retryable = True
