"""chat.*: post, update, delete, post ephemeral, permalinks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from api.slack.common import (
    content,
    post_channel,
    post_target,
    refine_post_error,
    render,
    root_message,
    thread_root,
)
from api.slack.errors import SlackError
from api.slack.registry import Call, method
from parley import slack_ids as ids
from parley.actions import messages
from parley.actions import slack_shapes as shapes
from parley.actions.messages import MessageView
from parley.errors import DomainError
from parley.model import MessageExtras

_POST_ARGS = ("channel", "text", "blocks", "attachments", "thread_ts", "reply_broadcast",
              "mrkdwn", "client_msg_id")


@method("chat.postMessage", tier="post", scopes=("chat:write",), args=_POST_ARGS)
async def post_message(call: Call) -> dict[str, Any]:
    """Post a message (text, `blocks`, `attachments` kept verbatim) as the
    app's bot, optionally in a thread (`thread_ts`, `reply_broadcast`).  It
    gets the channel's next seq like any message.  `channel` may be an id,
    a user id (the DM with them) or a name."""
    channel_id, channel_ref = await post_channel(call)
    call.take_post(channel_id)
    text, extras = content(call)
    root = await root_message(call, channel_id)
    try:
        msg = await messages.post_message(
            call.svc, call.ident, call.ws, channel_id, text,
            call.args.text("client_msg_id", max_len=64) or None,
            None if root is None else root.id,
            also_in_channel=root is not None and call.args.flag("reply_broadcast"),
            extras=extras)
    except DomainError as exc:
        if exc.code == "channel_not_found":
            raise await refine_post_error(call, channel_id) from exc
        raise
    # The answer is built from what was posted: a new message has no
    # reactions, replies, pins or files to read back.
    stored = MessageExtras(blocks=extras.blocks if extras else None,
                           attachments=extras.attachments if extras else None,
                           bot_id=call.auth.bot_id, app_id=call.auth.app_id)
    rendered = shapes.message(MessageView(msg, extras=stored),
                              roots={} if root is None else {root.id: root},
                              base_url=call.base_url, channel_ref=channel_ref)
    return {"channel": channel_ref, "ts": shapes.message_ts(msg), "message": rendered}


@method("chat.update", tier=3, scopes=("chat:write",),
        args=("channel", "ts", "text", "blocks", "attachments"))
async def update(call: Call) -> dict[str, Any]:
    """Edit a message the bot posted.  `blocks` / `attachments` replace the
    old ones when given and stay as they were when not."""
    view = await call.channel(access=None)
    channel = view.channel
    msg = await call.message(channel)
    assert msg is not None
    if msg.user_id != call.ident.user_id:
        raise SlackError("cant_update_message")
    text, new = content(call)
    old = (await messages.get_message(call.svc, call.ident, call.ws, channel.id, msg.id)).extras
    extras = MessageExtras(
        blocks=new.blocks if new and call.args.has("blocks") else (old.blocks if old else None),
        attachments=(new.attachments if new and call.args.has("attachments")
                     else (old.attachments if old else None)))
    edited = await messages.edit_message(call.svc, call.ident, call.ws, channel.id, msg.id,
                                         text, extras)
    rendered = (await render(call, channel, [edited]))[0]
    return {"channel": ids.channel(channel.kind, channel.id), "ts": shapes.message_ts(edited),
            "text": rendered["text"], "message": rendered}


@method("chat.delete", tier=3, scopes=("chat:write",), args=("channel", "ts"))
async def delete(call: Call) -> dict[str, Any]:
    """Delete a message the bot posted (it stays a tombstone that keeps its seq)."""
    view = await call.channel(access=None)
    msg = await call.message(view.channel)
    assert msg is not None
    await messages.delete_message(call.svc, call.ident, call.ws, view.channel.id, msg.id)
    return {"channel": ids.channel(view.channel.kind, view.channel.id),
            "ts": shapes.message_ts(msg)}


@method("chat.postEphemeral", tier=4, scopes=("chat:write",),
        args=("channel", "user", "text", "blocks", "attachments", "thread_ts"))
async def post_ephemeral(call: Call) -> dict[str, Any]:
    """Show a message to one member of the channel, on their sockets only
    (`message.ephemeral`); it is never stored and appears in no history."""
    channel = await post_target(call)
    uid = ids.parse("UW", call.args.text("user", required=True))
    if uid is None:
        raise SlackError("user_not_found")
    text, extras = content(call)
    root = await thread_root(call, channel)
    ts = ids.time_ts(dt.datetime.now(dt.UTC))
    await messages.post_ephemeral(call.svc, call.ident, call.ws, channel.id, uid, text,
                                  extras=extras, thread_root_id=root, ts=ts)
    return {"message_ts": ts}


@method("chat.getPermalink", tier="special", read=True, args=("channel", "message_ts"))
async def get_permalink(call: Call) -> dict[str, Any]:
    """A link to a message (`<base>/archives/<channel>/p<ts without the dot>`)."""
    view = await call.channel(access=None)
    msg = await call.message(view.channel, "message_ts")
    assert msg is not None
    cid = ids.channel(view.channel.kind, view.channel.id)
    link = f"{call.base_url}/archives/{cid}/p{shapes.message_ts(msg).replace('.', '')}"
    if msg.thread_root_id is not None:
        roots = await messages.messages_by_id(call.svc, call.ident, call.ws, view.channel.id,
                                              [msg.thread_root_id])
        root = roots.get(msg.thread_root_id)
        if root is not None:
            link += f"?thread_ts={shapes.message_ts(root)}&cid={cid}"
    return {"channel": cid, "permalink": link}
