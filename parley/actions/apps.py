"""Apps: create from a manifest, change, delete, install and uninstall; their
tokens (issue, authenticate, revoke) and signing secrets.

Rules:

* An app belongs to one workspace; only holders of *manage apps* (staff)
  create, change, install, uninstall or delete it.
* Installing creates (once) the app's bot: an account marked as a bot and
  an active workspace member with a member's permissions, in no channel.
  It returns a bot token (``xoxb-``) carrying the manifest's bot scopes,
  and, with Socket Mode on, an app-level token (``xapp-``,
  ``connections:write``).  Tokens are shown once and stored as hashes;
  reinstalling revokes the previous ones.
* Uninstalling revokes every token and webhook at once and removes the bot
  from every channel, in one transaction; then the bot's channels are told
  (``channel.left`` / ``channel.member_left``) and ``_uninstalled`` runs,
  the one place where part 2 will deliver ``app_uninstalled`` and
  ``tokens_revoked`` to the app.
* Authenticating a token is one primary-key read; a revoked token answers
  ``token_revoked`` from the next request on, in every process (nothing is
  cached).
* The signing secret is shown at creation and after each rotation; the one
  it replaces stays valid for the grace period (``signing_secrets``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from parley import appkeys, events
from parley.actions import app_events as wire
from parley.actions import manifest as manifests
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from parley.model import Member
from parley.permissions import Perm, require
from parley.ports.apps import (
    AppNameTaken,
    AppRecord,
    NewToken,
    TokenRecord,
    Uninstalled,
)
from parley.ports.outbound import OutboundError, OutboundResponse
from parley.services import Services

log = logging.getLogger("parley.apps")

SIGNING_GRACE_S_DEFAULT = 24 * 3600  # how long a rotated-out signing secret stays valid
SIGNING_GRACE_S_MAX = 7 * 24 * 3600
BOT_EMAIL_DOMAIN = "bots.parley.invalid"  # RFC 2606: never delivered, never a real address


def _not_found() -> NotFound:
    return NotFound("app_not_found", "no such app")


async def _manager(svc: Services, ident: Identity, workspace_id: int) -> Member:
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.MANAGE_APPS)
    return member


async def _app(svc: Services, workspace_id: int, app_id: int) -> AppRecord:
    app = await svc.store.apps.app(workspace_id, app_id)
    if app is None:
        raise _not_found()
    return app


def manifest_of(app: AppRecord) -> manifests.Manifest:
    """The app's manifest (validated when it was stored)."""
    return manifests.parse(app.manifest)


def signing_secret(svc: Services, app: AppRecord) -> str:
    return svc.app_keys.signing_secret(app.id, app.signing_salt)


def signing_secrets(svc: Services, app: AppRecord, now: dt.datetime | None = None) -> list[str]:
    """The signing secrets valid now: the current one first, then the one it
    replaced while its grace period lasts (what part 2 signs and checks with)."""
    now = now or dt.datetime.now(dt.UTC)
    out = [signing_secret(svc, app)]
    if (app.prev_signing_salt is not None and app.prev_signing_until is not None
            and app.prev_signing_until > now):
        out.append(svc.app_keys.signing_secret(app.id, app.prev_signing_salt))
    return out


# -- the app ------------------------------------------------------------------------


async def create_app(svc: Services, ident: Identity, workspace_id: int,
                     raw_manifest: object) -> tuple[AppRecord, str]:
    """A new app (not installed) and its signing secret, shown this once."""
    await _manager(svc, ident, workspace_id)
    m = manifests.parse(raw_manifest)
    now = dt.datetime.now(dt.UTC)
    record = AppRecord(
        id=svc.ids.next_id(), workspace_id=workspace_id, name=m.name, bot_name=m.bot_name,
        manifest=m.to_json(), bot_scopes=m.bot_scopes, socket_mode=m.socket_mode,
        bot_id=svc.ids.next_id(), bot_user_id=svc.ids.next_id(), created_by=ident.user_id,
        created_at=now, updated_at=now, signing_salt=appkeys.new_salt(), prev_signing_salt=None,
        prev_signing_until=None, installed=False, deleted=False)
    try:
        app = await svc.store.apps.create_app(record)
    except AppNameTaken as exc:
        raise Conflict("app_name_taken", "an app with this name exists") from exc
    return await _verified(svc, app), signing_secret(svc, app)


