"""Socket Mode: an app opens a WebSocket to the gateway and gets its events,
slash commands and interactions over it instead of at a request URL.

Rules:

* ``open_link``: ``apps.connections.open`` with the app-level token
  (``xapp-``) of an installed app with ``settings.socket_mode_enabled``;
  the answer is a single-use ticket, valid ``LINK_TICKET_TTL_S``, for the
  gateway's ``LINK_PATH`` (Slack's URLs are single-use too).
* ``redeem_link``: the gateway's upgrade consumes the ticket (atomically:
  two upgrades with one ticket get one socket) and checks again that the
  app is live, installed and in Socket Mode.
* What goes over the socket is Slack's envelope protocol; the gateway's
  ``gateway/socket_mode.py`` speaks it (``parley.ports.app_links``).
  Events reach the socket through a dispatcher in the gateway process
  holding it (``EventDispatcher(links=...)``), on the same cursors and
  outbox as HTTP apps, so delivery is as durable and as ordered.
"""

from __future__ import annotations

from parley import auth
from parley.actions.apps import AppAuth
from parley.errors import InvalidInput, Unauthenticated
from parley.services import Services

LINK_TICKET_TTL_S = 30.0  # an app connects right after apps.connections.open
LINK_PATH = "/link/"  # the gateway path the ticket is for


async def open_link(svc: Services, app_auth: AppAuth) -> str:
    """A single-use ticket for the gateway's Socket Mode upgrade."""
    app = await svc.store.apps.app(app_auth.workspace_id, app_auth.app_id)
    if app is None or not app.installed:
        raise Unauthenticated("account_inactive", "the app is not installed")
    if not app.socket_mode:
        raise InvalidInput("socket_mode_disabled",
                           "the app's manifest does not enable settings.socket_mode_enabled")
    ticket = auth.new_ticket()
    await svc.store.sessions.create_app_ticket(ticket, app.workspace_id, app.id,
                                               LINK_TICKET_TTL_S)
    return ticket


def link_url(svc: Services, ticket: str) -> str:
    """Where the app connects: the public gateway URL, else this process's gateway."""
    base = svc.settings.public_gateway_url.rstrip("/")
    if not base and svc.app_links is not None:
        base = svc.app_links.public_url
    if not base:
        base = f"ws://{svc.settings.host}:{svc.settings.gateway_port}"
    return f"{base}{LINK_PATH}?ticket={ticket}"


async def redeem_link(svc: Services, ticket: str) -> tuple[int, int]:
    """(workspace id, app id) of a valid ticket, used up; else ``invalid_ticket``."""
    found = await svc.store.sessions.consume_app_ticket(ticket)
    if found is None:
        raise Unauthenticated("invalid_ticket", "the ticket is unknown, used or expired")
    workspace_id, app_id = found
    app = await svc.store.apps.app(workspace_id, app_id)
    if app is None or not app.installed or not app.socket_mode:
        raise Unauthenticated("invalid_ticket", "the app is no longer installed in Socket Mode")
    return workspace_id, app_id
