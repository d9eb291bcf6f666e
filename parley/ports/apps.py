"""The store contract for apps: apps made from a manifest, their installation
(the bot's account and membership), tokens and incoming webhooks.

Rules for this file (as for every port, see ``parley/ports/__init__.py``):

* It imports nothing of ours.
* Records are frozen slotted dataclasses; ``AppStore``, ``InstallStore``
  and ``WebhookStore`` are the protocols, and their docstrings are the
  contract every implementation meets, checked by
  ``tests/storage/test_apps_store.py`` against real PostgreSQL.
* Every method is workspace-scoped: it takes the workspace id, filters by
  it, and never returns another workspace's rows (an app id of workspace B
  looked up under workspace A is None).
* Connection failures raise ``parley.model.StoreUnavailable`` (nothing was
  written).
* Secrets never reach the store: tokens and webhook URLs are stored as the
  sha256 of their random part, signing secrets as the salt they are derived
  from (``parley/appkeys.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class AppNameTaken(Exception):
    """Another live app of the workspace has this name (case-insensitively)."""


@dataclass(frozen=True, slots=True)
class AppRecord:
    id: int
    workspace_id: int
    name: str
    bot_name: str  # the bot user's display name
    manifest: str  # the validated manifest, JSON
    bot_scopes: tuple[str, ...]  # granted to the bot token at install
    socket_mode: bool  # an app-level token (xapp-) is issued at install
    bot_id: int
    bot_user_id: int  # the bot's account; exists once the app was installed
    created_by: int
    created_at: dt.datetime
    updated_at: dt.datetime
    signing_salt: str
    prev_signing_salt: str | None  # valid until prev_signing_until (rotation grace)
    prev_signing_until: dt.datetime | None
    installed: bool
    deleted: bool
    # The event request URL that answered url_verification (the Events API
    # sends only there); set by ``AppEventStore.set_verified``.
    events_verified_url: str | None = None
    # Set while the app's events are off because most deliveries failed
    # (parley/actions/app_health.py), with what the counts were.
    events_disabled_at: dt.datetime | None = None
    events_disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token to store at install: only the hash of its secret part."""

    id: int
    kind: str  # 'bot' | 'app' | 'user'
    user_id: int  # the bot's account for 'bot' and 'app', the person for 'user'
    secret_hash: str
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    workspace_id: int
    app_id: int
    kind: str
    user_id: int
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked: bool


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What authenticating a token needs, read in one query: the token, the
    hash to compare its secret with, and the state of its app and user."""

    token: TokenRecord
    secret_hash: str
    bot_id: int
    app_live: bool  # installed and not deleted
    user_active: bool  # the token's user is an active member of the workspace


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    id: int
    workspace_id: int
    app_id: int
    channel_id: int
    created_by: int
    created_at: dt.datetime
    revoked: bool


@dataclass(frozen=True, slots=True)
class WebhookGrant:
    """An incoming webhook with what posting through it needs."""

    webhook: WebhookRecord
    secret_hash: str
    bot_id: int
    bot_user_id: int
    app_live: bool


@dataclass(frozen=True, slots=True)
class Uninstalled:
    """What an uninstall changed: tokens and webhooks revoked by it, and the
    channels the bot was removed from (in id order)."""

    app: AppRecord
    revoked_tokens: tuple[int, ...]
    revoked_webhooks: tuple[int, ...]
    channel_ids: tuple[int, ...]


class AppStore(Protocol):
    """Apps and their manifests, on the workspace's shard."""

    async def create_app(self, app: AppRecord) -> AppRecord:
        """Insert a new, not installed app (``installed``/``deleted`` are
        ignored).  Raises ``AppNameTaken`` when a live app of the workspace
        has the name; nothing is written then."""

    async def app(self, workspace_id: int, app_id: int) -> AppRecord | None:
        """A live (not deleted) app."""

    async def apps(self, workspace_id: int) -> list[AppRecord]:
        """The workspace's live apps, by id."""

    async def app_by_bot(self, workspace_id: int, bot_id: int) -> AppRecord | None:
        """The app whose bot this is, deleted apps included (their bots still
        name the messages they posted)."""

    async def app_by_bot_user(self, workspace_id: int, user_id: int) -> AppRecord | None:
        """The app whose bot account this is, deleted apps included."""

    async def update_app(self, workspace_id: int, app_id: int, *, name: str, bot_name: str,
                         manifest: str, bot_scopes: Sequence[str],
                         socket_mode: bool) -> AppRecord | None:
        """Replace the manifest and what is derived from it, atomically; None
        when the app is missing.  Raises ``AppNameTaken`` (nothing changed).
        Scopes of tokens already issued do not change: reinstalling grants
        the new ones (as in Slack)."""

    async def rotate_signing_salt(self, workspace_id: int, app_id: int, salt: str,
                                  previous_valid_until: dt.datetime) -> AppRecord | None:
        """Make ``salt`` current and keep the current one valid until
        ``previous_valid_until`` (one previous salt at most: rotating twice
        in a grace period ends the older one's grace).  Atomic."""



