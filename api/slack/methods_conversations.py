"""conversations.* and users.conversations.

Pagination: ``cursor`` and ``limit``; ``response_metadata.next_cursor`` is
the empty string on the last page.  History is newest first and shows what
a channel's main view shows (top-level messages and replies also sent to
the channel; deleted ones only as tombstones of threads that have replies).
"""

from __future__ import annotations

from typing import Any

from api.slack.common import render
from api.slack.errors import SlackError, invalid
from api.slack.registry import KIND_SCOPES, Call, method
from parley import slack_ids as ids
from parley.actions import channels, messages
from parley.actions import slack_shapes as shapes
from parley.model import Channel, ChannelView

_TYPES = {"public_channel": "public", "private_channel": "private", "im": "dm",
          "mpim": "group_dm"}
_READ = ("channels:read", "groups:read", "im:read", "mpim:read")
_HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")
_WRITE = ("channels:manage", "channels:write", "groups:write", "im:write", "mpim:write")
SEQ_MAX = 2**62  # above any seq
LIST_LIMIT_MAX = 1000  # Slack's


def _next(cursor: str | None) -> dict[str, Any]:
    return {"response_metadata": {"next_cursor": cursor or ""}}


async def _dm_user(call: Call, c: Channel) -> int | None:
    if c.kind != "dm":
        return None
    members = await channels.channel_members(call.svc, call.ident, call.ws, c.id, 0, 3)
    others = [m.user_id for m in members if m.user_id != call.ident.user_id]
    return others[0] if others else call.ident.user_id


async def _conversation(call: Call, v: ChannelView, *, num_members: bool = False) -> dict[str, Any]:
    c = v.channel
    count = (await channels.member_count(call.svc, call.ident, call.ws, c.id)
             if num_members else None)
    return shapes.conversation(c, is_member=v.is_member, num_members=count,
                               dm_user=await _dm_user(call, c), unread=v.unread_count)


def _kinds(call: Call, default: str) -> set[str]:
    kinds: set[str] = set()
    for t in call.args.items("types") or [default]:
        if t not in _TYPES:
            raise SlackError("invalid_types")
        kinds.add(_TYPES[t])
    for k in kinds:
        call.need(KIND_SCOPES["read"][k])
    return kinds


async def _list(call: Call, *, include_public: bool, default_types: str) -> dict[str, Any]:
    kinds = _kinds(call, default_types)
    exclude_archived = call.args.flag("exclude_archived")
    limit = call.args.number("limit", default=100, lo=1, hi=LIST_LIMIT_MAX)
    after = call.cursor("c") or 0
    out: list[dict[str, Any]] = []
    more = True
    while len(out) < limit and more:
        page = await channels.list_channels(call.svc, call.ident, call.ws,
                                            include_public=include_public, after_id=after,
                                            limit=channels.LIST_PAGE_MAX)
        more = len(page) == channels.LIST_PAGE_MAX
        for v in page:
            after = v.channel.id
            if v.channel.kind in kinds and not (exclude_archived and v.channel.archived):
                out.append(await _conversation(call, v))
                if len(out) == limit:
                    more = more or v is not page[-1]
                    break
    return {"channels": out, **_next(ids.cursor("c", after) if more else None)}


@method("conversations.list", tier=2, scopes=_READ, read=True,
        args=("types", "exclude_archived", "limit", "cursor"))
async def conversations_list(call: Call) -> dict[str, Any]:
    """Conversations the bot can see: its own and every public channel
    (`types`: public_channel, private_channel, mpim, im)."""
    return await _list(call, include_public=True, default_types="public_channel")


@method("users.conversations", tier=3, scopes=_READ, read=True,
        args=("types", "exclude_archived", "limit", "cursor", "user"))
async def users_conversations(call: Call) -> dict[str, Any]:
    """The conversations the bot is a member of (`user` may only name the bot)."""
    if call.args.has("user") and ids.parse("UW", call.args.raw("user")) != call.ident.user_id:
        raise invalid("user: only the token's own user is supported")
    return await _list(call, include_public=False, default_types="public_channel")


@method("conversations.info", tier=3, scopes=_READ, read=True,
        args=("channel", "include_num_members", "include_locale"))
