"""What several method modules share: rendering a page of messages, and
resolving the arguments that name a thread or a channel to post in."""

from __future__ import annotations

import re
from typing import Any

from api.slack.errors import SlackError
from api.slack.registry import Call
from parley import slack_ids as ids
from parley.actions import channels, messages, rich
from parley.actions import slack_shapes as shapes
from parley.errors import DomainError
from parley.model import Channel, ChannelView, Message, MessageExtras

NAME_SCAN_PAGES = 10  # pages of 200 channels searched for a channel given by name
_ID_SHAPED = re.compile(r"^[CGD][0-9A-Z]+$")


async def render(call: Call, channel: Channel, msgs: list[Message]) -> list[dict[str, Any]]:
    """Messages in Slack's shape, with reactions, threads, pins, files and
    extras, and the ``thread_ts`` of replies (their roots are read)."""
    views = await messages.enrich(call.svc, call.ws, channel.id, msgs)
    root_ids = [m.thread_root_id for m in msgs if m.thread_root_id is not None]
    roots = await messages.messages_by_id(call.svc, call.ident, call.ws, channel.id,
                                          root_ids) if root_ids else {}
    for m in msgs:  # a root on the page names itself
        roots.setdefault(m.id, m)
    return [shapes.message(v, channel=channel, roots=roots, base_url=call.base_url)
            for v in views]


async def root_message(call: Call, channel: Channel | int,
                       name: str = "thread_ts") -> Message | None:
    """The thread root named by ``thread_ts`` (a reply's ts names its
    thread, as in Slack), or None when the argument is absent."""
    if not call.args.has(name):
        return None
    msg = await call.message(channel, name)
    assert msg is not None
    if msg.thread_root_id is None:
        return msg
    cid = channel if isinstance(channel, int) else channel.id
    roots = await messages.messages_by_id(call.svc, call.ident, call.ws, cid,
                                          [msg.thread_root_id])
    root = roots.get(msg.thread_root_id)
    if root is None:
        raise SlackError("message_not_found")
    return root


async def thread_root(call: Call, channel: Channel | int, name: str = "thread_ts") -> int | None:
    root = await root_message(call, channel, name)
    return None if root is None else root.id


async def post_channel(call: Call, name: str = "channel") -> tuple[int, str]:
    """(channel id, its Web API id) to post in, without reading the channel
    when it is given by id: the group-commit writer checks membership in the
    write transaction anyway, and ``refine_post_error`` explains a refusal.
    A user id names the DM with them; a name is looked up."""
    raw = call.args.text(name, required=True, max_len=100)
    cid = ids.parse(ids.CHANNEL_LETTERS, raw)
    if cid is not None:
        return cid, raw
    if _ID_SHAPED.match(raw):  # a channel id, but no valid one
        raise SlackError("channel_not_found")
    c = await post_target(call, name)  # a user id (the DM) or a name
    return c.id, ids.channel(c.kind, c.id)


async def refine_post_error(call: Call, channel_id: int) -> SlackError:
    """A post refused as ``channel_not_found``: ``not_in_channel`` when the
    channel is a public one the bot can see but has not joined (Slack's
    answer), else ``channel_not_found``."""
    try:
        view = await channels.get_channel(call.svc, call.ident, call.ws, channel_id)
    except DomainError:  # any refusal of the lookup: the channel stays unknown
        return SlackError("channel_not_found")
    return SlackError("channel_not_found" if view.is_member else "not_in_channel")


async def post_target(call: Call, name: str = "channel") -> Channel:
    """The conversation to post in: a channel id, a user id (the DM with
    them, as Slack does) or a channel name (``#general`` or ``general``).
    ``not_in_channel`` for a public channel the bot has not joined (one it
    cannot see is ``channel_not_found``)."""
    view = await _post_target(call, name)
    if not view.is_member:
        raise SlackError("not_in_channel")
    return view.channel


async def _post_target(call: Call, name: str) -> ChannelView:
    raw = call.args.text(name, required=True, max_len=100)
    if raw[0] in ids.CHANNEL_LETTERS and ids.parse(ids.CHANNEL_LETTERS, raw) is not None:
        return await call.channel(name, access=None)
    uid = ids.parse("UW", raw)
    if uid is not None:
        channel, _ = await channels.open_dm(call.svc, call.ident, call.ws, [uid])
        return ChannelView(channel, True, None, None, None)
    wanted = raw.lstrip("#").lower()
    after = 0
    for _ in range(NAME_SCAN_PAGES):
        page = await channels.list_channels(call.svc, call.ident, call.ws, include_public=True,
                                            after_id=after, limit=channels.LIST_PAGE_MAX)
        for v in page:
            if v.channel.name == wanted:
                return v
        if len(page) < channels.LIST_PAGE_MAX:
            break
        after = page[-1].channel.id
    raise SlackError("channel_not_found")


def content(call: Call, *, required: bool = True) -> tuple[str, MessageExtras | None]:
    """``text`` (Slack mentions converted), ``blocks`` and ``attachments``;
    ``no_text`` when all are missing."""
    text = ids.text_in(call.args.text("text"))
    blocks = rich.blocks(call.args.json("blocks"))  # refusals: invalid_blocks / _attachments
    attachments = rich.attachments(call.args.json("attachments"))
    if required and not text.strip() and blocks is None and not rich.attachments_text(
            attachments):
        raise SlackError("no_text")
    extras = None if blocks is None and attachments is None else MessageExtras(
        blocks=blocks, attachments=attachments)
    return text, extras