class InstallStore(Protocol):
    """Installations: the bot's account and membership (the account in the
    directory), and the tokens an installation issues."""

    async def install(self, workspace_id: int, app_id: int, *, bot_email: str,
                      tokens: Sequence[NewToken]) -> AppRecord | None:
        """Install (or reinstall) the app, None when it is missing.

        First the bot's account (``bot_user_id``, marked as a bot, no usable
        password) is created in the directory if it does not exist; then, in
        ONE shard transaction, the bot becomes an active workspace member
        (``is_bot``, role member, display name ``bot_name``; it joins no
        channel), every live token of the app is revoked, ``tokens`` are
        stored and the app is marked installed.  A crash between the two
        steps leaves only an account nobody can use, which the next install
        reuses."""

    async def uninstall(self, workspace_id: int, app_id: int) -> Uninstalled | None:
        """In ONE transaction: revoke every live token and webhook of the app,
        end the bot's membership (deactivated) and remove it from every
        channel, its follows and mentions, and mark the app not installed.
        Idempotent (a second call revokes nothing); None when missing.  The
        same transaction writes the Events API's outbox rows: ``app_uninstalled``
        and ``tokens_revoked`` for the app itself (when it was installed and
        subscribes), ``member_left_channel`` for other apps in the bot's
        channels (parley/ports/app_events.py)."""

    async def delete_app(self, workspace_id: int, app_id: int) -> Uninstalled | None:
        """``uninstall`` and mark the app deleted in the same transaction; the
        row stays (the bot still names its messages).  None when missing."""

    async def token_grant(self, workspace_id: int, token_id: int) -> TokenGrant | None:
        """The token and the state it depends on, in one query (called for
        every Web API request); None when no such token in the workspace."""

    async def tokens(self, workspace_id: int, app_id: int) -> list[TokenRecord]:
        """Every token the app was issued, revoked ones included, by id."""

    async def revoke_token(self, workspace_id: int, token_id: int) -> TokenRecord | None:
        """Revoke a token (idempotent: an already revoked one stays as it
        was); the token, or None when missing.  Effective at once: the next
        ``token_grant`` reports it revoked."""



class WebhookStore(Protocol):
    """Incoming webhooks of apps (stored as the hash of the URL's secret)."""

    async def create_webhook(self, webhook: WebhookRecord, secret_hash: str) -> WebhookRecord:
        """Store a new incoming webhook of an app."""

    async def webhooks(self, workspace_id: int, app_id: int) -> list[WebhookRecord]:
        """The app's live webhooks, by id."""

    async def webhook_grant(self, workspace_id: int, webhook_id: int) -> WebhookGrant | None:
        """A webhook (revoked ones included) with its app's state, one query."""

    async def revoke_webhook(self, workspace_id: int, app_id: int, webhook_id: int) -> bool:
        """True when a live webhook of that app was revoked now."""
