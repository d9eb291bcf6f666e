"""Events: what the server tells clients, and how they travel.

An event is ``{"t": <type>, "d": <data>}``, msgpack-encoded (``encode``):
byte for byte what a ``parley.msgpack.v1`` client receives.  On a channel
topic the hub carries it as a *publication*: a small header, then those
bytes (``publication``, ``read_publication``).  The header holds the
event's ``seq`` (for ``message.created``, the only sequenced event), so a
gateway orders a channel and forwards the bytes to binary clients without
decoding them, as centrifuge's ``Publication{Offset, Data}`` does; the
channel is the topic's.  For ``parley.json.v1`` the gateway decodes and
re-encodes once per event, with every id as a decimal string (JSON numbers
lose precision above 2**53; snowflakes are 63-bit).  User topics carry the
bare event (their events are few and always decoded).

Topics: ``c:<channel id>`` carries a channel's events to every gateway with
a member of it connected; ``u:<user id>`` carries a user's own events
(membership changes, read state, session revocation) to every gateway with
one of the user's sockets.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import msgpack

from parley.model import Channel, FileRecord, Message, MessageExtras, ReadState, ThreadSummary

# Event types (server to client).  Nouns, past tense.  Documented in
# docs/protocol.md; tests check every type listed here is documented.
#
# Only ``message.created`` carries a channel ``seq`` (in ``d.seq``): the
# gateway orders a channel's sequenced events and replays them on resume.
# Every other channel event is unsequenced and must NOT have a top-level
# ``seq`` key (the gateway would treat it as a duplicate message); events
# about an existing message nest it under ``d.message``.
#
# Channel topic ``c:<id>`` (every member of the channel):
MESSAGE_CREATED = "message.created"  # a new message or thread reply (sequenced)
MESSAGE_UPDATED = "message.updated"  # edited: d.message is the new state
MESSAGE_DELETED = "message.deleted"  # d.message is the tombstone; its reactions and pin went
MESSAGE_PINNED = "message.pinned"
MESSAGE_UNPINNED = "message.unpinned"
REACTION_ADDED = "reaction.added"
REACTION_REMOVED = "reaction.removed"
THREAD_UPDATED = "thread.updated"  # the root's reply count, latest reply, repliers changed
CHANNEL_UPDATED = "channel.updated"  # renamed, topic/purpose, archived/unarchived, made private
MEMBER_JOINED = "channel.member_joined"  # someone joined or was added
MEMBER_LEFT = "channel.member_left"  # someone left or was removed
# User topic ``u:<id>`` (every socket of that user, whatever the workspace):
CHANNEL_JOINED = "channel.joined"  # you are now in this channel (the gateway subscribes)
CHANNEL_LEFT = "channel.left"  # you are no longer in this channel (the gateway unsubscribes)
CHANNEL_READ = "channel.read"  # your read position / unread and mention counts changed
MENTION_CREATED = "mention.created"  # a message now mentions you
MENTION_REMOVED = "mention.removed"  # a message no longer mentions you (edited or deleted)
THREAD_FOLLOWED = "thread.followed"
THREAD_UNFOLLOWED = "thread.unfollowed"
MEMBERSHIP_UPDATED = "membership.updated"  # your role in a workspace changed
MEMBERSHIP_ENDED = "membership.ended"  # you left or were deactivated: sockets close (4006)
SESSION_REVOKED = "session.revoked"  # close sockets of this session
# An app's chat.postEphemeral: shown to this one user, never stored, no seq.
MESSAGE_EPHEMERAL = "message.ephemeral"

EVENT_TYPES = (
    MESSAGE_CREATED, MESSAGE_UPDATED, MESSAGE_DELETED, MESSAGE_PINNED, MESSAGE_UNPINNED,
    REACTION_ADDED, REACTION_REMOVED, THREAD_UPDATED, CHANNEL_UPDATED, MEMBER_JOINED,
    MEMBER_LEFT, CHANNEL_JOINED, CHANNEL_LEFT, CHANNEL_READ, MENTION_CREATED, MENTION_REMOVED,
    THREAD_FOLLOWED, THREAD_UNFOLLOWED, MEMBERSHIP_UPDATED, MEMBERSHIP_ENDED, SESSION_REVOKED,
    MESSAGE_EPHEMERAL,
)


CHANNEL_TOPIC_PREFIX = "c:"


def channel_topic(channel_id: int) -> str:
    return f"c:{channel_id}"


def user_topic(user_id: int) -> str:
    return f"u:{user_id}"


def message_data(m: Message, files: Sequence[FileRecord] | None = None,
                 extras: MessageExtras | None = None) -> dict[str, Any]:
    """A message as clients see it.  ``files``: its attachments in order
    (``file_data``; empty for a tombstone).  Every message event passes
    them; a caller that omits them leaves the key out rather than say [].
    ``extras`` (an app's or a Slack-style message): ``extras_data``'s keys
    are added only when there are extras, so a plain message's event is
    exactly as before (the gateway's hot path builds and forwards it)."""
    data = {
        "id": m.id, "channel_id": m.channel_id, "seq": m.seq, "workspace_id": m.workspace_id,
        "user_id": m.user_id, "text": m.text, "client_msg_id": m.client_msg_id,
        "thread_root_id": m.thread_root_id, "ts": int(m.created_at.timestamp() * 1000),
        "edited_ts": int(m.edited_at.timestamp() * 1000) if m.edited_at else None,
        "deleted": m.deleted, "also_in_channel": m.also_in_channel,
    }
    if files is not None:
        data["files"] = [] if m.deleted else [file_data(f) for f in files]
    if extras is not None:
        data.update(extras_data(extras))
    return data


def extras_data(x: MessageExtras) -> dict[str, Any]:
    """``blocks`` / ``attachments`` (the arrays as posted), ``bot_id`` /
    ``app_id`` (the app's bot that posted) and ``subtype``, each only when set."""
    import json

    data: dict[str, Any] = {}
    if x.blocks is not None:
        data["blocks"] = json.loads(x.blocks)
    if x.attachments is not None:
        data["attachments"] = json.loads(x.attachments)
    if x.bot_id is not None:
        data["bot_id"] = x.bot_id
        data["app_id"] = x.app_id
    if x.subtype is not None:
        data["subtype"] = x.subtype
    return data


def file_data(f: FileRecord) -> dict[str, Any]:
    """A file as clients see it, in events and over REST alike (``FileOut``).
    A deleted one keeps only its identity and ``state: "deleted"``, so
    clients show "file removed" in its place."""
    base = f"/v1/workspaces/{f.workspace_id}/files/{f.id}"
    data: dict[str, Any] = {
        "id": f.id, "workspace_id": f.workspace_id, "user_id": f.uploader_id,
        "name": "", "size": 0, "content_type": None, "state": f.state,
        "created_ts": int(f.created_at.timestamp() * 1000), "width": None, "height": None,
        "has_thumbnail": False, "url": None, "thumbnail_url": None,
    }
    if f.state != "deleted":
        ready = f.state == "ready"
        data.update(name=f.name, size=f.size, content_type=f.content_type, width=f.width,
                    height=f.height, has_thumbnail=f.thumbnail_key is not None,
                    url=base + "/download" if ready else None,
                    thumbnail_url=base + "/thumbnail" if f.thumbnail_key else None)
    return data


def ms(t: dt.datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


def thread_data(workspace_id: int, channel_id: int, s: ThreadSummary) -> dict[str, Any]:
    return {"workspace_id": workspace_id, "channel_id": channel_id,
            "thread_root_id": s.root_id, "reply_count": s.reply_count,
            "latest_reply_ts": ms(s.latest_reply_at), "replier_ids": list(s.replier_ids)}


def read_data(workspace_id: int, r: ReadState) -> dict[str, Any]:
    return {"workspace_id": workspace_id, "channel_id": r.channel_id,
            "last_read_seq": r.last_read_seq, "unread_count": r.unread_count,
            "mention_count": r.mention_count}


def channel_data(c: Channel) -> dict[str, Any]:
    return {"id": c.id, "workspace_id": c.workspace_id, "kind": c.kind, "name": c.name,
            "topic": c.topic, "purpose": c.purpose, "archived": c.archived,
            "last_seq": c.last_seq}


def joined_data(c: Channel, r: ReadState | None) -> dict[str, Any]:
    """``channel.joined``: the channel plus the user's read state in it (the
    event goes to that user only), so a client needs no fetch."""
    return {**channel_data(c), "last_read_seq": r.last_read_seq if r else 0,
            "unread_count": r.unread_count if r else 0,
            "mention_count": r.mention_count if r else 0}


def encode(event_type: str, data: dict[str, Any]) -> bytes:
    return msgpack.packb({"t": event_type, "d": data}, use_bin_type=True)


# A publication's header: one byte saying which follows, then (sequenced) the
# seq as 8 bytes big-endian.  The first byte is never a msgpack map's (0x80-
# 0x8f, 0xde, 0xdf), so a bare event can never be taken for a publication.
_UNSEQUENCED = b"\x00"
_SEQUENCED = 0x01
_SEQ_BYTES = 8
_SEQ_HEADER = 1 + _SEQ_BYTES


def publication(body: bytes, seq: int | None = None) -> bytes:
    """A channel event as the hub carries it (``body`` from ``encode``)."""
    if seq is None:
        return _UNSEQUENCED + body
    return bytes((_SEQUENCED,)) + seq.to_bytes(_SEQ_BYTES, "big") + body


def read_publication(data: bytes) -> tuple[int | None, bytes]:
    """(seq or None, the event's bytes) of a publication; ValueError for
    anything else.  No msgpack is decoded."""
    kind = data[0] if data else -1
    if kind == _SEQUENCED and len(data) > _SEQ_HEADER:
        return int.from_bytes(data[1:_SEQ_HEADER], "big"), data[_SEQ_HEADER:]
    if kind == 0 and len(data) > 1:
        return None, data[1:]
    raise ValueError("not a publication")


def decode(payload: bytes) -> dict[str, Any]:
    obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(obj, dict):
        raise ValueError("an event is a map")
    return obj


def is_id_key(key: str) -> bool:
    """Keys that carry ids, by the protocol's naming rule."""
    return key == "id" or key.endswith(("_id", "_ids"))


def jsonable(obj: Any, *, as_id: bool = False) -> Any:
    """``obj`` with every id (by key name) as a string, bytes as latin-1 never
    appear (the protocol has no binary fields)."""
    if isinstance(obj, dict):
        return {k: jsonable(v, as_id=isinstance(k, str) and is_id_key(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v, as_id=as_id) for v in obj]
    if as_id and isinstance(obj, int) and not isinstance(obj, bool):
        return str(obj)
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(jsonable(obj), separators=(",", ":"), ensure_ascii=False)
