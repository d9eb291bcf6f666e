"""Events: what the server tells clients, and how they travel.

An event is ``{"t": <type>, "d": <data>}``.  The hub carries it msgpack-
encoded, byte for byte what a ``parley.msgpack.v1`` client receives, so a
gateway forwards it without re-encoding (it reads ``d.channel_id`` and
``d.seq`` to keep channels in order).  For ``parley.json.v1`` the gateway
re-encodes once per event, with every id as a decimal string (JSON numbers
lose precision above 2**53; snowflakes are 63-bit).

Topics: ``c:<channel id>`` carries a channel's events to every gateway with
a member of it connected; ``u:<user id>`` carries a user's own events
(membership changes, read state, session revocation) to every gateway with
one of the user's sockets.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

from storage.interfaces import Channel, Message

# Event types (server to client).  Nouns, past tense.  Documented in
# docs/protocol.md; tests check every type listed here is documented.
MESSAGE_CREATED = "message.created"
CHANNEL_JOINED = "channel.joined"  # to the user: you are now in this channel
CHANNEL_LEFT = "channel.left"  # to the user: you are no longer in this channel
MEMBER_JOINED = "channel.member_joined"  # to a channel: someone joined
SESSION_REVOKED = "session.revoked"  # to the user: close sockets of this session

EVENT_TYPES = (MESSAGE_CREATED, CHANNEL_JOINED, CHANNEL_LEFT, MEMBER_JOINED, SESSION_REVOKED)


def channel_topic(channel_id: int) -> str:
    return f"c:{channel_id}"


def user_topic(user_id: int) -> str:
    return f"u:{user_id}"


def message_data(m: Message) -> dict[str, Any]:
    return {
        "id": m.id, "channel_id": m.channel_id, "seq": m.seq, "workspace_id": m.workspace_id,
        "user_id": m.user_id, "text": m.text, "client_msg_id": m.client_msg_id,
        "thread_root_id": m.thread_root_id, "ts": int(m.created_at.timestamp() * 1000),
        "edited_ts": int(m.edited_at.timestamp() * 1000) if m.edited_at else None,
        "deleted": m.deleted,
    }


def channel_data(c: Channel) -> dict[str, Any]:
    return {"id": c.id, "workspace_id": c.workspace_id, "kind": c.kind, "name": c.name,
            "topic": c.topic, "purpose": c.purpose, "archived": c.archived,
            "last_seq": c.last_seq}


def encode(event_type: str, data: dict[str, Any]) -> bytes:
    return msgpack.packb({"t": event_type, "d": data}, use_bin_type=True)


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
