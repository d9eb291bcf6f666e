"""Slash commands: a member's ``/command text`` in a channel, sent to the
app that registered the command as Slack's form-encoded, signed request;
the app's immediate answer and its ``response_url`` posts.

Rules:

* Registration: the commands of a workspace are those of its installed
  apps' manifests (``features.slash_commands``), read at each invocation
  (one indexed read of the workspace's live apps; nothing to keep in step
  when a manifest changes).  A command belongs to one installed app:
  installing an app (or changing an installed app's manifest) that claims
  a command another installed app has is refused, ``409 command_taken``
  naming the command and the app (first wins).  If two installs race past
  that check, the older app (lower id) answers.
* Invoking: the caller must see the channel (an invisible channel answers
  exactly like a made-up one, ``channel_not_found``); then an unknown
  command is ``404 unknown_command``.  The channel check comes first so the
  answer says nothing about a channel the caller cannot see.
* The request: POST ``application/x-www-form-urlencoded`` with Slack's
  fields, signed like the Events API (``X-Slack-Signature``,
  ``X-Slack-Request-Timestamp``, the newest signing secret), through the
  SSRF-guarded outbound client, within ``app_events_timeout_s`` (3 s).
  ``token`` is the verification token the Events API sends (derived from
  the signing secret).  No answer, or a non-2xx one: ``424
  app_did_not_respond`` to the caller, and nothing else happens (the
  response_url stays valid: the app may still use it, as in Slack).
* The answer: an empty body is an ack; a JSON object gives ``text``,
  ``blocks``, ``response_type``; any other body is plain text.
  ``in_channel`` is posted as the app's bot through ``messages.post_message``
  (a seq, history, sockets); when the bot is not in the channel it is
  shown to the caller instead, with ``warning: not_in_channel``.
  ``ephemeral`` (the default) goes to the caller's sockets only
  (``message.ephemeral``) and back in the answer; never stored.
* ``response_url``: ``<base>/commands/T.../<id>/<secret>``; only the
  secret's sha256 is stored.  Good for ``RESPONSE_URL_USES`` posts within
  ``RESPONSE_URL_TTL_S``; counted atomically in the store.  Interactions
  (parley/actions/interactions.py) use the same URLs, store and route, and
  the helpers under "shared with interactions"; ``replace_original`` /
  ``delete_original`` act on the URL's original message (``respond``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from parley import appkeys, events
from parley import slack_ids as ids
from parley.actions import app_events as wire
from parley.actions import manifest as manifests
from parley.actions import messages, rich
from parley.actions.apps import manifest_of, signing_secret
from parley.actions.channels import visible_channel
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import AppFailed, DomainError, InvalidInput, NotFound
from parley.model import Message, MessageExtras
from parley.ports.app_events import ResponseUrl
from parley.ports.apps import AppRecord
from parley.ports.outbound import OutboundError, OutboundResponse
from parley.services import Services

RESPONSE_URL_TTL_S = 30 * 60  # Slack's: a response_url works for 30 minutes
RESPONSE_URL_USES = 5  # ... and for at most 5 posts
TEXT_MAX = 4000  # characters of a command's text
_COMMAND_RE = re.compile(r"^/[a-z0-9_\-]{1,31}$")
RESPONSE_TYPES = ("ephemeral", "in_channel")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the caller is shown of the app's immediate answer."""

    response_type: str | None  # None: the app only acknowledged
    text: str
    blocks: Any | None
    message: Message | None  # the in_channel post
    warning: str | None = None
    extras: MessageExtras | None = None  # the in_channel post's (its bot, its blocks)


# -- registration -------------------------------------------------------------------


async def find(svc: Services, workspace_id: int,
               command: str) -> tuple[AppRecord, manifests.SlashCommand] | None:
    """The installed app that answers ``command`` in the workspace."""
    for app in await svc.store.apps.apps(workspace_id):  # by id: the older app first
        if not app.installed:
            continue
        for c in manifest_of(app).slash_commands:
            if c.command == command:
                return app, c
    return None


# -- invoking -----------------------------------------------------------------------


