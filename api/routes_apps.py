"""Apps (native REST): create from a manifest, read, change, delete, install,
uninstall, rotate the signing secret, list and revoke tokens, incoming
webhooks.  Workspace admins and the owner only (*manage apps*).

Secrets (the signing secret, tokens, webhook URLs) appear once, in the
answer that created them; they are stored hashed or derived, never
readable again.  The Slack-compatible Web API the tokens are for is under
``/api/`` (api/slack/, docs/apps.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from api.deps import Auth, Mutator, Svc
from api.params import IdPath
from api.schemas import IdStr, Strict
from parley import slack_ids
from parley.actions import app_health, apps, webhooks
from parley.actions.apps import SIGNING_GRACE_S_DEFAULT, SIGNING_GRACE_S_MAX
from parley.ports.apps import AppRecord, TokenRecord, WebhookRecord

router = APIRouter(tags=["apps"])
APPS = "/v1/workspaces/{workspace_id}/apps"
APP = APPS + "/{app_id}"


class ManifestIn(Strict):
    manifest: dict[str, Any] = Field(
        description="A Slack app manifest (JSON): display_information.name, "
                    "features.bot_user.display_name, oauth_config.scopes.bot, "
                    "settings.event_subscriptions, features.slash_commands, "
                    "settings.interactivity, settings.socket_mode_enabled (docs/apps.md)")


class SlackIds(BaseModel):
    app_id: str = Field(description="A...")
    bot_id: str = Field(description="B...")
    bot_user_id: str = Field(description="U...")
    team_id: str = Field(description="T...")


class AppOut(BaseModel):
    id: IdStr
    workspace_id: IdStr
    name: str
    bot_name: str
    bot_id: IdStr
    bot_user_id: IdStr
    bot_scopes: list[str]
    socket_mode: bool
    installed: bool
    created_by: IdStr
    created_ts: int = Field(description="Unix milliseconds")
    updated_ts: int = Field(description="Unix milliseconds")
    previous_signing_secret_valid_until_ts: int | None = Field(
        default=None, description="Unix milliseconds: the end of the rotation grace period")
    manifest: dict[str, Any]
    event_request_url_verified: bool = Field(
        default=False, description="The manifest's event request URL echoed url_verification "
                                   "(events are sent only then)")
    events_disabled_ts: int | None = Field(
        default=None, description="Unix milliseconds: when events to the app were turned off "
                                  "because most deliveries failed (null: they are on)")
    events_disabled_reason: str | None = Field(
        default=None, description="Why they were turned off: the failure counts")
    slack: SlackIds = Field(description="The ids in the Web API's shapes")

    @classmethod
    def of(cls, a: AppRecord) -> AppOut:
        until = a.prev_signing_until
        m = apps.manifest_of(a)
        return cls(
            id=str(a.id), workspace_id=str(a.workspace_id), name=a.name, bot_name=a.bot_name,
            bot_id=str(a.bot_id), bot_user_id=str(a.bot_user_id), bot_scopes=list(a.bot_scopes),
            socket_mode=a.socket_mode, installed=a.installed, created_by=str(a.created_by),
            created_ts=int(a.created_at.timestamp() * 1000),
            updated_ts=int(a.updated_at.timestamp() * 1000),
            previous_signing_secret_valid_until_ts=(
                None if until is None else int(until.timestamp() * 1000)),
            manifest=m.raw,
            event_request_url_verified=(m.event_request_url is not None
                                        and m.event_request_url == a.events_verified_url),
            events_disabled_ts=(None if a.events_disabled_at is None
                                else int(a.events_disabled_at.timestamp() * 1000)),
            events_disabled_reason=a.events_disabled_reason,
            slack=SlackIds(app_id=slack_ids.app(a.id), bot_id=slack_ids.bot(a.bot_id),
                           bot_user_id=slack_ids.user(a.bot_user_id),
                           team_id=slack_ids.team(a.workspace_id)))


class AppCreatedOut(BaseModel):
    app: AppOut
    signing_secret: str = Field(description="Shown once; rotate it with POST .../signing-secret")


class AppList(BaseModel):
    apps: list[AppOut]


class WebhookIn(Strict):
    channel_id: IdStr = Field(description="The channel the webhook posts in (you must be in it)")


class InstallIn(Strict):
    webhook_channel_id: IdStr | None = Field(
        default=None, description="Also create an incoming webhook for this channel "
                                  "(the app needs the incoming-webhook scope)")


class WebhookOut(BaseModel):
    id: IdStr
    app_id: IdStr
    channel_id: IdStr
    created_by: IdStr
    created_ts: int = Field(description="Unix milliseconds")

    @classmethod
    def of(cls, h: WebhookRecord) -> WebhookOut:
        return cls(id=str(h.id), app_id=str(h.app_id), channel_id=str(h.channel_id),
                   created_by=str(h.created_by), created_ts=int(h.created_at.timestamp() * 1000))


class WebhookCreatedOut(BaseModel):
    webhook: WebhookOut
    url: str = Field(description="POST Slack's webhook JSON here; shown once")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class InstallOut(BaseModel):
    app: AppOut
    bot_token: str = Field(description="xoxb-...: shown once; reinstalling revokes it")
    app_token: str | None = Field(default=None,
                                  description="xapp-... (Socket Mode apps): shown once")
    webhook: WebhookCreatedOut | None = None


class SigningIn(Strict):
    grace_s: int = Field(default=SIGNING_GRACE_S_DEFAULT, ge=0, le=SIGNING_GRACE_S_MAX,
                         description="Seconds the current secret stays valid")


class TokenOut(BaseModel):
    id: IdStr
    kind: str = Field(description="bot (xoxb-), app (xapp-) or user (xoxp-)")
    user_id: IdStr
    scopes: list[str]
    created_ts: int = Field(description="Unix milliseconds")
    revoked: bool

    @classmethod
    def of(cls, t: TokenRecord) -> TokenOut:
        return cls(id=str(t.id), kind=t.kind, user_id=str(t.user_id), scopes=list(t.scopes),
                   created_ts=int(t.created_at.timestamp() * 1000), revoked=t.revoked)


class TokenList(BaseModel):
    tokens: list[TokenOut]


def _url(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + path


async def _webhook(s: Svc, me: Auth, request: Request, workspace_id: int, app_id: int,
                   channel_id: int) -> WebhookCreatedOut:
    made = await webhooks.create_webhook(s, me, workspace_id, app_id, channel_id,
                                         encode_team=slack_ids.team, encode_hook=slack_ids.bot)
    return WebhookCreatedOut(webhook=WebhookOut.of(made.webhook), url=_url(request, made.url_path))


@router.post(APPS, status_code=201, response_model=AppCreatedOut)
async def create_app(workspace_id: IdPath, body: ManifestIn, me: Mutator,
                     s: Svc) -> AppCreatedOut:
    """Create an app from a manifest (not installed yet).  The signing
    secret is shown this once."""
    app, secret = await apps.create_app(s, me, workspace_id, body.manifest)
    return AppCreatedOut(app=AppOut.of(app), signing_secret=secret)


@router.get(APPS, response_model=AppList)
async def list_apps(workspace_id: IdPath, me: Auth, s: Svc) -> AppList:
    """The workspace's apps."""
    return AppList(apps=[AppOut.of(a) for a in await apps.list_apps(s, me, workspace_id)])


