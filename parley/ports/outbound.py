"""The port for outbound HTTP requests to addresses apps choose (the Events
API's request URLs): one call, guarded against SSRF by every implementation.

Rules (``storage/outbound.py`` implements them; ``tests/storage/test_outbound.py``
checks each one):

* The URL's host is resolved once and every address it resolves to is
  checked against the policy (loopback, private, link-local, CGNAT,
  multicast, reserved, IPv4-mapped / 6to4 / Teredo / NAT64 IPv6 and the
  cloud metadata address are refused unless an allowed CIDR holds them).
  The connection goes to an address that passed the check, never to a
  second resolution of the name, and the connected peer is checked again.
  An implementation may keep idle connections (keep-alive) and reuse one
  only for the same scheme, host and port and only when its address is
  among those this request's check allowed.
* Redirects are never followed: a 3xx is returned like any answer.
* The whole exchange (resolution, connection, request, response, and the
  one retry below) ends within ``timeout_s``; at most
  ``max_response_bytes`` of the body are read.
* A request on a reused connection that fails before any byte of the
  answer arrived (the server closed the connection while it was idle) may
  be sent once more on a fresh connection: delivery is at least once (the
  Events API's stable ``event_id`` lets an app drop a duplicate).
* Failures are typed (the Events API names its retry reason after them):
  ``OutboundRefused`` (nothing was sent), ``OutboundTimeout``,
  ``OutboundFailed`` (DNS, connection, TLS or a malformed answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class OutboundError(Exception):
    """The request got no HTTP answer."""


class OutboundRefused(OutboundError):
    """The URL's address is not allowed (SSRF guard); nothing was sent."""


class OutboundTimeout(OutboundError):
    """No complete answer within the time limit."""


class OutboundFailed(OutboundError):
    """Resolution, connection, TLS or the answer's framing failed."""


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    headers: tuple[tuple[str, str], ...]  # names in lower case, in the order received
    body: bytes  # at most the implementation's limit (the rest was not read)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


class OutboundHttp(Protocol):
    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]], *,
                   timeout_s: float, fresh: bool = False) -> OutboundResponse:
        """POST ``body`` to ``url`` (http or https) with ``headers`` (plus
        Host, Content-Length and a User-Agent), under the rules of this
        module.  Raises an ``OutboundError``; never follows a
        redirect.  An implementation may resend a request once on a new
        connection when a kept-alive one turned out closed before any answer
        (harmless for events: they carry an ``event_id``); ``fresh`` asks
        for a new connection and no such resend (non-idempotent requests)."""

    async def close(self) -> None:
        """Release what the implementation holds (idempotent)."""
