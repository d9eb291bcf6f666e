"""The Events API's pure rules (parley/actions/app_events.py): which events a
message yields, event ids, the signature (checked by slack_sdk's own
verifier), and what each answer means for the cursor."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from slack_sdk.signature import SignatureVerifier

from parley.actions import app_events as wire
from parley.model import Message, MessageExtras
from parley.ports.app_events import PendingMessage
from parley.ports.outbound import (
    OutboundFailed,
    OutboundRefused,
    OutboundResponse,
    OutboundTimeout,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
BOT_USER = 77


def _target(*events: str) -> wire.AppTarget:
    return wire.AppTarget(app_id=5, workspace_id=9, bot_id=6, bot_user_id=BOT_USER,
                          events=frozenset(events), url="http://127.0.0.1/e",
                          signing_secret="s3cr3t")


def _pm(text: str, seq: int = 3, user: int = 11, *, deleted: bool = False,
        root: tuple[dt.datetime, int, int] | None = None,
        extras: MessageExtras | None = None) -> PendingMessage:
    m = Message(id=1000 + seq, channel_id=42, seq=seq, workspace_id=9, user_id=user, text=text,
                client_msg_id=None, thread_root_id=1 if root else None, created_at=T0,
                edited_at=None, deleted=deleted)
    return PendingMessage(message=m, extras=extras, root_created_at=root[0] if root else None,
                          root_seq=root[1] if root else None,
                          root_user_id=root[2] if root else None)


@pytest.mark.parametrize("kind,event,channel_type", [
    ("public", "message.channels", "channel"), ("private", "message.groups", "group"),
    ("dm", "message.im", "im"), ("group_dm", "message.mpim", "mpim")])
def test_each_channel_kind_needs_its_own_subscription(kind: str, event: str,
                                                      channel_type: str) -> None:
    (pos, ev), = wire.events_for(_target(event), kind, _pm("hi"))
    assert pos == 6 and ev["type"] == "message" and ev["channel_type"] == channel_type
    others = {"message.channels", "message.groups", "message.im", "message.mpim"} - {event}
    assert wire.events_for(_target(*others), kind, _pm("hi")) == []


def test_a_mention_of_the_bot_is_a_second_event_unless_the_bot_wrote_it() -> None:
    target = _target("message.channels", "app_mention")
    evs = wire.events_for(target, "public", _pm(f"<@{BOT_USER}> deploy"))
    assert [(p, e["type"]) for p, e in evs] == [(6, "message"), (7, "app_mention")]
    assert evs[1][1]["text"] == "<@U25> deploy"  # 77 in base 36, Slack's syntax
    own = wire.events_for(target, "public", _pm(f"<@{BOT_USER}> me", user=BOT_USER))
    assert [e["type"] for _, e in own] == ["message"]  # Slack sends own messages; Bolt drops them
    assert wire.events_for(_target("app_mention"), "public", _pm("no mention")) == []


def test_replies_bots_and_deleted_messages() -> None:
    target = _target("message.channels")
    (_, reply), = wire.events_for(target, "public", _pm("r", root=(T0, 1, 11)))
    assert reply["thread_ts"] == f"{int(T0.timestamp())}.000001"
    assert reply["parent_user_id"] == "UB"
    (_, bot), = wire.events_for(target, "public", _pm("b", extras=MessageExtras(bot_id=6,
                                                                               app_id=5)))
    assert (bot["bot_id"], bot["app_id"]) == ("B6", "A5")
    assert wire.events_for(target, "public", _pm("gone", deleted=True)) == []


def test_event_ids_depend_on_the_event_only() -> None:
    ids = {wire.event_id(5, 42, p) for p in range(1000)}
    assert len(ids) == 1000
    assert wire.event_id(5, 42, 7) == wire.event_id(5, 42, 7) != wire.event_id(6, 42, 7)
    env = wire.envelope(_target(), 42, 7, {"channel": "C16"}, 1)
    assert env["event_id"] == wire.event_id(5, 42, 7) and env["type"] == "event_callback"


def test_slack_sdks_verifier_accepts_the_signature() -> None:
    body = wire.encode({"type": "event_callback", "text": "héllo"})
    now = int(time.time())
    headers = dict(wire.request_headers("s3cr3t", now, body))
    verifier = SignatureVerifier("s3cr3t")
    assert verifier.is_valid(body.decode(), headers["X-Slack-Request-Timestamp"],
                             headers["X-Slack-Signature"])
    assert not SignatureVerifier("other").is_valid(
        body.decode(), headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    retry = dict(wire.request_headers("s3cr3t", now, body, 2, "http_timeout"))
    assert (retry["X-Slack-Retry-Num"], retry["X-Slack-Retry-Reason"]) == ("2", "http_timeout")
    assert "X-Slack-Retry-Num" not in headers


def _resp(status: int, **headers: str) -> OutboundResponse:
    return OutboundResponse(status=status, headers=tuple(
        (k.lower().replace("_", "-"), v) for k, v in headers.items()), body=b"")


@pytest.mark.parametrize("result,final,delivered,reason", [
    (_resp(200), True, True, None), (_resp(204), True, True, None),
    (_resp(404), True, False, None), (_resp(500, x_slack_no_retry="1"), True, False, None),
    (_resp(500), False, False, "http_error"), (_resp(302), False, False, "http_error"),
    (OutboundTimeout("t"), False, False, "http_timeout"),
    (OutboundFailed("f"), False, False, "connection_failed"),
    (OutboundRefused("r"), False, False, "connection_failed"),
])
def test_what_an_answer_means(result: OutboundResponse | OutboundTimeout, final: bool,
                              delivered: bool, reason: str | None) -> None:
    assert wire.judge(result) == wire.Answer(final, delivered, reason)


def test_the_challenge_must_be_echoed() -> None:
    ok = OutboundResponse(200, (), b'{"challenge":"abc"}')
    assert wire.challenge_echoed(ok, "abc") and not wire.challenge_echoed(ok, "abd")
    assert wire.challenge_echoed(OutboundResponse(200, (), b"abc"), "abc")
    assert not wire.challenge_echoed(OutboundResponse(500, (), b"abc"), "abc")
    assert not wire.challenge_echoed(OutboundTimeout("t"), "abc")


def test_an_outbox_reaction_in_slacks_shape() -> None:
    from parley.ports.app_events import OutboxEvent

    row = OutboxEvent(id=8, workspace_id=9, app_id=5, channel_id=42, channel_kind="private",
                      kind="reaction_added",
                      payload={"user_id": 11, "emoji": "tada", "message_id": 1003,
                               "item_user_id": 12, "item_seq": 3,
                               "item_created_at": T0.timestamp()},
                      created_at=T0, attempts=0, retry_reason=None, owner="o")
    ev = wire.outbox_event(row)
    assert ev == {"type": "reaction_added", "user": "UB", "reaction": "tada", "item_user": "UC",
                  "item": {"type": "message", "channel": "G16",
                           "ts": f"{int(T0.timestamp())}.000003"},
                  "event_ts": f"{int(T0.timestamp())}.000000"}
    assert wire.outbox_event_id(8) == wire.outbox_event_id(8) != wire.outbox_event_id(9)
    assert wire.outbox_event(row.__class__(**{**{f: getattr(row, f) for f in row.__slots__},
                                              "kind": "future_kind"})) is None
