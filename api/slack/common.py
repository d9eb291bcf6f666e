"""What several method modules share: rendering a page of messages, and
resolving the arguments that name a thread or a channel to post in."""

from __future__ import annotations

from typing import Any

from api.slack import ids, shapes
from api.slack.errors import SlackError
from api.slack.registry import Call
from parley.actions import channels, messages, rich
from storage.interfaces import Channel, ChannelView, Message, MessageExtras

NAME_SCAN_PAGES = 10  # pages of 200 channels searched for a channel given by name


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


async def thread_root(call: Call, channel: Channel, name: str = "thread_ts") -> int | None:
    """The root message id named by ``thread_ts`` (a reply's ts names its
    thread, as in Slack)."""
    if not call.args.has(name):
        return None
    msg = await call.message(channel, name)
    assert msg is not None
    return msg.thread_root_id if msg.thread_root_id is not None else msg.id


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
