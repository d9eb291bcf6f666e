"""apps.connections.open: Socket Mode's WebSocket URL for an app-level token."""

from __future__ import annotations

from typing import Any

from api.slack.errors import SlackError
from api.slack.registry import Call, method
from parley.actions import socket_mode
from parley.errors import InvalidInput


@method("apps.connections.open", tier=2, token_kinds=frozenset({"app"}))
async def apps_connections_open(call: Call) -> dict[str, Any]:
    """A single-use `ws://` URL on the gateway for a Socket Mode connection
    (an `xapp-` token of an app with `settings.socket_mode_enabled`); valid
    30 s.  Tier 2 (Slack's is 1): an app may hold several sockets and
    reconnects each after a gateway's `disconnect`."""
    try:
        ticket = await socket_mode.open_link(call.svc, call.auth)
    except InvalidInput as exc:
        raise SlackError("not_allowed_token_type" if exc.code == "socket_mode_disabled"
                         else exc.code) from exc
    return {"url": socket_mode.link_url(call.svc, ticket)}
