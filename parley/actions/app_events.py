"""The Events API's wire shapes: which events a committed message yields for
an app, Slack's ``event_callback`` envelope around each, the request
signature, and what an app's answer means (pure functions: no I/O; the
dispatcher in ``parley/actions/app_dispatch.py`` does the sending).

Rules:

* A message of seq ``s`` yields at most two events for an app: ``message``
  (position ``2s``) when the app subscribes to the channel kind's message
  event (``message.channels`` public, ``message.groups`` private,
  ``message.im`` DMs, ``message.mpim`` group DMs), and ``app_mention``
  (position ``2s + 1``) when the app subscribes to it and the text
  mentions its bot (``<@bot user>``), unless the bot wrote it.
* Like Slack, an app's own bot messages are delivered to it as ``message``
  events (with ``bot_id``); Bolt drops them by itself
  (``ignoring_self_events_enabled``).  Deleted messages yield nothing
  (``message_deleted`` / ``message_changed`` are future work).
* ``event_id`` is a function of (app, channel, position) only, so every
  retry, restart and dispatcher sends the same one for the same event.
* Other events come from the outbox (``outbox_event``, one shape per kind
  in ``OUTBOX_SHAPES``; parley/ports/app_events.py says who gets which);
  their ``event_id`` is derived from the row.
* Signature: ``v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))`` over
  the exact bytes sent, with the app's newest signing secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parley import events
from parley import slack_ids as ids
from parley.model import MessageExtras
from parley.ports.app_events import OutboxEvent, PendingMessage
from parley.ports.outbound import (
    OutboundError,
    OutboundRefused,
    OutboundResponse,
    OutboundTimeout,
)

#: The manifest event that subscribes to messages of a channel kind.
MESSAGE_SUBSCRIPTION = {"public": "message.channels", "private": "message.groups",
                        "dm": "message.im", "group_dm": "message.mpim"}
#: Slack's ``channel_type`` of a channel kind.
CHANNEL_TYPE = {"public": "channel", "private": "group", "dm": "im", "group_dm": "mpim"}
APP_MENTION = "app_mention"
#: The outbox events that reach an app after its uninstall (about it).
AFTER_UNINSTALL = frozenset({"app_uninstalled", "tokens_revoked"})


@dataclass(frozen=True, slots=True)
class AppTarget:
    """What delivering to one app needs (read from its record each claim)."""

    app_id: int
    workspace_id: int
    bot_id: int
    bot_user_id: int
    events: frozenset[str]  # the manifest's bot_events
    url: str
    signing_secret: str  # the newest one: during a rotation, requests carry it
    installed: bool = True  # an uninstalled app gets only ``AFTER_UNINSTALL`` events


def event_id(app_id: int, channel_id: int, position: int) -> str:
    """Stable across retries and restarts: derived from the event's place only."""
    digest = hashlib.sha256(f"{app_id}:{channel_id}:{position}".encode()).digest()
    return "Ev" + ids.enc(int.from_bytes(digest[:8], "big") >> 1 or 1)


def outbox_event_id(row_id: int) -> str:
    """An outbox event's id: from its row, so stable across retries too."""
    digest = hashlib.sha256(f"outbox:{row_id}".encode()).digest()
    return "Ev" + ids.enc(int.from_bytes(digest[:8], "big") >> 1 or 1)


def _reaction(ev: OutboxEvent, channel: str, p: dict[str, Any]) -> dict[str, Any]:
    created = dt.datetime.fromtimestamp(float(p["item_created_at"]), dt.UTC)
    return {"user": ids.user(int(p["user_id"])), "reaction": str(p["emoji"]),
            "item_user": ids.user(int(p["item_user_id"])),
            "item": {"type": "message", "channel": channel,
                     "ts": ids.ts(created, int(p["item_seq"]))}}


def _member(ev: OutboxEvent, channel: str, p: dict[str, Any]) -> dict[str, Any]:
    out = {"user": ids.user(int(p["user_id"])), "channel": channel,
           "channel_type": ids.channel_letter(ev.channel_kind or ""),
           "team": ids.team(ev.workspace_id)}
    if ev.kind == "member_joined_channel" and p.get("inviter_id") is not None:
        out["inviter"] = ids.user(int(p["inviter_id"]))
    return out


def _channel_created(ev: OutboxEvent, channel: str, p: dict[str, Any]) -> dict[str, Any]:
    # The row was written in the channel's transaction: its time is the channel's.
    return {"channel": {"id": channel, "name": str(p["name"]),
                        "created": int(ev.created_at.timestamp()),
                        "creator": ids.user(int(p["creator_id"]))}}


