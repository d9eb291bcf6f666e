"""auth.*, users.*, team.info and bots.info."""

from __future__ import annotations

import time
from typing import Any

from api.slack.errors import SlackError
from api.slack.registry import Call, method
from parley import slack_ids as ids
from parley.actions import apps, workspaces
from parley.actions import slack_shapes as shapes
from parley.model import Member

_ALL_TOKENS = frozenset({"bot", "user", "app"})


@method("auth.test", tier="special", read=True, token_kinds=_ALL_TOKENS)
async def auth_test(call: Call) -> dict[str, Any]:
    """Who the token is: team, user and bot ids (the granted scopes are in
    the `x-oauth-scopes` header of every answer).  Two primary-key reads
    besides the token's, since multi-workspace Bolt apps call it per request."""
    ws, me = await workspaces.get_workspace(call.svc, call.ident, call.ws)
    out: dict[str, Any] = {
        "url": f"{call.base_url}/", "team": ws.name, "user": shapes.handle(me.display_name,
                                                                           me.user_id),
        "team_id": ids.team(ws.id), "user_id": ids.user(me.user_id),
        "is_enterprise_install": False}
    if call.auth.kind in {"bot", "app"}:
        out["bot_id"] = ids.bot(call.auth.bot_id)
        out["app_id"] = ids.app(call.auth.app_id)
    if call.auth.kind == "app":
        out["app_name"] = me.display_name
    return out


@method("auth.revoke", tier=3, read=True, args=("test",), token_kinds=_ALL_TOKENS)
async def auth_revoke(call: Call) -> dict[str, Any]:
    """Revoke the calling token, at once (`test=1`: only say it would)."""
    if call.args.flag("test"):
        return {"revoked": False}
    await apps.revoke_own_token(call.svc, call.auth)
    return {"revoked": True}


async def _user(call: Call, m: Member, *, email: str | None = None) -> dict[str, Any]:
    app = (await apps.app_of_bot_user(call.svc, call.ident, call.ws, m.user_id)
           if m.is_bot else None)
    if email is None and not m.is_bot and call.has_scope("users:read.email"):
        email = await workspaces.member_email(call.svc, call.ident, call.ws, m.user_id)
    return shapes.user(m, email=email, app=app)


def _user_arg(call: Call, name: str = "user") -> int:
    uid = ids.parse("UW", call.args.text(name, required=True))
    if uid is None:
        raise SlackError("user_not_found")
    return uid


@method("users.info", tier=4, scopes=("users:read",), read=True,
        args=("user", "include_locale"))
async def users_info(call: Call) -> dict[str, Any]:
    """A member of the workspace (a former one shows `deleted: true`); the
    e-mail address only with `users:read.email`."""
    m = await workspaces.get_member(call.svc, call.ident, call.ws, _user_arg(call))
    return {"user": await _user(call, m)}


@method("users.list", tier=2, scopes=("users:read",), read=True,
        args=("limit", "cursor", "include_locale"))
async def users_list(call: Call) -> dict[str, Any]:
    """Active members, bots included, by id."""
    limit = call.args.number("limit", default=200, lo=1, hi=workspaces.MEMBER_PAGE_MAX)
    rows = await workspaces.list_members(call.svc, call.ident, call.ws, call.cursor("m") or 0,
                                         limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"members": [await _user(call, m) for m in rows], "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": ids.cursor("m", rows[-1].user_id)
                                  if more else ""}}


@method("users.lookupByEmail", tier=3, scopes=("users:read.email",), read=True,
        args=("email",))
async def users_lookup_by_email(call: Call) -> dict[str, Any]:
    """The active member with this e-mail address (never a bot)."""
    email = call.args.text("email", required=True, max_len=254)
    m = await workspaces.member_by_email(call.svc, call.ident, call.ws, email)
    return {"user": await _user(call, m, email=email.strip())}


@method("team.info", tier=3, scopes=("team:read",), read=True, args=("team",))
async def team_info(call: Call) -> dict[str, Any]:
    """The workspace."""
    if call.args.has("team") and ids.parse("T", call.args.raw("team")) != call.ws:
        raise SlackError("team_not_found")
    ws, _ = await workspaces.get_workspace(call.svc, call.ident, call.ws)
    return {"team": shapes.team(ws, call.base_url)}


@method("bots.info", tier=3, scopes=("users:read",), read=True, args=("bot",))
async def bots_info(call: Call) -> dict[str, Any]:
    """An app's bot of this workspace (`deleted` once uninstalled)."""
    bot_id = ids.parse("B", call.args.text("bot", required=True))
    if bot_id is None:
        raise SlackError("bot_not_found")
    return {"bot": shapes.bot(await apps.bot_app(call.svc, call.ident, call.ws, bot_id))}
