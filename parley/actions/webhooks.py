"""Incoming webhooks: a URL per (app, channel) that posts into the channel as
the app's bot, taking Slack's JSON (or a form field ``payload``).

Rules:

* Only an installed app whose manifest grants ``incoming-webhook`` gets
  webhooks; the admin creating one must be in the channel, and the bot is
  added to it (the group-commit writer only stores posts of members).
* The URL is ``/services/T<workspace>/B<webhook>/<secret>``; only the
  secret's hash is stored.  Revoking the webhook, or uninstalling the app,
  ends it at once.
* A post goes through ``messages.post_message`` as the bot, like any other
  message (seq, sockets in order, history, search, unread counts), marked
  ``subtype: bot_message`` as Slack marks webhook posts.
* Answers are Slack's: 200 ``ok``; 400 ``invalid_payload`` / ``no_text``;
  403 ``action_prohibited`` (the bot was removed from the channel);
  404 ``channel_not_found`` / ``no_service`` (unknown or revoked URL);
  410 ``channel_is_archived``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from parley import appkeys
from parley.actions import apps, channels, messages, rich
from parley.auth import Identity
from parley.errors import DomainError, Forbidden, InvalidInput, NotFound
from parley.model import Message, MessageExtras
from parley.ports.apps import WebhookRecord
from parley.services import Services

PAYLOAD_FIELDS = ("text", "blocks", "attachments", "thread_ts", "mrkdwn", "unfurl_links",
                  "unfurl_media", "username", "icon_emoji", "icon_url", "channel",
                  "reply_broadcast", "response_type", "replace_original", "delete_original",
                  "metadata")


class WebhookError(DomainError):
    """A refusal answered in Slack's webhook style: ``status`` and a
    text/plain ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook: WebhookRecord
    url_path: str  # /services/T.../B.../<secret>: shown this once


async def create_webhook(svc: Services, ident: Identity, workspace_id: int, app_id: int,
                         channel_id: int, *, encode_team: Callable[[int], str],
                         encode_hook: Callable[[int], str]) -> CreatedWebhook:
    """A webhook URL for one channel.  ``encode_team`` / ``encode_hook`` turn
    ids into the Web API's shapes (``T...`` / ``B...``): the adapter owns them."""
    app = await apps.get_app(svc, ident, workspace_id, app_id)
    if not apps.manifest_of(app).webhooks_allowed:
        raise Forbidden("missing_scope", "the app's manifest does not grant incoming-webhook")
    if not app.installed:
        raise InvalidInput("app_not_installed", "install the app first")
    await channels.add_to_channel(svc, ident, workspace_id, channel_id, [app.bot_user_id])
    secret = appkeys.random_secret()
    hook = await svc.store.webhooks.create_webhook(
        WebhookRecord(id=svc.ids.next_id(), workspace_id=workspace_id, app_id=app_id,
                      channel_id=channel_id, created_by=ident.user_id,
                      created_at=dt.datetime.now(dt.UTC),
                      revoked=False),
        appkeys.secret_hash(secret))
    return CreatedWebhook(hook, f"/services/{encode_team(workspace_id)}/{encode_hook(hook.id)}/"
                                f"{secret}")


async def list_webhooks(svc: Services, ident: Identity, workspace_id: int,
                        app_id: int) -> list[WebhookRecord]:
    await apps.get_app(svc, ident, workspace_id, app_id)
    return await svc.store.webhooks.webhooks(workspace_id, app_id)


async def revoke_webhook(svc: Services, ident: Identity, workspace_id: int, app_id: int,
                         webhook_id: int) -> None:
    await apps.get_app(svc, ident, workspace_id, app_id)
    if not await svc.store.webhooks.revoke_webhook(workspace_id, app_id, webhook_id):
        live = {h.id for h in await svc.store.webhooks.webhooks(workspace_id, app_id)}
        if webhook_id not in live:
            raise NotFound("webhook_not_found", "no such webhook of this app")


def parse_payload(body: bytes, content_type: str) -> dict[str, Any]:
    """Slack's webhook body: JSON, or a form with ``payload=<JSON>``."""
    from urllib.parse import parse_qs

    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
            raw = form.get("payload", [""])[0]
            data = json.loads(raw) if raw else None
        else:
            data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(400, "invalid_payload", "the body is not JSON") from exc
    if not isinstance(data, dict):
        raise WebhookError(400, "invalid_payload", "the payload is a JSON object")
    return data


def _content(data: dict[str, Any]) -> tuple[str, MessageExtras | None]:
    text = data.get("text", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise WebhookError(400, "invalid_payload", "text is a string")
    try:
        rich.clean_text(text)
        blocks = rich.blocks(data.get("blocks"))
        attachments = rich.attachments(data.get("attachments"))
    except DomainError as exc:
        raise WebhookError(400, "invalid_payload", exc.message) from exc
    if not text.strip() and blocks is None and not rich.attachments_text(attachments):
        raise WebhookError(400, "no_text", "the payload has no text, blocks or attachments")
    return text, MessageExtras(blocks=blocks, attachments=attachments, subtype="bot_message")


async def post(svc: Services, workspace_id: int, webhook_id: int, secret: str,
               data: dict[str, Any], *,
               thread_root_of: Callable[[Identity, int, int, str], Awaitable[int]],
               text_in: Callable[[str], str]) -> Message:
    """Post a payload through a webhook as the app's bot.  ``thread_root_of``
    resolves a ``thread_ts`` to a message id (the adapter's ts mapping);
    ``text_in`` converts Slack's mention syntax to Parley's."""
    if await svc.store.workspaces.shard_of(workspace_id) is None:
        raise WebhookError(404, "no_service", "no such webhook")
    grant = await svc.store.webhooks.webhook_grant(workspace_id, webhook_id)
    if (grant is None or not appkeys.same_secret(secret, grant.secret_hash)
            or grant.webhook.revoked or not grant.app_live):
        raise WebhookError(404, "no_service", "no such webhook, or it was revoked")
    text, extras = _content(data)
    ident = Identity(user_id=grant.bot_user_id, session_id=webhook_id, expires_at=math.inf,
                     app_id=grant.webhook.app_id, bot_id=grant.bot_id)
    cid = grant.webhook.channel_id
    try:
        channel = await svc.store.channels.channel(workspace_id, cid)
        if channel is None:
            raise WebhookError(404, "channel_not_found", "the webhook's channel is gone")
        if channel.archived:
            raise WebhookError(410, "channel_is_archived", "the channel is archived")
        root = None
        if data.get("thread_ts"):
            root = await thread_root_of(ident, workspace_id, cid, str(data["thread_ts"]))
        return await messages.post_message(svc, ident, workspace_id, cid, text_in(text),
                                           thread_root_id=root, extras=extras)
    except WebhookError:
        raise
    except DomainError as exc:
        if exc.code in {"channel_not_found", "not_in_channel", "workspace_not_found"}:
            raise WebhookError(403, "action_prohibited",
                               "the app's bot can no longer post in this channel") from exc
        if exc.code == "channel_archived":
            raise WebhookError(410, "channel_is_archived", "the channel is archived") from exc
        if exc.status == 503:  # the database: retryable, nothing was posted
            raise
        raise WebhookError(400, "invalid_payload", exc.message) from exc