def _fields(svc: Services, app: AppRecord, ws_name: str, channel_ref: str, channel_name: str,
            user_id: int, user_name: str, command: str, text: str, response_url: str,
            secret: str) -> dict[str, str]:
    fields = {
        "token": wire.verification_token(secret),
        "team_id": ids.team(app.workspace_id), "team_domain": ws_name,
        "channel_id": channel_ref, "channel_name": channel_name,
        "user_id": ids.user(user_id), "user_name": user_name,
        "command": command, "text": text, "api_app_id": ids.app(app.id),
        "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": trigger_id(svc, app.workspace_id),
    }
    return fields


# -- shared with interactions (parley/actions/interactions.py) ------------------------


def team_domain(name: str) -> str:
    """Slack's ``team_domain`` of a workspace (its name as a slug)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "workspace"


def trigger_id(svc: Services, workspace_id: int) -> str:
    """A ``trigger_id`` in Slack's shape (Parley opens no modals: it only
    has to be unique)."""
    return f"{svc.ids.next_id()}.{workspace_id}.{appkeys.random_secret(16)}"


def bot_identity(app: AppRecord) -> Identity:
    """The app's bot, acting for the app (its posts carry bot_id / app_id)."""
    return Identity(user_id=app.bot_user_id, session_id=app.id, expires_at=math.inf,
                    app_id=app.id, bot_id=app.bot_id)


async def new_response_url(svc: Services, app: AppRecord, workspace_id: int, channel_id: int,
                           user_id: int, base_url: str,
                           message_id: int | None = None) -> tuple[int, str]:
    """A new response_url for ``user_id`` in the channel: (its id, the URL).
    ``message_id``: its original (an interaction's message)."""
    secret_part = appkeys.random_secret()
    url_id = svc.ids.next_id()
    await svc.store.app_events.create_response_url(ResponseUrl(
        id=url_id, workspace_id=workspace_id, app_id=app.id, channel_id=channel_id,
        user_id=user_id, secret_hash=appkeys.secret_hash(secret_part),
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=RESPONSE_URL_TTL_S),
        max_uses=RESPONSE_URL_USES, message_id=message_id))
    return url_id, (f"{base_url}/commands/{ids.team(workspace_id)}/{ids.enc(url_id)}/"
                    f"{secret_part}")


async def post_signed(svc: Services, url: str, body: bytes, secret: str,
                      what: str) -> OutboundResponse:
    """POST the form ``body`` to the app, signed like the Events API, through
    the SSRF-guarded client within ``app_events_timeout_s``; its 2xx answer,
    else ``424 app_did_not_respond`` (``what`` names the request)."""
    ts = int(time.time())
    headers = [("Content-Type", "application/x-www-form-urlencoded"),
               ("X-Slack-Request-Timestamp", str(ts)),
               ("X-Slack-Signature", wire.signature(secret, ts, body))]
    try:
        # fresh: never resent (a command or button press has no id to dedupe by).
        res = await svc.outbound.post(url, body, headers, fresh=True,
                                      timeout_s=svc.settings.app_events_timeout_s)
    except OutboundError as exc:
        raise AppFailed("app_did_not_respond",
                        f"{what} did not answer ({type(exc).__name__})") from exc
    if not 200 <= res.status < 300:
        raise AppFailed("app_did_not_respond", f"{what} answered HTTP {res.status}")
    return res


async def over_socket(svc: Services, app: AppRecord, kind: str, payload: dict[str, Any],
                      what: str, *, accepts_response_payload: bool) -> dict[str, Any] | None:
    """A Socket Mode app's request (``slash_commands``, ``interactive``): an
    envelope to one of its sockets (on any gateway: ``Services.app_links``
    relays); the ack's payload, else ``424 app_did_not_respond``.  No
    signature: the socket is authenticated."""
    links = svc.app_links
    if links is None:
        raise AppFailed("app_did_not_respond", f"{what}: no Socket Mode connection")
    try:
        return await links.request(app.id, kind, payload,
                                   timeout_s=svc.settings.app_events_timeout_s,
                                   accepts_response_payload=accepts_response_payload)
    except OutboundError as exc:
        raise AppFailed("app_did_not_respond",
                        f"{what} did not acknowledge ({type(exc).__name__})") from exc