async def list_apps(svc: Services, ident: Identity, workspace_id: int) -> list[AppRecord]:
    await _manager(svc, ident, workspace_id)
    return await svc.store.apps.apps(workspace_id)


async def get_app(svc: Services, ident: Identity, workspace_id: int,
                  app_id: int) -> AppRecord:
    await _manager(svc, ident, workspace_id)
    return await _app(svc, workspace_id, app_id)


async def update_app(svc: Services, ident: Identity, workspace_id: int, app_id: int,
                     raw_manifest: object) -> AppRecord:
    """Replace the manifest (as Slack's ``apps.manifest.update`` does).  New
    scopes reach tokens at the next install."""
    await _manager(svc, ident, workspace_id)
    current = await _app(svc, workspace_id, app_id)
    m = manifests.parse(raw_manifest)
    if current.installed:
        await _commands_free(svc, current, m)
    try:
        app = await svc.store.apps.update_app(workspace_id, app_id, name=m.name,
                                              bot_name=m.bot_name,
                                              manifest=m.to_json(), bot_scopes=m.bot_scopes,
                                              socket_mode=m.socket_mode)
    except AppNameTaken as exc:
        raise Conflict("app_name_taken", "an app with this name exists") from exc
    if app is None:
        raise _not_found()
    if app.events_disabled_at is not None and m.event_request_url is not None:
        # Setting the request URL again turns off-for-failing events back on
        # (parley/actions/app_health.py; the same as POST .../events/enable).
        app = await svc.store.app_health.enable_events(workspace_id, app_id) or app
    return await _verified(svc, app)


async def _commands_free(svc: Services, app: AppRecord, m: manifests.Manifest) -> None:
    """Slash commands are registered per workspace, first install wins:
    refuse (409 ``command_taken``) a manifest claiming a command that
    another installed app of the workspace has (parley/actions/commands.py)."""
    mine = {c.command for c in m.slash_commands}
    if not mine:
        return
    for other in await svc.store.apps.apps(app.workspace_id):
        if other.id == app.id or not other.installed:
            continue
        taken = mine & {c.command for c in manifest_of(other).slash_commands}
        if taken:
            raise Conflict("command_taken",
                           f"{min(taken)} is a command of the installed app {other.name!r}")


async def _verified(svc: Services, app: AppRecord) -> AppRecord:
    """The app after a url_verification of a new event request URL."""
    m = manifest_of(app)
    url = m.event_request_url
    if url is None or m.socket_mode or app.events_verified_url == url:
        return app
    if await verify_request_url(svc, app):
        return dataclasses.replace(app, events_verified_url=url)
    return app


async def verify_request_url(svc: Services, app: AppRecord) -> bool:
    """Send ``url_verification`` to the manifest's event request URL and
    record the result: events go to the URL only once it echoed the
    challenge.  Called when the URL is set (create, update), and again by
    the dispatcher for a URL that failed (``AppEventStore.urls_to_verify``)."""
    m = manifest_of(app)
    url = m.event_request_url
    if url is None or m.socket_mode:
        return False
    secret = signing_secret(svc, app)
    challenge = secrets.token_urlsafe(24)
    body = wire.encode(wire.url_verification_body(secret, challenge))
    headers = wire.request_headers(secret, int(time.time()), body)
    result: OutboundResponse | OutboundError
    try:
        result = await svc.outbound.post(url, body, headers,
                                         timeout_s=svc.settings.app_events_timeout_s)
    except OutboundError as exc:
        result = exc
    ok = wire.challenge_echoed(result, challenge)
    if not ok:
        log.info("app %s: request URL %s did not echo url_verification (%s)", app.id, url,
                 result if isinstance(result, OutboundError) else result.status)
    await svc.store.app_events.set_verified(app.workspace_id, app.id, url, ok)
    return ok


