"""The Web API's method table: name -> handler, rate-limit tier, scopes,
HTTP verbs, and the call context handlers get.

Rules:

* A method is registered once, with ``@method(...)`` in an
  ``api/slack/methods_*.py`` module; the routes, the OpenAPI document and
  docs/apps.md's table all come from ``REGISTRY``.
* ``scopes`` are alternatives: the token needs one of them (Slack's
  per-conversation-type scopes are checked again by the handler once the
  conversation is known, ``Call.need_for``).  An empty tuple: no scope.
* ``tier`` is Slack's: 1-4 (1, 20, 50, 100 calls per minute per app and
  method, with bursts of a minute's worth), ``"special"`` for
  ``auth.test`` (600 per minute) and ``"post"`` for ``chat.postMessage``
  (about one per second per channel, bursts of ``webapi_post_burst``).
* Read methods also answer GET, as ``AsyncWebClient`` sends them that way.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from api.slack.args import Args
from api.slack.errors import SlackError, invalid
from parley import slack_ids as ids
from parley.actions import channels as channel_actions
from parley.actions import messages as message_actions
from parley.actions.apps import AppAuth
from parley.auth import Identity
from parley.model import Channel, ChannelView, Message
from parley.ratelimit import TokenBuckets
from parley.services import Services

TIER_PER_MIN: dict[int | str, float] = {1: 1.0, 2: 20.0, 3: 50.0, 4: 100.0, "special": 600.0}

Handler = Callable[["Call"], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    tier: int | str
    scopes: tuple[str, ...]
    read: bool  # also answers GET
    summary: str
    args: tuple[str, ...]  # the arguments it reads (documentation)
    token_kinds: frozenset[str]  # 'bot' | 'app' | 'user'

    @property
    def verbs(self) -> list[str]:
        return ["GET", "POST"] if self.read else ["POST"]


REGISTRY: dict[str, Method] = {}


_PEOPLE_TOKENS = frozenset({"bot", "user"})


def method(name: str, *, tier: int | str, scopes: tuple[str, ...] = (), read: bool = False,
           args: tuple[str, ...] = (),
           token_kinds: frozenset[str] = _PEOPLE_TOKENS) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if name in REGISTRY:
            raise ValueError(f"{name} registered twice")
        doc = (fn.__doc__ or "").strip()
        REGISTRY[name] = Method(name, fn, tier, scopes, read, doc, args, token_kinds)
        return fn
    return register


# Which scope a conversation type needs, per kind of access (Slack's).
KIND_SCOPES: dict[str, dict[str, str]] = {
    "read": {"public": "channels:read", "private": "groups:read", "dm": "im:read",
             "group_dm": "mpim:read"},
    "history": {"public": "channels:history", "private": "groups:history",
                "dm": "im:history", "group_dm": "mpim:history"},
    "write": {"public": "channels:manage", "private": "groups:write", "dm": "im:write",
              "group_dm": "mpim:write"},
}


@dataclass
class Call:
    """One Web API call: the services, the authenticated token, its
    arguments, and what handlers share (channel and message lookups)."""

    svc: Services
    auth: AppAuth
    args: Args
    method: Method
    base_url: str  # e.g. http://127.0.0.1:8080, for URLs in answers
    limiter: Limiter
    warnings: list[str] = field(default_factory=list)

    @property
    def ident(self) -> Identity:
        return self.auth.ident

    @property
    def ws(self) -> int:
        return self.auth.workspace_id

    def has_scope(self, *scopes: str) -> bool:
        return any(s in self.auth.scopes for s in scopes)

    def need(self, *scopes: str) -> None:
        """``missing_scope`` unless the token has one of ``scopes``."""
        if scopes and not self.has_scope(*scopes):
            raise SlackError("missing_scope", extra={"needed": ",".join(scopes),
                                                     "provided": ",".join(self.auth.scopes)})

    def need_for(self, access: str, channel: Channel) -> None:
        self.need(KIND_SCOPES[access][channel.kind])

    def take_post(self, channel_id: int) -> None:
        """The per-channel bucket of the ``"post"`` tier (chat.postMessage)."""
        self.limiter.take(self.method, self.auth, channel_id)

    def warn(self, warning: str) -> None:
        if warning not in self.warnings:
            self.warnings.append(warning)

    def channel_id(self, name: str = "channel", *, required: bool = True) -> int | None:
        raw = self.args.raw(name)
        if raw is None or raw == "":
            if required:
                raise invalid(f"missing required field: {name}")
            return None
        cid = ids.parse(ids.CHANNEL_LETTERS, raw)
        if cid is None:
            raise SlackError("channel_not_found")
        return cid

    async def channel(self, name: str = "channel", access: str | None = "read") -> ChannelView:
        """The channel named by argument ``name``, if the bot may see it
        (like a member: its own, and public ones' metadata), checking the
        scope for ``access`` to its type."""
        cid = self.channel_id(name)
        assert cid is not None
        view = await channel_actions.get_channel(self.svc, self.ident, self.ws, cid)
        if access is not None:
            self.need_for(access, view.channel)
        return view

    async def message(self, channel: Channel | int, name: str = "ts", *,
                      required: bool = True) -> Message | None:
        """The message of ``channel`` (a channel or its id) whose ts is
        argument ``name``."""
        cid = channel if isinstance(channel, int) else channel.id
        raw = self.args.raw(name)
        if raw is None or raw == "":
            if required:
                raise invalid(f"missing required field: {name}")
            return None
        parsed = ids.parse_ts(raw)
        if parsed is None:
            raise SlackError("message_not_found")
        msg = await message_actions.message_at(self.svc, self.ident, self.ws, cid,
                                               parsed[0], parsed[1], ids.TS_MODULUS)
        if msg is None or msg.deleted:
            raise SlackError("message_not_found")
        return msg

    async def seq_bound(self, channel: Channel, name: str) -> tuple[int, bool] | None:
        """A time bound argument as (seq, exact): the seq of the message it
        names (exact), or the first seq created at or after that time."""
        raw = self.args.raw(name)
        if raw is None or raw == "":
            return None
        parsed = ids.parse_ts(raw)
        if parsed is not None:
            msg = await message_actions.message_at(self.svc, self.ident, self.ws, channel.id,
                                                   parsed[0], parsed[1], ids.TS_MODULUS)
            if msg is not None:
                return msg.seq, True
        t = ids.parse_time(raw)
        if t is None:
            raise SlackError(f"invalid_ts_{name}")
        at = dt.datetime.fromtimestamp(t, tz=dt.UTC)
        return await message_actions.seq_at(self.svc, self.ident, self.ws, channel.id, at), False

    def cursor(self, kind: str) -> int | None:
        try:
            return ids.parse_cursor(kind, self.args.raw("cursor"))
        except ValueError as exc:
            raise SlackError("invalid_cursor") from exc


class Limiter:
    """The Web API's token buckets (per process, like the REST API's)."""

    def __init__(self, scale: float, post_per_s: float, post_burst: float) -> None:
        self.settings = (scale, post_per_s, post_burst)
        self._tiers = {tier: TokenBuckets(per_min * scale / 60.0, max(1.0, per_min * scale))
                       for tier, per_min in TIER_PER_MIN.items()}
        self._post = TokenBuckets(post_per_s, max(1.0, post_burst))

    @staticmethod
    def _check(wait: float) -> None:
        if wait > 0:
            # Whole seconds, rounded up: slack_sdk's retry handler int()s it.
            raise SlackError("ratelimited", status=429, retry_after_s=max(1, math.ceil(wait)))

    def take(self, m: Method, auth: AppAuth, channel_key: object = None) -> None:
        """One call of ``m``: per app and method for tiers 1-4 and special,
        per app and channel for ``"post"``."""
        now = time.monotonic()
        if m.tier == "post":
            self._check(self._post.take((auth.app_id, channel_key), now))
        else:
            self._check(self._tiers[m.tier].take((auth.app_id, m.name), now))

    def take_post(self, key: object) -> None:
        """One post through an incoming webhook (the ``"post"`` bucket)."""
        self._check(self._post.take(key, time.monotonic()))
