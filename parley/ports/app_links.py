"""The port for Socket Mode: the apps' sockets that this process holds.

The gateway implements it (``gateway/socket_mode.py``) and hands it to the
Socket Mode dispatcher and to ``Services.app_links``; the domain only sends
envelopes and waits for acks through it.

Rules:

* ``request`` sends one envelope (Slack's ``{"envelope_id", "type",
  "payload", "accepts_response_payload", "retry_attempt",
  "retry_reason"}``) to one open socket of the app, chosen in turn among
  them (several sockets of an app share the load), and returns the ack's
  ``payload`` (None when the ack carried none).
* No ack within ``timeout_s``: ``OutboundTimeout``; no open socket, or the
  socket closed before the ack: ``OutboundFailed``.  The same typed
  failures as the HTTP path, so one retry policy serves both
  (``parley.actions.app_events.judge``).
* An ack for an unknown or already answered envelope is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class AppLinks(Protocol):
    @property
    def public_url(self) -> str:
        """Where apps reach this process's gateway (``ws://host:port``; empty
        without one), for ``apps.connections.open`` when no
        ``public_gateway_url`` is set."""

    def app_ids(self) -> Sequence[int]:
        """The apps with at least one open socket in this process."""

    async def request(self, app_id: int, kind: str, payload: dict[str, Any], *,
                      timeout_s: float, retry_attempt: int = 0,
                      retry_reason: str | None = None,
                      accepts_response_payload: bool = False) -> dict[str, Any] | None:
        """Send an envelope of ``kind`` (``events_api``, ``slash_commands``,
        ``interactive``) and wait for its ack (see the module's rules)."""
