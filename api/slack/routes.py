"""The Web API's HTTP surface: ``/api/<method>`` for every registered
method, the upload URLs of ``files.getUploadURLExternal``, incoming
webhooks (``/services/T.../B.../<secret>``) and bot-authenticated file
downloads (``url_private``).

Order of a call: the method (``unknown_method``), its HTTP verb, the
arguments, the token (``not_authed`` / ``invalid_auth`` /
``token_revoked`` / ``account_inactive``), the token kind, the method's
scopes (``missing_scope``), the rate limit (429 ``ratelimited``), then the
handler.  Every answer after authentication carries ``x-oauth-scopes``
(the token's scopes) and ``x-accepted-oauth-scopes`` (the method's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from api.routes_files import SECURITY_HEADERS
from api.slack import (  # noqa: F401 - the method modules register themselves
    args,
    methods_apps,
    methods_chat,
    methods_conversations,
    methods_items,
    methods_people,
)
from api.slack.errors import SlackError, from_domain
from api.slack.registry import REGISTRY, TIER_PER_MIN, Call, Limiter, Method
from parley import slack_ids as ids
from parley.actions import app_files, apps, commands, files, messages, webhooks
from parley.auth import Identity
from parley.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from parley.model import StoreUnavailable
from parley.services import Services

log = logging.getLogger("parley.api.slack")

TAG = "Slack Web API"
#: Bodies streamed (not buffered, not under the 1 MiB limit) by these routes.
STREAMED_POSTS = re.compile(r"^/upload/v1/[^/]+$")


class SlackAnswer(BaseModel):
    """Every Web API answer: `ok`, and the method's fields or an `error`."""

    model_config = ConfigDict(extra="allow")
    ok: bool = Field(description="Whether the call succeeded")
    error: str | None = Field(default=None, description="Slack's error string when not ok")
    warning: str | None = Field(default=None, description="Comma-separated warnings")
    response_metadata: dict[str, Any] | None = Field(
        default=None, description="`next_cursor` (empty on the last page), `warnings`, "
                                  "`messages` (for `invalid_arguments`)")


def _services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _limiter(request: Request) -> Limiter:
    s = _services(request).settings
    want = (s.webapi_tier_scale, s.webapi_post_per_channel_per_s, float(s.webapi_post_burst))
    current: Limiter | None = getattr(request.app.state, "slack_limiter", None)
    if current is None or current.settings != want:
        current = Limiter(*want)
        request.app.state.slack_limiter = current
    return current


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _answer(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None,
            retry_after_s: int | None = None) -> JSONResponse:
    h = dict(headers or {})
    if retry_after_s is not None:
        h["Retry-After"] = str(retry_after_s)
    return JSONResponse(body, status_code=status, headers=h)


async def dispatch(request: Request, name: str) -> Response:
    m = REGISTRY.get(name)
    if m is None:
        return _answer({"ok": False, "error": "unknown_method", "req_method": name[:100]})
    if request.method not in m.verbs:
        return _answer({"ok": False, "error": "method_not_allowed"}, 405,
                       {"Allow": ", ".join(m.verbs)})
    svc = _services(request)
    headers = {"x-accepted-oauth-scopes": ",".join(m.scopes)}
    try:
        values, token = await args.read(request)
        if token is None:
            raise SlackError("not_authed")
        try:
            auth = await apps.authenticate(svc, token)
        except Unauthenticated as exc:
            raise SlackError(exc.code) from exc
        headers["x-oauth-scopes"] = ",".join(auth.scopes)
        if auth.kind not in m.token_kinds:
            raise SlackError("not_allowed_token_type")
        limiter = _limiter(request)
        call = Call(svc, auth, args.Args(values), m, _base(request), limiter)
        call.need(*m.scopes)
        if m.tier != "post":
            limiter.take(m, auth)
        body = {"ok": True, **await m.handler(call)}
        if call.warnings:
            body["warning"] = ",".join(call.warnings)
            meta = body.setdefault("response_metadata", {})
            meta["warnings"] = list(call.warnings)
        return _answer(body, headers=headers)
    except SlackError as exc:
        return _answer(exc.body(), exc.status, headers, exc.retry_after_s)
    except DomainError as exc:
        err = from_domain(m.name, exc)
        return _answer(err.body(), err.status, headers, err.retry_after_s)
    except StoreUnavailable:
        return _answer({"ok": False, "error": "service_unavailable"}, 503, headers, 1)
    except Exception:
        log.exception("Web API method %s failed", m.name)
        return _answer({"ok": False, "error": "fatal_error"}, 500, headers)


