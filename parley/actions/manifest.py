"""App manifests: Slack's app-manifest JSON, validated into ``Manifest``.

What is read (everything else a real manifest may carry, such as
``features.app_home`` or ``settings.org_deploy_enabled``, is kept verbatim
and not interpreted, so a manifest exported from Slack imports unchanged):

=========================================  ==========================================
``display_information.name``               the app's name (1-35 characters, unique)
``display_information.description``        shown with the app (optional)
``features.bot_user.display_name``         the bot user's name (default: the app name)
``features.slash_commands[]``              ``command``, ``url``, ``description``,
                                           ``usage_hint``, ``should_escape`` (part 2)
``oauth_config.scopes.bot``                granted to the bot token at install
``oauth_config.scopes.user``               for user tokens (OAuth v2; not yet issued)
``oauth_config.redirect_urls``             OAuth v2 redirect URLs
``settings.event_subscriptions``           ``request_url``, ``bot_events``,
                                           ``user_events`` (part 2: the Events API)
``settings.interactivity``                 ``is_enabled``, ``request_url``,
                                           ``message_menu_options_url`` (part 2)
``settings.socket_mode_enabled``           an app-level token (``xapp-``) at install
=========================================  ==========================================

Every error names the field (``invalid_manifest`` with a message such as
``oauth_config.scopes.bot[2]: unknown scope 'chat:wrte'``).  Text anywhere
in the manifest follows ``rich.bad_text`` (no NUL, no lone surrogate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from parley.actions import rich
from parley.errors import InvalidInput

APP_NAME_MAX = 35  # Slack's limit
BOT_NAME_MAX = 80  # Slack's limit for a bot's display name
DESCRIPTION_MAX = 140
URL_MAX = 2048  # characters of a request URL
SLASH_COMMANDS_MAX = 50  # Slack's limit per app
EVENTS_MAX = 100
MANIFEST_BYTES_MAX = 64 * 1024  # the whole manifest, serialized
_COMMAND_RE = re.compile(r"^/[a-z0-9_\-]{1,31}$")
_EVENT_RE = re.compile(r"^[a-z_]{1,64}(\.[a-z_]{1,32})?$")

#: Scopes Parley knows.  The Web API checks the ones it implements (see
#: ``api/slack``); the others are granted and recorded, for methods to come.
SCOPES: frozenset[str] = frozenset({
    "app_mentions:read", "bookmarks:read", "bookmarks:write", "calls:read", "calls:write",
    "channels:history", "channels:join", "channels:manage", "channels:read", "channels:write",
    "chat:write", "chat:write.customize", "chat:write.public", "commands", "connections:write",
    "dnd:read", "emoji:read", "files:read", "files:write", "groups:history", "groups:read",
    "groups:write", "im:history", "im:read", "im:write", "incoming-webhook", "links:read",
    "links:write", "metadata.message:read", "mpim:history", "mpim:read", "mpim:write",
    "pins:read", "pins:write", "reactions:read", "reactions:write", "reminders:read",
    "reminders:write", "team:read", "usergroups:read", "usergroups:write", "users.profile:read",
    "users:read", "users:read.email", "users:write",
})
APP_TOKEN_SCOPES = ("connections:write",)  # an app-level token's (Socket Mode)


@dataclass(frozen=True, slots=True)
class SlashCommand:
    command: str
    url: str | None  # None with Socket Mode (commands arrive over the socket)
    description: str
    usage_hint: str
    should_escape: bool


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    description: str
    bot_name: str
    bot_scopes: tuple[str, ...]
    user_scopes: tuple[str, ...]
    redirect_urls: tuple[str, ...]
    event_request_url: str | None
    bot_events: tuple[str, ...]
    user_events: tuple[str, ...]
    interactivity_enabled: bool
    interactivity_url: str | None
    options_url: str | None
    slash_commands: tuple[SlashCommand, ...]
    socket_mode: bool
    raw: dict[str, Any]  # the manifest as given (validated), stored verbatim

    def to_json(self) -> str:
        return json.dumps(self.raw, ensure_ascii=False, separators=(",", ":"))

    @property
    def webhooks_allowed(self) -> bool:
        return "incoming-webhook" in self.bot_scopes


def _bad(path: str, why: str) -> InvalidInput:
    return InvalidInput("invalid_manifest", f"{path}: {why}")


def _obj(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise _bad(f"{path}{key}", "must be an object")
    return value


def _str(parent: dict[str, Any], key: str, path: str, *, max_len: int, required: bool = False,
         default: str = "") -> str:
    value = parent.get(key)
    if value is None:
        if required:
            raise _bad(f"{path}{key}", "is required")
        return default
    if not isinstance(value, str):
        raise _bad(f"{path}{key}", "must be a string")
    value = value.strip()
    if (required and not value) or len(value) > max_len:
        raise _bad(f"{path}{key}", f"must have {1 if required else 0} to {max_len} characters")
    if any(ord(ch) < 32 for ch in value):
        raise _bad(f"{path}{key}", "may not contain control characters")
    return value


def _bool(parent: dict[str, Any], key: str, path: str) -> bool:
    value = parent.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"{path}{key}", "must be true or false")
    return value


def _url(parent: dict[str, Any], key: str, path: str) -> str | None:
    value = parent.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > URL_MAX:
        raise _bad(f"{path}{key}", f"must be a URL of at most {URL_MAX} characters")
    return _check_url(value, f"{path}{key}")


def _check_url(value: str, path: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise _bad(path, "is not a URL") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname or any(
            ord(ch) <= 32 for ch in value):
        raise _bad(path, "must be an absolute http(s) URL")
    return value


def _list(parent: dict[str, Any], key: str, path: str, max_items: int) -> list[Any]:
    value = parent.get(key, [])
    if not isinstance(value, list) or len(value) > max_items:
        raise _bad(f"{path}{key}", f"must be a list of at most {max_items} items")
    return value


def _scopes(parent: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, scope in enumerate(_list(parent, key, path, len(SCOPES))):
        if not isinstance(scope, str) or scope not in SCOPES:
            raise _bad(f"{path}{key}[{i}]", f"unknown scope {scope!r}")
        if scope not in out:
            out.append(scope)
    return tuple(out)


def _events(parent: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, ev in enumerate(_list(parent, key, path, EVENTS_MAX)):
        if not isinstance(ev, str) or not _EVENT_RE.match(ev):
            raise _bad(f"{path}{key}[{i}]", f"not an event type: {ev!r}")
        if ev not in out:
            out.append(ev)
    return tuple(out)


def _commands(features: dict[str, Any], socket_mode: bool) -> tuple[SlashCommand, ...]:
    out: list[SlashCommand] = []
    seen: set[str] = set()
    for i, c in enumerate(_list(features, "slash_commands", "features.", SLASH_COMMANDS_MAX)):
        path = f"features.slash_commands[{i}]."
        if not isinstance(c, dict):
            raise _bad(path.rstrip("."), "must be an object")
        command = _str(c, "command", path, max_len=32, required=True).lower()
        if not _COMMAND_RE.match(command):
            raise _bad(f"{path}command", "is '/' and 1-31 letters, digits, '-' or '_'")
        if command in seen:
            raise _bad(f"{path}command", f"{command} is listed twice")
        seen.add(command)
        url = _url(c, "url", path)
        if url is None and not socket_mode:
            raise _bad(f"{path}url", "is required unless Socket Mode is on")
        out.append(SlashCommand(command, url,
                                _str(c, "description", path, max_len=DESCRIPTION_MAX,
                                     required=True),
                                _str(c, "usage_hint", path, max_len=1000),
                                _bool(c, "should_escape", path)))
    return tuple(out)


def parse(raw: Any) -> Manifest:
    """Validate a manifest (a JSON object, or its text)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput("invalid_manifest", "the manifest is not JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("invalid_manifest", "the manifest is a JSON object")
    try:
        rich.json_array([raw], "manifest", 1)  # text rules and nesting, for every string
    except InvalidInput as exc:
        raise InvalidInput("invalid_manifest", exc.message) from exc
    if len(json.dumps(raw, ensure_ascii=False).encode()) > MANIFEST_BYTES_MAX:
        raise InvalidInput("invalid_manifest",
                           f"a manifest has at most {MANIFEST_BYTES_MAX} bytes")
    display = _obj(raw, "display_information", "")
    name = _str(display, "name", "display_information.", max_len=APP_NAME_MAX, required=True)
    features = _obj(raw, "features", "")
    bot_user = _obj(features, "bot_user", "features.")
    bot_name = _str(bot_user, "display_name", "features.bot_user.", max_len=BOT_NAME_MAX,
                    default=name) or name
    oauth = _obj(raw, "oauth_config", "")
    scopes = _obj(oauth, "scopes", "oauth_config.")
    redirects = []
    for i, u in enumerate(_list(oauth, "redirect_urls", "oauth_config.", 100)):
        if not isinstance(u, str) or len(u) > URL_MAX:
            raise _bad(f"oauth_config.redirect_urls[{i}]", "must be a URL")
        redirects.append(_check_url(u, f"oauth_config.redirect_urls[{i}]"))
    settings = _obj(raw, "settings", "")
    socket_mode = _bool(settings, "socket_mode_enabled", "settings.")
    subs = _obj(settings, "event_subscriptions", "settings.")
    event_url = _url(subs, "request_url", "settings.event_subscriptions.")
    bot_events = _events(subs, "bot_events", "settings.event_subscriptions.")
    user_events = _events(subs, "user_events", "settings.event_subscriptions.")
    if (bot_events or user_events) and event_url is None and not socket_mode:
        raise _bad("settings.event_subscriptions.request_url",
                   "is required for events unless Socket Mode is on")
    inter = _obj(settings, "interactivity", "settings.")
    inter_enabled = _bool(inter, "is_enabled", "settings.interactivity.")
    inter_url = _url(inter, "request_url", "settings.interactivity.")
    if inter_enabled and inter_url is None and not socket_mode:
        raise _bad("settings.interactivity.request_url",
                   "is required for interactivity unless Socket Mode is on")
    return Manifest(
        name=name,
        description=_str(display, "description", "display_information.",
                         max_len=DESCRIPTION_MAX),
        bot_name=bot_name,
        bot_scopes=_scopes(scopes, "bot", "oauth_config.scopes."),
        user_scopes=_scopes(scopes, "user", "oauth_config.scopes."),
        redirect_urls=tuple(redirects),
        event_request_url=event_url, bot_events=bot_events, user_events=user_events,
        interactivity_enabled=inter_enabled, interactivity_url=inter_url,
        options_url=_url(inter, "message_menu_options_url", "settings.interactivity."),
        slash_commands=_commands(features, socket_mode),
        socket_mode=socket_mode,
        raw=raw,
    )