@router.get(APP, response_model=AppOut)
async def get_app(workspace_id: IdPath, app_id: IdPath, me: Auth, s: Svc) -> AppOut:
    """One app, with its manifest."""
    return AppOut.of(await apps.get_app(s, me, workspace_id, app_id))


@router.patch(APP, response_model=AppOut)
async def update_app(workspace_id: IdPath, app_id: IdPath, body: ManifestIn, me: Mutator,
                     s: Svc) -> AppOut:
    """Replace the manifest.  Changed scopes reach tokens at the next install."""
    return AppOut.of(await apps.update_app(s, me, workspace_id, app_id, body.manifest))


@router.delete(APP, status_code=204)
async def delete_app(workspace_id: IdPath, app_id: IdPath, me: Mutator, s: Svc) -> Response:
    """Uninstall (every token and webhook revoked at once) and delete the app."""
    await apps.delete_app(s, me, workspace_id, app_id)
    return Response(status_code=204)


@router.post(APP + "/install", response_model=InstallOut)
async def install(workspace_id: IdPath, app_id: IdPath, body: InstallIn, me: Mutator, s: Svc,
                  request: Request) -> InstallOut:
    """Install: the app's bot joins the workspace and a bot token (and, with
    Socket Mode, an app-level token) is issued; reinstalling revokes the
    previous tokens.  Optionally an incoming webhook for one channel."""
    done = await apps.install(s, me, workspace_id, app_id)
    hook = None
    if body.webhook_channel_id is not None:
        hook = await _webhook(s, me, request, workspace_id, app_id, int(body.webhook_channel_id))
    return InstallOut(app=AppOut.of(done.app), bot_token=done.bot_token,
                      app_token=done.app_token, webhook=hook)