def _description(m: Method) -> str:
    tier = (f"Tier {m.tier} ({TIER_PER_MIN[m.tier]:.0f}+ per minute)"
            if isinstance(m.tier, int) else
            "special: about one per second per channel, with bursts" if m.tier == "post"
            else f"special ({TIER_PER_MIN['special']:.0f} per minute)")
    scopes = " or ".join(f"`{s}`" for s in m.scopes) or "none"
    arguments = ", ".join(f"`{a}`" for a in m.args) or "none"
    return (f"{m.summary}\n\nSlack's `{m.name}`.  Scopes: {scopes}.  Rate limit: {tier}.  "
            f"Arguments: {arguments}, from the query string, a form, JSON or multipart body; "
            "the token as `Authorization: Bearer` or a `token` body field.  Always HTTP 200 "
            "with `ok` (except 429 `ratelimited`, 503 `service_unavailable`).")


_BODY = {"requestBody": {"required": False, "content": {
    "application/x-www-form-urlencoded": {"schema": {"type": "object",
                                                     "additionalProperties": True}},
    "application/json": {"schema": {"type": "object", "additionalProperties": True}},
}}}
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "`ok`", "content": _TEXT},
    400: {"description": "`invalid_payload` or `no_text`", "content": _TEXT},
    403: {"description": "`action_prohibited`: the bot can no longer post there",
          "content": _TEXT},
    404: {"description": "`no_service` (unknown or revoked) or `channel_not_found`",
          "content": _TEXT},
    410: {"description": "`channel_is_archived`", "content": _TEXT},
    429: {"description": "`ratelimited`; wait `Retry-After` seconds", "content": _TEXT},
    503: {"description": "`service_unavailable`; nothing was posted", "content": _TEXT},
}
_SLACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SlackAnswer, "description": "`ok` and the method's fields, or an `error`"},
    429: {"model": SlackAnswer, "description": "`ratelimited`; wait `Retry-After` seconds"},
    503: {"model": SlackAnswer, "description": "`service_unavailable`; nothing was done"},
}

_RESPONSE_URL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SlackAnswer, "description": "`ok: true`"},
    400: {"model": SlackAnswer, "description": "`invalid_payload`, `no_text`, "
                                                "`invalid_thread_ts`"},
    403: {"model": SlackAnswer, "description": "the app's bot may not post there"},
    404: {"model": SlackAnswer, "description": "`expired_url`: expired, used up or unknown"},
    409: {"model": SlackAnswer, "description": "the channel's state refuses the post, or "
                                                "`message_deleted`: the original to replace "
                                                "was deleted"},
    503: {"model": SlackAnswer, "description": "`service_unavailable`; nothing was done"},
}


def _route(m: Method) -> Any:
    async def endpoint(request: Request) -> Response:
        return await dispatch(request, m.name)

    endpoint.__name__ = "slack_" + m.name.replace(".", "_")
    return endpoint


# -- the other surfaces -------------------------------------------------------------------


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise InvalidInput("upload_interrupted", "the client went away mid-upload") from exc