async def rotate_signing_secret(svc: Services, ident: Identity, workspace_id: int, app_id: int,
                                grace_s: int = SIGNING_GRACE_S_DEFAULT) -> tuple[AppRecord, str]:
    """A new signing secret, shown this once; the current one stays valid for
    ``grace_s`` seconds (0: ends now)."""
    await _manager(svc, ident, workspace_id)
    if not 0 <= grace_s <= SIGNING_GRACE_S_MAX:
        raise InvalidInput("invalid_grace", f"grace_s must be 0 to {SIGNING_GRACE_S_MAX}")
    await _app(svc, workspace_id, app_id)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace_s)
    app = await svc.store.apps.rotate_signing_salt(workspace_id, app_id, appkeys.new_salt(), until)
    if app is None:
        raise _not_found()
    return app, signing_secret(svc, app)


# -- installation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Installation:
    app: AppRecord
    bot_token: str
    app_token: str | None  # with Socket Mode


def _new_token(svc: Services, kind: str, workspace_id: int, user_id: int,
               scopes: Sequence[str]) -> tuple[NewToken, str]:
    token_id = svc.ids.next_id()
    secret = appkeys.random_secret()
    return (NewToken(id=token_id, kind=kind, user_id=user_id,
                     secret_hash=appkeys.secret_hash(secret), scopes=tuple(scopes)),
            appkeys.make_token(kind, workspace_id, token_id, secret))


async def install(svc: Services, ident: Identity, workspace_id: int,
                  app_id: int) -> Installation:
    """Install (or reinstall) the app: its bot joins the workspace and new
    tokens are issued (the previous ones stop working)."""
    await _manager(svc, ident, workspace_id)
    app = await _app(svc, workspace_id, app_id)
    await _commands_free(svc, app, manifest_of(app))
    bot, bot_token = _new_token(svc, "bot", workspace_id, app.bot_user_id, app.bot_scopes)
    issued = [bot]
    app_token = None
    if app.socket_mode:
        tok, app_token = _new_token(svc, "app", workspace_id, app.bot_user_id,
                                    manifests.APP_TOKEN_SCOPES)
        issued.append(tok)
    installed = await svc.store.installs.install(
        workspace_id, app_id, bot_email=f"{app.bot_user_id}@{BOT_EMAIL_DOMAIN}", tokens=issued)
    if installed is None:
        raise _not_found()
    return Installation(installed, bot_token, app_token)


async def uninstall(svc: Services, ident: Identity, workspace_id: int, app_id: int) -> AppRecord:
    """Revoke every token and webhook of the app and take its bot out of the
    workspace's channels, at once.  Idempotent."""
    await _manager(svc, ident, workspace_id)
    await _app(svc, workspace_id, app_id)
    done = await svc.store.installs.uninstall(workspace_id, app_id)
    if done is None:
        raise _not_found()
    await _uninstalled(svc, done)
    return done.app


async def delete_app(svc: Services, ident: Identity, workspace_id: int, app_id: int) -> None:
    """Uninstall and delete (the bot keeps naming the messages it posted)."""
    await _manager(svc, ident, workspace_id)
    done = await svc.store.installs.delete_app(workspace_id, app_id)
    if done is None:
        raise _not_found()
    await _uninstalled(svc, done)


async def _uninstalled(svc: Services, done: Uninstalled) -> None:
    """After an uninstall committed: tell the bot's channels it left.

    The Events API's ``app_uninstalled`` and ``tokens_revoked`` (and other
    apps' ``member_left_channel``) are not sent from here: the store wrote
    them as outbox rows in the uninstall's transaction (parley/ports/apps.py)."""
    app = done.app
    items: list[tuple[str, bytes]] = []
    for cid in done.channel_ids:
        items.append((events.user_topic(app.bot_user_id), events.encode(
            events.CHANNEL_LEFT, {"id": cid, "workspace_id": app.workspace_id})))
        items.append((events.channel_topic(cid), events.encode(
            events.MEMBER_LEFT, {"workspace_id": app.workspace_id, "channel_id": cid,
                                 "user_id": app.bot_user_id})))
    if items:
        await svc.publish_many(items)
    log.info("app %s uninstalled: %d tokens and %d webhooks revoked, left %d channels",
             app.id, len(done.revoked_tokens), len(done.revoked_webhooks), len(done.channel_ids))


