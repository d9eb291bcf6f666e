"""Interactivity (Slack's ``block_actions``, HTTP mode): a member presses a
button in a message an app posted, and the app gets Slack's signed
interaction payload; it answers through the payload's ``response_url``.

Rules:

* Pressing: the caller must see the channel (an invisible channel answers
  exactly like a made-up one, ``channel_not_found``, checked first, as for
  commands), and read it.  The message must be in it and not deleted
  (``404 message_not_found``) and carry a ``button`` element with the
  ``action_id`` in its blocks, in an ``actions`` block's ``elements`` or as
  a ``section``'s ``accessory`` (``404 action_not_found``; an element of
  another type is ``400 unsupported_element``: only buttons are
  supported).  ``block_id`` and ``value``, when given, must match too: they
  pick one of several buttons with the same ``action_id``.  What the app
  receives is always the element's own ``value``, never the caller's.
  A block without a ``block_id`` is named ``b<index>`` (Slack makes one up
  too; this one is stable).
* The app is the one whose bot posted the message (its extras' ``app_id``):
  it must be installed (``404 app_not_installed``) with
  ``settings.interactivity.is_enabled`` and a ``request_url``
  (``409 app_not_interactive``; Socket Mode is not supported yet).
  A message no app posted has no one to tell: ``409 app_not_interactive``.
* The request: POST form-encoded ``payload=<JSON>``, signed and sent by
  the commands' helpers (``commands.post_signed``: the same signature,
  SSRF guard and ``app_events_timeout_s``).  The app's answer is only an
  ack: any 2xx; a non-2xx answer or none is ``424 app_did_not_respond``
  (the response_url stays valid, as in Slack).
* ``response_url``: the commands' URLs (5 posts in 30 minutes), made with
  the pressed message as their original, so ``replace_original`` edits it
  and ``delete_original`` deletes it (``commands.respond``); ephemeral
  posts go to the member who pressed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from parley import slack_ids as ids
from parley.actions import app_events as wire
from parley.actions import commands, messages, rich, slack_shapes
from parley.actions.apps import manifest_of, signing_secret
from parley.actions.channels import visible_channel
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import Conflict, InvalidInput, NotFound
from parley.model import Message
from parley.services import Services

ACTION_ID_MAX = 255  # Slack's limit for action_id and block_id
VALUE_MAX = 2000  # Slack's limit for a button's value


@dataclass(frozen=True, slots=True)
class Element:
    """A block element found by ``action_id``, with the block holding it."""

    block_id: str
    element: dict[str, Any]


def elements(blocks: list[Any] | None) -> Iterator[Element]:
    """The interactive elements of a message's blocks, in order: those of
    ``actions`` (and ``input``/``context``) blocks' ``elements`` and a
    ``section``'s ``accessory``."""
    for i, block in enumerate(blocks or []):
        if not isinstance(block, dict):
            continue
        bid = block.get("block_id")
        block_id = bid if isinstance(bid, str) and bid else f"b{i}"
        inner = block.get("elements")
        found = list(inner) if isinstance(inner, list) else []
        if isinstance(block.get("accessory"), dict):
            found.append(block["accessory"])
        for e in found:
            if isinstance(e, dict) and isinstance(e.get("action_id"), str):
                yield Element(block_id, e)


def find_button(blocks: list[Any] | None, action_id: str, block_id: str | None,
                value: str | None) -> Element:
    """The button the caller pressed (module rules)."""
    for el in elements(blocks):
        e = el.element
        if e["action_id"] != action_id or (block_id is not None and el.block_id != block_id):
            continue
        if value is not None and e.get("value") != value:
            continue
        if e.get("type") != "button":
            raise InvalidInput("unsupported_element",
                               f"{action_id} is a {e.get('type')!r}: only buttons are supported")
        return el
    raise NotFound("action_not_found", f"the message has no button with action_id {action_id}")


def _check(name: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > limit or rich.bad_text(value):
        raise InvalidInput(f"invalid_{name}", f"{name} is a string of 1-{limit} characters")


async def press(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                message_id: int, action_id: str, *, block_id: str | None = None,
                value: str | None = None, base_url: str) -> None:
    """The caller presses the button ``action_id`` of the message; returns
    when the app acknowledged (module rules)."""
    channel = await visible_channel(svc, ident, workspace_id, channel_id)
    member = await require_member(svc, ident, workspace_id)
    _check("action_id", action_id, ACTION_ID_MAX)
    _check("block_id", block_id, ACTION_ID_MAX)
    _check("value", value, VALUE_MAX)
    view = await messages.get_message(svc, ident, workspace_id, channel.id, message_id)
    msg = view.message
    if msg.deleted:
        raise NotFound("message_not_found", "no such message")
    blocks = rich.parsed(view.extras.blocks if view.extras else None)
    el = find_button(blocks, action_id, block_id, value)
    app_id = view.extras.app_id if view.extras else None
    if app_id is None:
        raise Conflict("app_not_interactive", "no app posted the message")
    app = await svc.store.apps.app(workspace_id, app_id)
    if app is None or not app.installed:
        raise NotFound("app_not_installed", "the app that posted the message is not installed")
    m = manifest_of(app)
    if not m.interactivity_enabled or (m.interactivity_url is None and not app.socket_mode):
        raise Conflict("app_not_interactive", f"{app.name} has no interactivity request URL")
    roots: dict[int, Message] = {}
    if msg.thread_root_id is not None:
        root = await svc.store.messages.message(workspace_id, msg.thread_root_id)
        if root is not None:
            roots[root.id] = root
    _, response_url = await commands.new_response_url(svc, app, workspace_id, channel.id,
                                                      ident.user_id, base_url, msg.id)
    ws = await svc.store.workspaces.workspace(workspace_id)
    secret = signing_secret(svc, app)
    team = ids.team(workspace_id)
    channel_ref = ids.channel(channel.kind, channel.id)
    handle = slack_shapes.handle(member.display_name, ident.user_id)
    button = el.element
    action: dict[str, Any] = {"action_id": action_id, "block_id": el.block_id,
                              "text": button.get("text"), "type": "button",
                              "action_ts": ids.time_ts(dt.datetime.now(dt.UTC))}
    for key in ("value", "style", "url"):
        if key in button:
            action[key] = button[key]
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": ids.user(ident.user_id), "username": handle, "name": handle,
                 "team_id": team},
        "api_app_id": ids.app(app.id), "token": wire.verification_token(secret),
        "container": {"type": "message", "message_ts": slack_shapes.message_ts(msg),
                      "channel_id": channel_ref, "is_ephemeral": False},
        "trigger_id": commands.trigger_id(svc, workspace_id),
        "team": {"id": team, "domain": commands.team_domain(ws.name if ws else "")},
        "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": channel_ref, "name": channel.name or "directmessage"},
        "message": slack_shapes.message(view, channel=channel, roots=roots, base_url=base_url),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    if app.socket_mode:  # over its socket (URLs unused, as in Slack)
        await commands.over_socket(svc, app, "interactive", payload, action_id,
                                   accepts_response_payload=False)
        return
    assert m.interactivity_url is not None  # checked above
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"),
                                            ensure_ascii=False)}).encode()
    await commands.post_signed(svc, m.interactivity_url, body, secret, action_id)