def parse_answer(status: int, content_type: str, body: bytes) -> tuple[str | None, str, Any]:
    """(response_type or None for a bare ack, text, blocks) of an app's answer."""
    raw = body.decode("utf-8", "replace").strip()
    if not raw:
        return None, "", None
    data: Any = None
    if "json" in content_type or raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        return "ephemeral", raw, None
    text: str = data["text"] if isinstance(data.get("text"), str) else ""
    rtype = data.get("response_type")
    blocks = data.get("blocks")
    if not text and blocks is None:
        return None, "", None
    return (rtype if rtype in RESPONSE_TYPES else "ephemeral"), text, blocks


async def invoke(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                 command: str, text: str, *, base_url: str) -> Reply:
    """Run ``/command text`` for the caller in the channel (module rules)."""
    channel = await visible_channel(svc, ident, workspace_id, channel_id)
    member = await require_member(svc, ident, workspace_id)
    command = command.strip().lower() if isinstance(command, str) else ""
    if not _COMMAND_RE.match(command):
        raise InvalidInput("invalid_command", "a command is '/' and 1-31 letters, digits, "
                                              "'-' or '_'")
    rich.clean_text(text)
    if len(text) > TEXT_MAX:
        raise InvalidInput("invalid_text", f"a command's text has at most {TEXT_MAX} characters")
    found = await find(svc, workspace_id, command)
    if found is None:
        raise NotFound("unknown_command", f"no installed app has the command {command}")
    app, cmd = found
    if cmd.url is None and not app.socket_mode:
        raise AppFailed("app_did_not_respond", f"{command} has no request URL")
    ws = await svc.store.workspaces.workspace(workspace_id)
    url_id, response_url = await new_response_url(svc, app, workspace_id, channel.id,
                                                  ident.user_id, base_url)
    secret = signing_secret(svc, app)
    fields = _fields(svc, app, team_domain(ws.name if ws else ""),
                     ids.channel(channel.kind, channel.id), channel.name or "directmessage",
                     ident.user_id, member.display_name, command, text, response_url, secret)
    if app.socket_mode:  # over its socket (URLs unused, as in Slack); the ack is the answer
        ack = await over_socket(svc, app, "slash_commands", fields, command,
                                accepts_response_payload=True)
        rtype, reply_text, raw_blocks = parse_answer(
            200, "application/json", json.dumps(ack).encode() if ack else b"")
    else:
        assert cmd.url is not None  # the manifest requires one without Socket Mode
        res = await post_signed(svc, cmd.url, urlencode(fields).encode(), secret, command)
        rtype, reply_text, raw_blocks = parse_answer(
            res.status, res.header("content-type") or "", res.body)
    if rtype is None:
        return Reply(None, "", None, None)
    try:
        blocks = rich.blocks(raw_blocks)
    except DomainError as exc:
        raise AppFailed("app_did_not_respond", f"the app's answer: {exc.message}") from exc
    reply = await _show(svc, app, workspace_id, channel.id, ident.user_id, rtype,
                        ids.text_in(reply_text), blocks, None)
    if reply.message is not None:  # an in_channel reply is the URL's original
        await svc.store.app_events.set_response_url_message(workspace_id, url_id,
                                                            reply.message.id)
    return reply


async def _show(svc: Services, app: AppRecord, workspace_id: int, channel_id: int,
                user_id: int, rtype: str, text: str, blocks: str | None,
                thread_root_id: int | None) -> Reply:
    extras = MessageExtras(blocks=blocks) if blocks is not None else None
    parsed_blocks = rich.parsed(blocks) if blocks is not None else None
    warning = None
    if rtype == "in_channel":
        try:
            msg = await messages.post_message(svc, bot_identity(app), workspace_id, channel_id,
                                              text, thread_root_id=thread_root_id,
                                              extras=extras)
            return Reply("in_channel", text, parsed_blocks, msg,
                         extras=MessageExtras(blocks=blocks, bot_id=app.bot_id, app_id=app.id))
        except DomainError as exc:
            if exc.code not in {"not_in_channel", "channel_not_found"}:
                raise
            warning = "not_in_channel"
    await deliver_ephemeral(svc, app, workspace_id, channel_id, user_id, text, extras,
                            thread_root_id)
    return Reply("ephemeral", text, parsed_blocks, None, warning)