async def info(call: Call) -> dict[str, Any]:
    """One conversation (public ones' metadata even when the bot is not in them)."""
    view = await call.channel()
    return {"channel": await _conversation(call, view,
                                           num_members=call.args.flag("include_num_members"))}


@method("conversations.history", tier=3, scopes=_HISTORY, read=True,
        args=("channel", "oldest", "latest", "inclusive", "limit", "cursor"))
async def history(call: Call) -> dict[str, Any]:
    """A channel's messages, newest first, between `oldest` and `latest`
    (exclusive unless `inclusive`); thread replies only when also sent to
    the channel.  Only channels the bot is in."""
    view = await call.channel(access="history")
    c = view.channel
    inclusive = call.args.flag("inclusive")
    before = SEQ_MAX
    latest = await call.seq_bound(c, "latest")
    if latest is not None:
        seq, exact = latest
        before = seq + 1 if exact and inclusive else seq
    after = 0
    oldest = await call.seq_bound(c, "oldest")
    if oldest is not None:
        seq, exact = oldest
        after = seq - 1 if (inclusive or not exact) else seq
    cursor = call.cursor("s")
    if cursor is not None:
        before = min(before, cursor)
    limit = call.args.number("limit", default=100, lo=1, hi=messages.HISTORY_PAGE_MAX)
    page = await messages.channel_page(call.svc, call.ident, call.ws, c.id, after_seq=after,
                                       before_seq=before, limit=limit + 1, newest_first=True)
    has_more = len(page) > limit
    page = page[:limit]
    rendered = [m for m in await render(call, c, page)
                if m.get("subtype") != "tombstone" or m.get("reply_count")]
    return {"messages": rendered, "has_more": has_more, "pin_count": 0,
            "channel_actions_ts": None, "channel_actions_count": 0,
            **_next(ids.cursor("s", page[-1].seq) if has_more else None)}


@method("conversations.replies", tier=3, scopes=_HISTORY, read=True,
        args=("channel", "ts", "oldest", "latest", "inclusive", "limit", "cursor"))
async def replies(call: Call) -> dict[str, Any]:
    """A thread: its root first (on every page), then replies in order."""
    view = await call.channel(access="history")
    c = view.channel
    msg = await call.message(c)
    assert msg is not None
    root_id = msg.thread_root_id if msg.thread_root_id is not None else msg.id
    limit = call.args.number("limit", default=200, lo=1, hi=messages.THREAD_PAGE_MAX)
    after = call.cursor("r") or 0
    oldest = await call.seq_bound(c, "oldest")
    if oldest is not None:
        after = max(after, oldest[0] - (1 if call.args.flag("inclusive") or not oldest[1]
                                        else 0))
    latest = await call.seq_bound(c, "latest")
    root, rest, _ = await messages.thread(call.svc, call.ident, call.ws, c.id, root_id, after,
                                          limit + 1)
    if latest is not None:
        top = latest[0] + (1 if latest[1] and call.args.flag("inclusive") else 0)
        rest = [r for r in rest if r.message.seq < top]
    has_more = len(rest) > limit
    rest = rest[:limit]
    shown = [root.message, *[r.message for r in rest if not r.message.deleted]]
    return {"messages": await render(call, c, shown), "has_more": has_more,
            **_next(ids.cursor("r", rest[-1].message.seq) if has_more and rest else None)}


@method("conversations.create", tier=2, scopes=("channels:manage", "groups:write"),
        args=("name", "is_private"))
async def create(call: Call) -> dict[str, Any]:
    """Create a channel (the bot is its creator and first member)."""
    private = call.args.flag("is_private")
    call.need("groups:write" if private else "channels:manage")
    name = call.args.text("name", required=True, max_len=200)
    c = await channels.create_channel(call.svc, call.ident, call.ws, name,
                                      "private" if private else "public")
    return {"channel": shapes.conversation(c, is_member=True)}


@method("conversations.join", tier=3, scopes=("channels:join",), args=("channel",))
async def join(call: Call) -> dict[str, Any]:
    """Join a public channel (`warning: already_in_channel` when in it already)."""
    view = await call.channel(access=None)
    if view.is_member:
        call.warn("already_in_channel")
    c = await channels.join_channel(call.svc, call.ident, call.ws, view.channel.id)
    return {"channel": shapes.conversation(c, is_member=True)}


