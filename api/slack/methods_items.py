"""reactions.*, pins.* and files.* (the upload flow of ``files_upload_v2``)."""

from __future__ import annotations

from typing import Any

from api.slack.common import render, thread_root
from api.slack.errors import SlackError, invalid
from api.slack.registry import Call, method
from parley import slack_ids as ids
from parley.actions import app_files, files, messages, reactions
from parley.actions import slack_shapes as shapes
from parley.model import Channel, Message


async def _item(call: Call, ts_arg: str = "timestamp") -> tuple[Channel, Message]:
    view = await call.channel(access=None)
    msg = await call.message(view.channel, ts_arg)
    assert msg is not None
    return view.channel, msg


def _emoji(call: Call) -> str:
    return call.args.text("name", required=True, max_len=100).strip(":")


@method("reactions.add", tier=3, scopes=("reactions:write",),
        args=("channel", "timestamp", "name"))
async def reactions_add(call: Call) -> dict[str, Any]:
    """React to a message (`already_reacted` when the bot had)."""
    channel, msg = await _item(call)
    if not await reactions.set_reaction(call.svc, call.ident, call.ws, channel.id, msg.id,
                                        _emoji(call), True):
        raise SlackError("already_reacted")
    return {}


@method("reactions.remove", tier=2, scopes=("reactions:write",),
        args=("channel", "timestamp", "name"))
async def reactions_remove(call: Call) -> dict[str, Any]:
    """Take the bot's reaction back (`no_reaction` when it had none)."""
    channel, msg = await _item(call)
    if not await reactions.set_reaction(call.svc, call.ident, call.ws, channel.id, msg.id,
                                        _emoji(call), False):
        raise SlackError("no_reaction")
    return {}


@method("reactions.get", tier=3, scopes=("reactions:read",), read=True,
        args=("channel", "timestamp", "full"))
async def reactions_get(call: Call) -> dict[str, Any]:
    """A message with its reactions."""
    channel, msg = await _item(call)
    rendered = (await render(call, channel, [msg]))[0]
    return {"type": "message", "channel": ids.channel(channel.kind, channel.id),
            "message": rendered}


@method("pins.add", tier=2, scopes=("pins:write",), args=("channel", "timestamp"))
async def pins_add(call: Call) -> dict[str, Any]:
    """Pin a message (`already_pinned` when it was)."""
    channel, msg = await _item(call)
    if not await messages.set_pinned(call.svc, call.ident, call.ws, channel.id, msg.id, True):
        raise SlackError("already_pinned")
    return {}


@method("pins.remove", tier=2, scopes=("pins:write",), args=("channel", "timestamp"))
async def pins_remove(call: Call) -> dict[str, Any]:
    """Unpin a message (`no_pin` when it was not pinned)."""
    channel, msg = await _item(call)
    if not await messages.set_pinned(call.svc, call.ident, call.ws, channel.id, msg.id, False):
        raise SlackError("no_pin")
    return {}


@method("pins.list", tier=2, scopes=("pins:read",), read=True, args=("channel",))
async def pins_list(call: Call) -> dict[str, Any]:
    """The channel's pinned messages, newest pin first."""
    view = await call.channel(access=None)
    c = view.channel
    pins = await messages.list_pins(call.svc, call.ident, call.ws, c.id)
    rendered = await render(call, c, [p.message for p in pins])
    return {"items": [{"type": "message", "channel": ids.channel(c.kind, c.id),
                       "created": int(p.pinned_at.timestamp()),
                       "created_by": ids.user(p.pinned_by), "message": r}
                      for p, r in zip(pins, rendered, strict=True)]}


def _file_arg(call: Call, name: str = "file") -> int:
    fid = ids.parse("F", call.args.text(name, required=True))
    if fid is None:
        raise SlackError("file_not_found")
    return fid


@method("files.getUploadURLExternal", tier=4, scopes=("files:write",),
        args=("filename", "length", "alt_txt", "snippet_type"))
async def get_upload_url(call: Call) -> dict[str, Any]:
    """A URL to POST the file's raw bytes to (answered 200), valid for
    `upload_url_ttl_s`; then `files.completeUploadExternal`."""
    name = call.args.text("filename", required=True, max_len=files.NAME_MAX)
    length = call.args.number("length", default=0, lo=0, hi=2**62)
    if length < 1:
        raise invalid("length must be the file's size in bytes")
    f, ticket = await app_files.request_upload(call.svc, call.ident, call.ws, name, length)
    return {"upload_url": f"{call.base_url}/upload/v1/{ticket}", "file_id": ids.file(f.id)}


@method("files.completeUploadExternal", tier=4, scopes=("files:write",),
        args=("files", "channel_id", "channels", "initial_comment", "thread_ts"))
async def complete_upload(call: Call) -> dict[str, Any]:
    """Finish uploads and share them in one message (`initial_comment` is its
    text) in `channel_id` (or each of `channels`), in `thread_ts` if given."""
    items = call.args.json("files")
    if not isinstance(items, list) or not items or not all(
            isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        raise invalid("files must be a JSON array of {\"id\": ..., \"title\": ...}")
    titles: dict[int, str | None] = {}
    for i in items:
        fid = ids.parse("F", i["id"])
        if fid is None:
            raise SlackError("file_not_found")
        title = i.get("title")
        titles[fid] = title if isinstance(title, str) else None
    targets = [c for c in [call.args.raw("channel_id"), *call.args.items("channels")] if c]
    chans: list[Channel] = []
    for raw in dict.fromkeys(targets):
        call.args.values["__target"] = raw
        chans.append((await call.channel("__target", access=None)).channel)
    root = await thread_root(call, chans[0]) if chans and call.args.has("thread_ts") else None
    text = ids.text_in(call.args.text("initial_comment"))
    ready, _ = await app_files.complete(call.svc, call.ident, call.ws, list(titles),
                                        channel_ids=[c.id for c in chans],
                                        initial_comment=text, thread_root_id=root)
    return {"files": [shapes.file(f, call.base_url, title=titles.get(f.id), shares=chans)
                      for f in ready]}


@method("files.info", tier=4, scopes=("files:read",), read=True, args=("file",))
async def files_info(call: Call) -> dict[str, Any]:
    """A file the bot uploaded, or one shared where it can read."""
    f = await files.get_file(call.svc, call.ident, call.ws, _file_arg(call))
    return {"file": shapes.file(f, call.base_url), "comments": [],
            "response_metadata": {"next_cursor": ""}}


@method("files.delete", tier=3, scopes=("files:write",), args=("file",))
async def files_delete(call: Call) -> dict[str, Any]:
    """Delete a file the bot uploaded; its messages show it as removed."""
    await files.delete_file(call.svc, call.ident, call.ws, _file_arg(call))
    return {}