async def deliver_ephemeral(svc: Services, app: AppRecord, workspace_id: int, channel_id: int,
                            user_id: int, text: str, extras: MessageExtras | None,
                            thread_root_id: int | None) -> None:
    """The bot's message on the user's sockets only (``message.ephemeral``,
    as ``chat.postEphemeral`` sends it); the bot need not be in the channel."""
    full = MessageExtras(blocks=extras.blocks if extras else None, bot_id=app.bot_id,
                         app_id=app.id)
    data: dict[str, Any] = {"workspace_id": workspace_id, "channel_id": channel_id,
                            "user_id": app.bot_user_id, "text": text,
                            "ts": ids.time_ts(dt.datetime.now(dt.UTC)),
                            "thread_root_id": thread_root_id}
    data.update(events.extras_data(full))
    await svc.publish(events.user_topic(user_id), events.encode(events.MESSAGE_EPHEMERAL, data))


# -- response_url -------------------------------------------------------------------


class ResponseUrlError(Exception):
    """A response_url post refused, in Slack's terms (status, error)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


async def respond(svc: Services, workspace_id: int, url_id: int, secret: str,
                  data: dict[str, Any], *,
                  thread_root_of: Callable[[Identity, int, int, str], Awaitable[int]]) -> Reply:
    """A post to a response_url (a command's or an interaction's): ``text``,
    ``blocks``, ``response_type`` (default ephemeral), ``thread_ts``,
    ``replace_original``, ``delete_original``.

    The URL's *original* is the message it is about: an interaction's
    message, or a command's first in_channel post (its immediate reply or
    one through the URL).  ``delete_original`` deletes it (then any text is
    shown as a new message, as Slack does); ``replace_original`` edits its
    text and blocks as the app's bot (``message.updated`` on sockets).
    With no stored original (a command answered ephemerally: that message
    was never stored), there is nothing to delete, and a replacement is
    shown as a new ephemeral message.  Every post counts one use, even one
    whose edit is then refused."""
    if await svc.store.workspaces.shard_of(workspace_id) is None:
        raise ResponseUrlError(404, "expired_url")
    text = data.get("text") or ""
    rtype = data.get("response_type") or "ephemeral"
    if not isinstance(text, str) or rtype not in RESPONSE_TYPES:
        raise ResponseUrlError(400, "invalid_payload")
    try:
        rich.clean_text(text)
        blocks = rich.blocks(data.get("blocks"))
    except DomainError as exc:
        raise ResponseUrlError(400, "invalid_payload") from exc
    delete = _flag(data.get("delete_original"))
    replace = _flag(data.get("replace_original")) and not delete
    empty = not text.strip() and blocks is None
    if empty and not delete:
        raise ResponseUrlError(400, "no_text")
    grant = await svc.store.app_events.use_response_url(workspace_id, url_id,
                                                        appkeys.secret_hash(secret))
    if grant is None:
        raise ResponseUrlError(404, "expired_url")
    app = await svc.store.apps.app(workspace_id, grant.app_id)
    if app is None or not app.installed:
        raise ResponseUrlError(404, "expired_url")
    bot = bot_identity(app)
    if delete and grant.message_id is not None:
        await messages.delete_message(svc, bot, workspace_id, grant.channel_id, grant.message_id)
    if empty:
        return Reply(None, "", None, None)
    if replace and grant.message_id is not None:
        extras = MessageExtras(blocks=blocks, bot_id=app.bot_id, app_id=app.id)
        edited = await messages.edit_message(svc, bot, workspace_id, grant.channel_id,
                                             grant.message_id, ids.text_in(text), extras)
        return Reply("in_channel", edited.text, rich.parsed(blocks), edited, extras=extras)
    root = None
    if data.get("thread_ts"):
        root = await thread_root_of(bot, workspace_id, grant.channel_id,
                                    str(data["thread_ts"]))
    reply = await _show(svc, app, workspace_id, grant.channel_id, grant.user_id, rtype,
                        ids.text_in(text), blocks, root)
    if reply.message is not None:
        await svc.store.app_events.set_response_url_message(workspace_id, url_id,
                                                            reply.message.id)
    return reply


def _flag(value: Any) -> bool:
    """Slack's booleans: JSON true, or "true" from a form-encoded post."""
    return value is True or (isinstance(value, str) and value.lower() == "true")