def _archive(ev: OutboxEvent, channel: str, p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"channel": channel}
    if ev.kind.startswith("channel_") and p.get("user_id") is not None:
        out["user"] = ids.user(int(p["user_id"]))  # Slack's group_* events name no user
    return out


def _file_shared(ev: OutboxEvent, channel: str, p: dict[str, Any]) -> dict[str, Any]:
    fid = ids.file(int(p["file_id"]))
    return {"file_id": fid, "user_id": ids.user(int(p["user_id"])), "file": {"id": fid},
            "channel_id": channel}


def _uninstalled(ev: OutboxEvent, channel: str, p: dict[str, Any]) -> dict[str, Any]:
    return {}


def _tokens_revoked(ev: OutboxEvent, channel: str, p: dict[str, Any]) -> dict[str, Any]:
    return {"tokens": {"oauth": [ids.user(int(u)) for u in p.get("oauth", [])],
                       "bot": [ids.user(int(u)) for u in p.get("bot", [])]}}


_Shape = Callable[[OutboxEvent, str, dict[str, Any]], dict[str, Any]]
#: Each outbox kind's event fields (besides ``type`` and ``event_ts``), from
#: the row's facts; the kinds storage writes (parley/ports/app_events.py).
OUTBOX_SHAPES: dict[str, _Shape] = {
    "reaction_added": _reaction, "reaction_removed": _reaction,
    "member_joined_channel": _member, "member_left_channel": _member,
    "channel_created": _channel_created,
    "channel_archive": _archive, "channel_unarchive": _archive,
    "group_archive": _archive, "group_unarchive": _archive,
    "file_shared": _file_shared,
    "app_uninstalled": _uninstalled, "tokens_revoked": _tokens_revoked,
}


def outbox_event(ev: OutboxEvent) -> dict[str, Any] | None:
    """The Slack event of an outbox row (None for a kind this version does
    not know, or a channel event whose channel is gone: such a row is dropped)."""
    shape = OUTBOX_SHAPES.get(ev.kind)
    if shape is None:
        return None
    channel = ""
    if ev.channel_id is not None:
        if ev.channel_kind is None:
            return None
        channel = ids.channel(ev.channel_kind, ev.channel_id)
    return {"type": ev.kind, **shape(ev, channel, ev.payload),
            "event_ts": ids.time_ts(ev.created_at)}


def verification_token(signing_secret: str) -> str:
    """Slack's deprecated ``token`` field (apps should check signatures):
    stable per secret, and says nothing about it."""
    return hashlib.sha256(b"parley-verification:" + signing_secret.encode()).hexdigest()[:24]


def extras_fields(x: MessageExtras | None) -> dict[str, Any]:
    """A message's extras in Slack's fields (blocks, attachments, bot_id,
    app_id, subtype): the same in an Events API event and a Web API answer.
    The native event's fields (``events.extras_data``) with Slack's ids, so
    which extras go out is decided in one place."""
    if x is None:
        return {}
    out = events.extras_data(x)
    if x.bot_id is not None:
        out["bot_id"] = ids.bot(x.bot_id)
        out.pop("app_id")
        if x.app_id is not None:
            out["app_id"] = ids.app(x.app_id)
    return out


def _message_event(pm: PendingMessage, channel_ref: str, kind: str) -> dict[str, Any]:
    m = pm.message
    ts = ids.ts(m.created_at, m.seq)
    ev: dict[str, Any] = {"type": "message", "channel": channel_ref, "user": ids.user(m.user_id),
                          "text": ids.text_out(m.text), "ts": ts, "team": ids.team(m.workspace_id),
                          "event_ts": ts, "channel_type": CHANNEL_TYPE.get(kind, "channel")}
    if m.client_msg_id is not None:
        ev["client_msg_id"] = m.client_msg_id
    ev.update(extras_fields(pm.extras))
    if pm.root_created_at is not None and pm.root_seq is not None:
        ev["thread_ts"] = ids.ts(pm.root_created_at, pm.root_seq)
        if pm.root_user_id is not None:
            ev["parent_user_id"] = ids.user(pm.root_user_id)
        if m.also_in_channel:
            ev.setdefault("subtype", "thread_broadcast")
    return ev


