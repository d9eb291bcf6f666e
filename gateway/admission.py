"""Who may open a connection: the upgrade's checks, in order.

``Admission.decide`` answers an upgrade request (after the RFC 6455
handshake itself was validated by ``gateway/handshake.py``) with ``Accept``
or ``Reject``: draining, path, subprotocol, browser ``Origin``,
authentication (bearer token plus ``?workspace_id=``, or a single-use
``?ticket=``), workspace membership, and the per-user connection cap.  The
refusals and their codes are docs/protocol.md's *Connecting* table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gateway.protocol import CONNECT_PATH, SUBPROTOCOLS
from gateway.transport import Accept, Reject
from parley.actions import accounts
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import DomainError, InvalidInput, Unauthenticated
from parley.model import StoreUnavailable
from parley.services import Services


class Admission:
    """The upgrade decision for one gateway (``connections(user_id)`` counts
    the user's open connections here, for the cap)."""

    def __init__(self, svc: Services, connections: Callable[[int], int]) -> None:
        self.svc = svc
        self._connections = connections

    async def decide(self, request: Any, *, draining: bool) -> Accept | Reject:
        """``Accept`` with ``context=(identity, workspace id, resume wanted)``."""
        if draining:
            return Reject(503, "server_draining", "this server is shutting down; reconnect")
        if request.path != CONNECT_PATH:
            return Reject(404, "not_found", f"connect at {CONNECT_PATH}")
        subprotocol = next((p for p in request.subprotocols if p in SUBPROTOCOLS), None)
        if subprotocol is None:
            return Reject(400, "unsupported_subprotocol",
                          f"offer one of {', '.join(SUBPROTOCOLS)} in Sec-WebSocket-Protocol")
        origin = request.origin
        if origin is not None and not self.origin_allowed(origin):
            return Reject(403, "origin_not_allowed", "this Origin may not connect")
        try:
            ident, workspace_id = await self._authenticate(request)
            await require_member(self.svc, ident, workspace_id)
        except DomainError as exc:
            return Reject(exc.status, exc.code, exc.message)
        except StoreUnavailable:
            return Reject(503, "store_unavailable", "the database is unavailable; retry")
        cap = self.svc.settings.ws_max_connections_per_user
        if self._connections(ident.user_id) >= cap:
            return Reject(429, "too_many_connections",
                          f"at most {cap} connections per user")
        resume = request.query.get("resume") == "1"
        return Accept(subprotocol=subprotocol, context=(ident, workspace_id, resume))

    def origin_allowed(self, origin: str) -> bool:
        allowed = self.svc.settings.origins
        if origin.rstrip("/") in allowed:
            return True
        # An allowlist entry without a port admits that scheme and host on any port.
        parts = urlsplit(origin)
        return f"{parts.scheme}://{parts.hostname}" in allowed

    async def _authenticate(self, request: Any) -> tuple[Identity, int]:
        ticket = request.query.get("ticket")
        if ticket:
            return await accounts.redeem_connect_ticket(self.svc, ticket)
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing_token",
                                  "send Authorization: Bearer <token> or ?ticket=<ticket>")
        ident = await accounts.authenticate(self.svc, token.strip())
        raw = request.query.get("workspace_id", "")
        if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**63:
            raise InvalidInput("invalid_workspace_id", "pass ?workspace_id=<id>")
        return ident, int(raw)