Ticket = Annotated[str, Path(max_length=200, description="The signed upload ticket, as issued")]
Team = Annotated[str, Path(max_length=20, description="The workspace (T...)")]
Hook = Annotated[str, Path(max_length=20, description="The webhook (B...)")]
HookSecret = Annotated[str, Path(max_length=64, description="The webhook's secret")]
TeamFile = Annotated[str, Path(max_length=40, description="T...-F...: the workspace and file")]
FileName = Annotated[str, Path(max_length=300, description="The file's name (display only)")]


async def upload(request: Request, ticket: Ticket) -> Response:
    """The upload URL of `files.getUploadURLExternal`: the raw bytes of the
    file as the body (any content type), answered 200.  Streamed, bounded by
    the declared length."""
    raw = request.headers.get("content-length")
    length = int(raw) if raw is not None and raw.isdigit() else None
    f = await app_files.upload(_services(request), ticket, _body(request), length)
    return PlainTextResponse(f"OK - {f.size}")


async def webhook(request: Request, team: Team, hook: Hook, secret: HookSecret) -> Response:
    """An incoming webhook: Slack's JSON (`text`, `blocks`, `attachments`,
    `thread_ts`) or a form field `payload`; answers `text/plain` `ok`."""
    svc = _services(request)
    ws, hook_id = ids.parse("T", team), ids.parse("B", hook)
    try:
        if ws is None or hook_id is None or len(secret) != 32:
            raise webhooks.WebhookError(404, "no_service", "no such webhook")
        data = webhooks.parse_payload(await request.body(),
                                      request.headers.get("content-type", "").lower())
        _limiter(request).take_post(("hook", hook_id))

        async def root_of(ident: Identity, workspace_id: int, channel_id: int, ts: str) -> int:
            parsed = ids.parse_ts(ts)
            msg = None if parsed is None else await messages.message_at(
                svc, ident, workspace_id, channel_id, parsed[0], parsed[1], ids.TS_MODULUS)
            if msg is None:
                raise webhooks.WebhookError(400, "invalid_thread_ts", "no such thread")
            return msg.thread_root_id if msg.thread_root_id is not None else msg.id

        await webhooks.post(svc, ws, hook_id, secret, data, thread_root_of=root_of,
                            text_in=ids.text_in)
    except webhooks.WebhookError as exc:
        return PlainTextResponse(exc.code, status_code=exc.status)
    except SlackError as exc:  # ratelimited
        return PlainTextResponse(exc.error, status_code=exc.status,
                                 headers={"Retry-After": str(exc.retry_after_s or 1)})
    except (StoreUnavailable, Unavailable):
        return PlainTextResponse("service_unavailable", status_code=503,
                                 headers={"Retry-After": "1"})
    return PlainTextResponse("ok")


# Unbounded in the schema, checked below: every answer of this URL is Slack-shaped.
RTeam = Annotated[str, Path(description="The workspace (T...)")]
UrlRef = Annotated[str, Path(description="The response URL's id")]
RSecret = Annotated[str, Path(description="The response URL's secret")]


async def command_response(request: Request, team: RTeam, ref: UrlRef,
                           secret: RSecret) -> Response:
    """A slash command's or an interaction's `response_url`: Slack's JSON
    (`text`, `blocks`, `response_type`, `replace_original` / `delete_original`:
    edit / delete the original message, `thread_ts`), up to 5 posts within
    30 minutes; answers `{"ok": true}`, or 404
    `expired_url` (expired, used up or made up), 400 `invalid_payload` /
    `no_text`."""
    svc = _services(request)
    try:
        ws, uid = ids.parse("T", team), ids.dec(ref)  # both bounded by their regexes
        if ws is None or uid is None or len(secret) != 32:
            raise commands.ResponseUrlError(404, "expired_url")
        try:
            data = webhooks.parse_payload(await request.body(),
                                          request.headers.get("content-type", "").lower())
        except webhooks.WebhookError as exc:
            raise commands.ResponseUrlError(400, "invalid_payload") from exc

        async def root_of(ident: Identity, workspace_id: int, channel_id: int, ts: str) -> int:
            parsed = ids.parse_ts(ts)
            msg = None if parsed is None else await messages.message_at(
                svc, ident, workspace_id, channel_id, parsed[0], parsed[1], ids.TS_MODULUS)
            if msg is None:
                raise commands.ResponseUrlError(400, "invalid_thread_ts")
            return msg.thread_root_id if msg.thread_root_id is not None else msg.id

        await commands.respond(svc, ws, uid, secret, data, thread_root_of=root_of)
    except commands.ResponseUrlError as exc:
        return JSONResponse({"ok": False, "error": exc.error}, status_code=exc.status)
    except (StoreUnavailable, Unavailable):
        return JSONResponse({"ok": False, "error": "service_unavailable"}, status_code=503,
                            headers={"Retry-After": "1"})
    except DomainError as exc:
        return JSONResponse({"ok": False, "error": exc.code}, status_code=exc.status)
    return JSONResponse({"ok": True})