def events_for(target: AppTarget, channel_kind: str,
               pm: PendingMessage) -> list[tuple[int, dict[str, Any]]]:
    """(position, event) pairs this message yields for the app, in order."""
    m = pm.message
    if m.deleted:
        return []
    channel_ref = ids.channel(channel_kind, m.channel_id)
    out: list[tuple[int, dict[str, Any]]] = []
    message = _message_event(pm, channel_ref, channel_kind)
    if MESSAGE_SUBSCRIPTION.get(channel_kind) in target.events:
        out.append((2 * m.seq, message))
    if (APP_MENTION in target.events and m.user_id != target.bot_user_id
            and f"<@{target.bot_user_id}>" in m.text):
        keys = ("user", "text", "ts", "channel", "event_ts", "team", "client_msg_id", "blocks",
                "thread_ts")
        mention: dict[str, Any] = {k: message[k] for k in keys if k in message}
        out.append((2 * m.seq + 1, {"type": APP_MENTION, **mention}))
    return out


def envelope(target: AppTarget, channel_id: int | None, position: int, event: dict[str, Any],
             event_time: int, eid: str | None = None) -> dict[str, Any]:
    """Slack's ``event_callback`` around one event (``eid``: an outbox
    event's id; a message event's comes from its position)."""
    team = ids.team(target.workspace_id)
    eid = eid or event_id(target.app_id, channel_id or 0, position)
    channel = (event.get("channel") or event.get("channel_id")
               or event.get("item", {}).get("channel", ""))
    if isinstance(channel, dict):  # channel_created
        channel = channel.get("id", "")
    context = base64.urlsafe_b64encode(
        f"{team}:{ids.app(target.app_id)}:{channel}".encode()).decode().rstrip("=")
    return {
        "token": verification_token(target.signing_secret),
        "team_id": team, "context_team_id": team, "context_enterprise_id": None,
        "api_app_id": ids.app(target.app_id), "event": event, "type": "event_callback",
        "event_id": eid, "event_time": event_time,
        "authorizations": [{"enterprise_id": None, "team_id": team,
                            "user_id": ids.user(target.bot_user_id), "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False, "event_context": f"4-{context}",
    }


def url_verification_body(signing_secret: str, challenge: str) -> dict[str, Any]:
    return {"token": verification_token(signing_secret), "challenge": challenge,
            "type": "url_verification"}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def socket_retry_reason(reason: str | None) -> str | None:
    """A Socket Mode envelope's ``retry_reason``: Slack's ``timeout`` for an
    envelope not acked in time, else the HTTP reason names."""
    return "timeout" if reason == "http_timeout" else reason


def request_headers(secret: str, timestamp: int, body: bytes, retry_num: int = 0,
                    retry_reason: str | None = None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/json"),
               ("X-Slack-Request-Timestamp", str(timestamp)),
               ("X-Slack-Signature", signature(secret, timestamp, body))]
    if retry_num:
        headers += [("X-Slack-Retry-Num", str(retry_num)),
                    ("X-Slack-Retry-Reason", retry_reason or "http_error")]
    return headers


@dataclass(frozen=True, slots=True)
class Answer:
    """What one try's result means for the cursor."""

    final: bool  # the cursor moves on (delivered, or an answer that asks for no retry)
    delivered: bool
    reason: str | None  # X-Slack-Retry-Reason of the next try, when not final


def judge(result: OutboundResponse | OutboundError) -> Answer:
    """2xx: delivered.  ``X-Slack-No-Retry: 1`` or 404 (no listener for the
    event): final, not retried.  Anything else is retried, with the reason
    Slack gives: ``http_timeout``, ``connection_failed`` (also for an
    address the SSRF guard refused), ``http_error``."""
    if isinstance(result, OutboundTimeout):
        return Answer(False, False, "http_timeout")
    if isinstance(result, OutboundRefused | OutboundError):
        return Answer(False, False, "connection_failed")
    if 200 <= result.status < 300:
        return Answer(True, True, None)
    if result.header("x-slack-no-retry") == "1" or result.status == 404:
        return Answer(True, False, None)
    return Answer(False, False, "http_error")


def challenge_echoed(result: OutboundResponse | OutboundError, challenge: str) -> bool:
    """The app echoed the challenge: as JSON ``{"challenge": ...}`` or the bare text."""
    if isinstance(result, OutboundError) or not 200 <= result.status < 300:
        return False
    text = result.body.decode("utf-8", "replace").strip()
    if text == challenge:
        return True
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("challenge") == challenge