def _users(call: Call, name: str) -> list[int]:
    out = []
    for raw in call.args.items(name, required=True):
        uid = ids.parse("UW", raw)
        if uid is None:
            raise SlackError("user_not_found")
        out.append(uid)
    return out


@method("conversations.invite", tier=3, scopes=_WRITE, args=("channel", "users"))
async def invite(call: Call) -> dict[str, Any]:
    """Add members to a channel the bot is in."""
    view = await call.channel(access="write")
    users = _users(call, "users")
    if call.ident.user_id in users:
        raise SlackError("cant_invite_self")
    added = await channels.add_to_channel(call.svc, call.ident, call.ws, view.channel.id, users)
    if not added:
        raise SlackError("already_in_channel")
    return {"channel": shapes.conversation(view.channel, is_member=True)}


@method("conversations.kick", tier=3, scopes=_WRITE, args=("channel", "user"))
async def kick(call: Call) -> dict[str, Any]:
    """Remove a member from a channel (needs the bot to be its creator, as
    for a member, or a staff role)."""
    view = await call.channel(access="write")
    uid = ids.parse("UW", call.args.text("user", required=True))
    if uid is None:
        raise SlackError("user_not_found")
    if uid == call.ident.user_id:
        raise SlackError("cant_kick_self")
    if view.channel.name == channels.DEFAULT_CHANNEL:
        raise SlackError("cant_kick_from_general")
    await channels.remove_from_channel(call.svc, call.ident, call.ws, view.channel.id, uid)
    return {}


@method("conversations.leave", tier=3, scopes=_WRITE, args=("channel",))
async def leave(call: Call) -> dict[str, Any]:
    """Leave a channel (`not_in_channel: true` when not in it)."""
    view = await call.channel(access="write")
    if not view.is_member:
        return {"not_in_channel": True}
    await channels.leave_channel(call.svc, call.ident, call.ws, view.channel.id)
    return {}


@method("conversations.members", tier=4, scopes=_READ, read=True,
        args=("channel", "limit", "cursor"))
async def members(call: Call) -> dict[str, Any]:
    """Member ids of a conversation, by id."""
    view = await call.channel()
    limit = call.args.number("limit", default=100, lo=1, hi=channels.MEMBER_PAGE_MAX)
    rows = await channels.channel_members(call.svc, call.ident, call.ws, view.channel.id,
                                          call.cursor("u") or 0, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"members": [ids.user(m.user_id) for m in rows],
            **_next(ids.cursor("u", rows[-1].user_id) if more else None)}


@method("conversations.mark", tier=3, scopes=_WRITE, args=("channel", "ts"))
async def mark(call: Call) -> dict[str, Any]:
    """Move the bot's read position to the message `ts`."""
    view = await call.channel(access=None)
    if view.channel.kind == "public":
        call.need("channels:manage", "channels:write")
    else:
        call.need_for("write", view.channel)
    msg = await call.message(view.channel)
    assert msg is not None
    await channels.mark_read(call.svc, call.ident, call.ws, view.channel.id, msg.seq)
    return {}


@method("conversations.open", tier=3, scopes=("im:write", "mpim:write"),
        args=("users", "channel", "return_im"))
async def open_dm(call: Call) -> dict[str, Any]:
    """Open (or find) the DM with one member or the group DM with several."""
    if call.args.has("channel"):
        view = await call.channel(access="write")
        c, created = view.channel, False
    else:
        users = [u for u in _users(call, "users") if u != call.ident.user_id]
        if not users:
            raise SlackError("cant_dm_bot")
        call.need("im:write" if len(users) == 1 else "mpim:write")
        c, created = await channels.open_dm(call.svc, call.ident, call.ws, users)
    if call.args.flag("return_im"):
        body = shapes.conversation(c, is_member=True,
                                   dm_user=await _dm_user(call, c))
    else:
        body = {"id": ids.channel(c.kind, c.id)}
    return {"no_op": not created, "already_open": not created, "channel": body}