@router.post(APP + "/uninstall", response_model=AppOut)
async def uninstall(workspace_id: IdPath, app_id: IdPath, me: Mutator, s: Svc) -> AppOut:
    """Revoke every token and webhook at once and take the bot out of every
    channel.  Idempotent."""
    return AppOut.of(await apps.uninstall(s, me, workspace_id, app_id))


@router.post(APP + "/signing-secret", response_model=AppCreatedOut)
async def rotate_signing_secret(workspace_id: IdPath, app_id: IdPath, body: SigningIn,
                                me: Mutator, s: Svc) -> AppCreatedOut:
    """A new signing secret, shown this once; the current one stays valid
    for `grace_s` seconds."""
    app, secret = await apps.rotate_signing_secret(s, me, workspace_id, app_id, body.grace_s)
    return AppCreatedOut(app=AppOut.of(app), signing_secret=secret)


@router.post(APP + "/events/enable", response_model=AppOut)
async def enable_events(workspace_id: IdPath, app_id: IdPath, me: Mutator, s: Svc) -> AppOut:
    """Turn the app's events on again after Parley turned them off because
    most deliveries failed (`events_disabled_ts`); events of the time they
    were off are not sent.  Idempotent.  `403 permission_denied` (not an
    admin), `404 app_not_found`."""
    return AppOut.of(await app_health.enable_events(s, me, workspace_id, app_id))


@router.get(APP + "/tokens", response_model=TokenList)
async def list_tokens(workspace_id: IdPath, app_id: IdPath, me: Auth, s: Svc) -> TokenList:
    """Every token the app was issued (never the token itself)."""
    return TokenList(tokens=[TokenOut.of(t) for t in
                             await apps.list_tokens(s, me, workspace_id, app_id)])


@router.delete(APP + "/tokens/{token_id}", status_code=204)
async def revoke_token(workspace_id: IdPath, app_id: IdPath, token_id: IdPath, me: Mutator,
                       s: Svc) -> Response:
    """Revoke one token, effective at once (idempotent)."""
    await apps.revoke_token(s, me, workspace_id, app_id, token_id)
    return Response(status_code=204)


@router.post(APP + "/webhooks", status_code=201, response_model=WebhookCreatedOut)
async def create_webhook(workspace_id: IdPath, app_id: IdPath, body: WebhookIn, me: Mutator,
                         s: Svc, request: Request) -> WebhookCreatedOut:
    """An incoming-webhook URL for one channel (the bot joins it)."""
    return await _webhook(s, me, request, workspace_id, app_id, int(body.channel_id))


@router.get(APP + "/webhooks", response_model=WebhookList)
async def list_webhooks(workspace_id: IdPath, app_id: IdPath, me: Auth,
                        s: Svc) -> WebhookList:
    """The app's live webhooks (not their URLs)."""
    return WebhookList(webhooks=[WebhookOut.of(h) for h in
                                 await webhooks.list_webhooks(s, me, workspace_id, app_id)])


@router.delete(APP + "/webhooks/{webhook_id}", status_code=204)
async def revoke_webhook(workspace_id: IdPath, app_id: IdPath, webhook_id: IdPath, me: Mutator,
                         s: Svc) -> Response:
    """Revoke a webhook URL, effective at once."""
    await webhooks.revoke_webhook(s, me, workspace_id, app_id, webhook_id)
    return Response(status_code=204)