async def download(request: Request, team_file: TeamFile, name: FileName) -> Response:
    """`url_private` of a file: its bytes for an app token with `files:read`
    (`Authorization: Bearer xoxb-...`), checked on every request."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("not_authed", "send Authorization: Bearer <app token>")
    svc = _services(request)
    auth = await apps.authenticate(svc, token.strip())
    team, _, fid_raw = team_file.partition("-")
    fid = ids.parse("F", fid_raw)
    if ids.parse("T", team) != auth.workspace_id or fid is None:
        raise NotFound("file_not_found", "no such file")
    if "files:read" not in auth.scopes:
        raise Forbidden("missing_scope", "the token needs files:read")
    d = await files.download(svc, auth.ident, auth.workspace_id, fid,
                             thumbnail=request.query_params.get("thumb") == "1")
    headers = dict(SECURITY_HEADERS)
    if d.url is not None:
        return RedirectResponse(d.url, status_code=302, headers=headers)
    body = await files.open_stream(svc, d.key)
    headers["Content-Disposition"] = d.disposition
    return StreamingResponse(body, media_type=d.content_type, headers=headers)


def install(app: FastAPI) -> None:
    """Add the Web API's routes (after every other route: the catch-all
    ``/api/{method}`` answers ``unknown_method``)."""
    for name in sorted(REGISTRY):
        m = REGISTRY[name]
        for verb in m.verbs:  # one route per verb: each needs its own operation id
            app.add_api_route(f"/api/{name}", _route(m), methods=[verb], tags=[TAG],
                              summary=name, description=_description(m),
                              operation_id=f"slack_{name.replace('.', '_')}_{verb.lower()}",
                              response_class=JSONResponse, responses=_SLACK_RESPONSES,
                              openapi_extra=_BODY if verb == "POST" else None)
    app.add_api_route("/upload/v1/{ticket}", upload, methods=["POST"], tags=[TAG],
                      summary="Upload URL (files.getUploadURLExternal)",
                      response_class=PlainTextResponse,
                      openapi_extra={"requestBody": {"required": True, "content": {
                          "application/octet-stream": {"schema": {"type": "string",
                                                                  "format": "binary"}}}}})
    app.add_api_route("/services/{team}/{hook}/{secret}", webhook, methods=["POST"], tags=[TAG],
                      summary="Incoming webhook", response_class=PlainTextResponse,
                      responses=_WEBHOOK_RESPONSES, openapi_extra=_BODY)
    app.add_api_route("/commands/{team}/{ref}/{secret}", command_response, methods=["POST"],
                      tags=[TAG], summary="A response_url (slash commands, interactivity)",
                      response_class=JSONResponse, responses=_RESPONSE_URL_RESPONSES,
                      openapi_extra=_BODY)
    app.add_api_route("/files-pri/{team_file}/{name}", download, methods=["GET"], tags=[TAG],
                      summary="A file's bytes (url_private)", response_class=Response)

    async def unknown(request: Request, method: str) -> Response:
        return await dispatch(request, method)

    app.add_api_route("/api/{method}", unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