# -- tokens -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppAuth:
    """An authenticated app token: who acts (``ident``) and what it may do."""

    ident: Identity
    workspace_id: int
    token_id: int
    app_id: int
    bot_id: int
    kind: str  # 'bot' | 'app' | 'user'
    scopes: tuple[str, ...]


async def authenticate(svc: Services, raw: str) -> AppAuth:
    """Check an app token: ``invalid_auth`` (not ours, or no such token),
    ``token_revoked``, ``account_inactive`` (the app is uninstalled or its
    user is no longer a member).  One primary-key read."""
    parsed = appkeys.parse_token(raw)
    if parsed is None:
        raise Unauthenticated("invalid_auth", "the token is not valid")
    if await svc.store.workspaces.shard_of(parsed.workspace_id) is None:
        raise Unauthenticated("invalid_auth", "the token is not valid")
    grant = await svc.store.installs.token_grant(parsed.workspace_id, parsed.token_id)
    if (grant is None or grant.token.kind != parsed.kind
            or not appkeys.same_secret(parsed.secret, grant.secret_hash)):
        raise Unauthenticated("invalid_auth", "the token is not valid")
    if grant.token.revoked:
        raise Unauthenticated("token_revoked", "the token was revoked")
    if not grant.app_live or not grant.user_active:
        raise Unauthenticated("account_inactive", "the app is not installed in this workspace")
    t = grant.token
    ident = Identity(user_id=t.user_id, session_id=t.id, expires_at=math.inf, app_id=t.app_id,
                     bot_id=grant.bot_id)
    return AppAuth(ident=ident, workspace_id=t.workspace_id, token_id=t.id, app_id=t.app_id,
                   bot_id=grant.bot_id, kind=t.kind, scopes=t.scopes)


async def revoke_own_token(svc: Services, auth: AppAuth) -> None:
    """``auth.revoke``: the token revokes itself, effective at once."""
    await svc.store.installs.revoke_token(auth.workspace_id, auth.token_id)


async def list_tokens(svc: Services, ident: Identity, workspace_id: int,
                      app_id: int) -> list[TokenRecord]:
    await _manager(svc, ident, workspace_id)
    await _app(svc, workspace_id, app_id)
    return await svc.store.installs.tokens(workspace_id, app_id)


async def revoke_token(svc: Services, ident: Identity, workspace_id: int, app_id: int,
                       token_id: int) -> TokenRecord:
    """An admin revokes one token of the app (idempotent)."""
    await _manager(svc, ident, workspace_id)
    await _app(svc, workspace_id, app_id)
    owned = {t.id for t in await svc.store.installs.tokens(workspace_id, app_id)}
    if token_id not in owned:
        raise NotFound("token_not_found", "no such token of this app")
    revoked = await svc.store.installs.revoke_token(workspace_id, token_id)
    if revoked is None:
        raise NotFound("token_not_found", "no such token of this app")
    return revoked


# -- what apps look each other up by --------------------------------------------------


async def bot_app(svc: Services, ident: Identity, workspace_id: int,
                  bot_id: int) -> AppRecord:
    """The app of a bot of the caller's workspace (``bots.info``), deleted ones too."""
    await require_member(svc, ident, workspace_id)
    app = await svc.store.apps.app_by_bot(workspace_id, bot_id)
    if app is None:
        raise NotFound("bot_not_found", "no such bot")
    return app


async def app_of_bot_user(svc: Services, ident: Identity, workspace_id: int,
                          user_id: int) -> AppRecord | None:
    """The app whose bot account ``user_id`` is, or None (a person)."""
    await require_member(svc, ident, workspace_id)
    return await svc.store.apps.app_by_bot_user(workspace_id, user_id)
