"""The protocol's tables as data: commands, events and close codes.

docs/protocol.md shows them between ``<!-- generated: NAME -->`` and
``<!-- end generated -->`` markers; ``render_doc`` rewrites those regions
from the data below (``python -m gateway.protocol.spec --write`` after a
change), and ``tests/test_protocol_doc.py`` fails when the document and
the data differ, or when the gateway dispatches a command that is not here.
The way h11 generates its state-machine docs: one source, so they cannot
drift.  Cells are Markdown.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.protocol import (
    EV_ACK,
    EV_ERROR,
    EV_HEARTBEAT_ACK,
    EV_HELLO,
    EV_PRESENCE_CHANGED,
    EV_RESYNC_REQUIRED,
    EV_TYPING,
    OP_ACTION,
    OP_COMMAND,
    OP_HEARTBEAT,
    OP_PRESENCE_SET,
    OP_PRESENCE_SUBSCRIBE,
    OP_PRESENCE_UNSUBSCRIBE,
    OP_RESUME,
    OP_SEND,
    OP_TYPING,
    CloseCode,
)
from parley import events

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@dataclass(frozen=True, slots=True)
class Command:
    op: str
    d: str  # the fields of ``d``
    reply: str


@dataclass(frozen=True, slots=True)
class Event:
    types: tuple[str, ...]  # event types that share the row
    d: str
    to: str  # who receives it


@dataclass(frozen=True, slots=True)
class Close:
    code: CloseCode
    meaning: str
    client_should: str


COMMANDS: tuple[Command, ...] = (
    Command(OP_SEND,
            '`channel_id`, `text` (1..40,000 chars of Unicode text, no NUL), `client_msg_id` '
            '(optional, 1..64 chars, no NUL), `thread_root_id` (optional: a reply in that '
            'thread), `also_in_channel` (optional boolean, with `thread_root_id`), `file_ids` '
            '(optional, up to 10 ready files you uploaded)',
            '`ack` with `id`, `channel_id`, `seq`, `ts` (ms), `client_msg_id` - sent only after '
            'the message is durable in PostgreSQL'),
    Command(OP_COMMAND,
            '`channel_id`, `command` (e.g. `"/echo"`), `text` (optional): run an installed '
            "app's slash command in a channel you can see (docs/apps.md, *Slash commands*)",
            "`ack` with `response_type` (`ephemeral`, `in_channel`, or `null` when the app only "
            'acknowledged), `text`, `blocks`, and for `in_channel` `message_id` and `seq`; or '
            '`error` `unknown_command`, `channel_not_found`, `app_did_not_respond` (retryable)'),
    Command(OP_ACTION,
            '`channel_id`, `message_id`, `action_id`, `block_id` (optional), `value` (optional): '
            "press a button in the blocks of an app's message in a channel you can see "
            '(docs/apps.md, *Interactivity*)',
            '`ack` (empty) once the app acknowledged; what it does next arrives as events '
            '(`message.updated`, `message.ephemeral`, ...); or `error` `channel_not_found`, '
            '`message_not_found`, `action_not_found`, `unsupported_element`, '
            '`app_not_installed`, `app_not_interactive`, `app_did_not_respond` (retryable)'),
    Command(OP_HEARTBEAT,
            '`active` (optional boolean, default `true`)',
            'none without a `ref`; with a `ref`, `heartbeat_ack` with `ts` (ms)'),
    Command(OP_RESUME,
            '`channels`: a map of channel id to cursor (the last `seq` the client holds with '
            'nothing missing below it); only on a `?resume=1` connection, once',
            '`ack` with `replayed`, `resync_required`, `ignored` after the replay; see '
            '*Reconnecting and resuming*'),
)


EVENTS: tuple[Event, ...] = (
    Event((EV_HELLO,),
          'see above',
          'the new connection'),
    Event((EV_ACK,),
          'command result',
          'the sender'),
    Event((EV_ERROR,),
          '`code`, `message`, `retryable` (+ `retry_after_ms` for `rate_limited`)',
          'the sender'),
    Event((EV_HEARTBEAT_ACK,),
          '`ts`',
          'the sender of a `heartbeat` that carried a `ref`'),
    Event((EV_RESYNC_REQUIRED,),
          '`channel_id`, `from_seq`, `to_seq`, `reason`: the connection will not send seqs '
          '`from_seq`..`to_seq` of the channel; fetch them (see *Reconnecting and resuming*); '
          'live events follow `to_seq`',
          'a resuming connection'),
    Event((events.MESSAGE_CREATED,),
          '`id`, `channel_id`, `seq`, `workspace_id`, `user_id`, `text`, `client_msg_id`, '
          '`thread_root_id`, `ts`, `edited_ts`, `deleted`, `also_in_channel`, `files` (its shared'
          " files in order; see *Files* below); only when the message has them (an app's, or one "
          "posted with Slack blocks): `blocks`, `attachments` (Slack's JSON arrays, as posted), "
          "`bot_id` and `app_id` (the app's bot that posted; `user_id` is the bot's account), "
          '`subtype` (`bot_message` for incoming-webhook posts). The only sequenced event: every '
          "stored message, thread replies included, takes the channel's next `seq`",
          'channel members'),
    Event((events.MESSAGE_UPDATED,),
          '`workspace_id`, `channel_id`, `message` (the edited message, as in `message.created`, '
          'with `edited_ts`; also sent when a file it shares is deleted: that entry of `files` '
          'gets `state` `deleted`)',
          'channel members'),
    Event((events.MESSAGE_DELETED,),
          '`workspace_id`, `channel_id`, `message` (the tombstone: same `id` and `seq`, `text` '
          '"", `deleted` true); its reactions and pin are gone',
          'channel members'),
    Event((events.MESSAGE_PINNED, events.MESSAGE_UNPINNED,),
          '`workspace_id`, `channel_id`, `message_id`, `user_id` (who)',
          'channel members'),
    Event((events.REACTION_ADDED, events.REACTION_REMOVED,),
          '`workspace_id`, `channel_id`, `message_id`, `user_id`, `emoji` (sent only when '
          'something changed)',
          'channel members'),
    Event((events.THREAD_UPDATED,),
          '`workspace_id`, `channel_id`, `thread_root_id`, `reply_count`, `latest_reply_ts`, '
          '`replier_ids`',
          'channel members'),
    Event((events.CHANNEL_UPDATED,),
          'the channel (`id`, `workspace_id`, `kind`, `name`, `topic`, `purpose`, `archived`, '
          '`last_seq`): renamed, topic or purpose set, archived or unarchived, made private',
          'channel members'),
    Event((events.CHANNEL_JOINED,),
          "the channel plus the user's `last_read_seq`, `unread_count`, `mention_count`",
          'the user who joined or was added (all their sockets); the gateway subscribes them'),
    Event((events.CHANNEL_LEFT,),
          '`id`, `workspace_id`',
          'the user who left or was removed; the gateway unsubscribes them'),
    Event((events.MEMBER_JOINED, events.MEMBER_LEFT,),
          '`workspace_id`, `channel_id`, `user_id`',
          'channel members'),
    Event((events.CHANNEL_READ,),
          '`workspace_id`, `channel_id`, `last_read_seq`, `unread_count`, `mention_count`',
          'the user (every device)'),
    Event((events.MENTION_CREATED, events.MENTION_REMOVED,),
          '`workspace_id`, `channel_id`, `message_id`, `message_seq`, `thread_root_id`, `user_id`'
          ' (the author)',
          'the mentioned user (a channel member)'),
    Event((events.THREAD_FOLLOWED, events.THREAD_UNFOLLOWED,),
          '`workspace_id`, `channel_id`, `thread_root_id`',
          'the user (every device)'),
    Event((events.MEMBERSHIP_UPDATED,),
          '`workspace_id`, `user_id`, `role`',
          'the user whose role changed'),
    Event((events.MEMBERSHIP_ENDED,),
          '`workspace_id`, `user_id`, `reason` (`left` or `deactivated`); preceded by '
          '`channel.left` for each of their channels; their sockets of that workspace then close '
          'with 4006',
          'the user'),
    Event((events.SESSION_REVOKED,),
          '`session_id`',
          'the user; sockets of that session are then closed with 4001'),
    Event((events.MESSAGE_EPHEMERAL,),
          "`workspace_id`, `channel_id`, `user_id` (the app's bot), `text`, `ts` (a Slack-style "
          '`"<s>.<us>"` string), `thread_root_id`, and `blocks`, `attachments`, `bot_id`, '
          "`app_id` when set: an app's `chat.postEphemeral`, never stored, no `seq`, not in "
          'history',
          'the one user it is for (every socket of theirs)'),
)


PRESENCE_COMMANDS: tuple[Command, ...] = (
    Command(OP_PRESENCE_SUBSCRIBE,
            '`user_ids` (1..500 ids)',
            '`ack` with `presences`: `[{user_id, status, dnd}]`, the current state of each id '
            'asked. All or nothing: over the cap, `presence_subscription_limit` with `limit` and '
            '`subscribed`, and nothing is subscribed. Subscribing again to a watched user is '
            'free.'),
    Command(OP_PRESENCE_UNSUBSCRIBE,
            '`user_ids`, or `all: true`',
            '`ack` with `subscribed` (how many remain)'),
    Command(OP_PRESENCE_SET,
            '`status`: `"away"` (set away) or `"auto"` (away only when idle), and/or `dnd`: '
            'boolean',
            "`ack` with `user_id`, `status`, `dnd` (the user's state after the change, as others "
            'see it)'),
    Command(OP_TYPING,
            '`channel_id` (a channel you are in)',
            'none, unless the command has a `ref`: then `ack` with `sent` (boolean) and, when '
            'false, `reason`: `throttled`, `channel_too_large` or `unavailable`'),
)


PRESENCE_EVENTS: tuple[Event, ...] = (
    Event((EV_PRESENCE_CHANGED,),
          '`user_id`, `status` (`online` / `away` / `offline`), `dnd`',
          'connections subscribed to that user, when what they show changes'),
    Event((EV_TYPING,),
          '`channel_id`, `user_id`, `expires_in_ms` (5000)',
          "members of the channel connected now (also the typist's own sockets: ignore your own)."
          ' Show the indicator until `expires_in_ms` after the event, or until a message from '
          'that user arrives. Unsequenced: never replayed.'),
)


CLOSE_CODES: tuple[Close, ...] = (
    Close(CloseCode.NORMAL,
          'normal closure',
          '-'),
    Close(CloseCode.PROTOCOL_ERROR,
          'protocol error (unmasked frame, RSV bits, unknown opcode, bad close frame)',
          'fix the client'),
    Close(CloseCode.INVALID_DATA,
          'invalid UTF-8 in a text frame or close reason',
          'fix the client'),
    Close(CloseCode.TOO_BIG,
          'frame or message over 1 MiB, or more than 64 fragments',
          'send smaller messages'),
    Close(CloseCode.INTERNAL,
          'server error, the idle timeout (no bytes for 60 s), the database or hub unavailable '
          "while the connection opened, or history unavailable during a resume's replay",
          'reconnect with backoff (and resume)'),
    Close(CloseCode.AUTH_FAILED,
          'token expired or session revoked (logout)',
          'get a new token, reconnect'),
    Close(CloseCode.SLOW_CONSUMER,
          'slow consumer: outbound buffer over 4 MiB',
          'reconnect and catch up from history'),
    Close(CloseCode.RATE_LIMITED,
          'rate limited: 50 rate-limited commands in a row; reason `{"retry_after_ms": N}`',
          'wait, reconnect'),
    Close(CloseCode.RESYNC_REQUIRED,
          'resync required: more than 10,000 live events arrived before the connection went live '
          '(while opening, waiting for `resume` or replaying)',
          'reconnect and resume from your cursors'),
    Close(CloseCode.SERVER_DRAINING,
          'server going away (drain); reason `{"retry_after_ms": N}`, jittered 1-10 s',
          'reconnect after the hint'),
    Close(CloseCode.MEMBERSHIP_ENDED,
          'membership ended (removed or deactivated)',
          'do not reconnect'),
)


def _commands(rows: tuple[Command, ...]) -> list[str]:
    return (["| op | d | reply |", "|---|---|---|"]
            + [f"| `{c.op}` | {c.d} | {c.reply} |" for c in rows])


def _events(rows: tuple[Event, ...]) -> list[str]:
    return (["| t | d | to |", "|---|---|---|"]
            + [f"| {' / '.join(f'`{t}`' for t in e.types)} | {e.d} | {e.to} |" for e in rows])


def _closes(rows: tuple[Close, ...]) -> list[str]:
    return (["| Code | Meaning | Client should |", "|---|---|---|"]
            + [f"| {int(c.code)} | {c.meaning} | {c.client_should} |" for c in rows])


#: The generated regions of docs/protocol.md, by name.
TABLES: dict[str, list[str]] = {
    "commands": _commands(COMMANDS),
    "events": _events(EVENTS),
    "presence-commands": _commands(PRESENCE_COMMANDS),
    "presence-events": _events(PRESENCE_EVENTS),
    "close-codes": _closes(CLOSE_CODES),
}
_REGION = re.compile(r"(<!-- generated: ([a-z-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def render_doc(text: str) -> str:
    """``text`` with every generated region rewritten from the tables.
    KeyError for a region that names no table."""
    return _REGION.sub(lambda m: m.group(1) + "\n".join(TABLES[m.group(2)]) + "\n" + m.group(4),
                       text)


def regions(text: str) -> list[str]:
    """The names of the generated regions in ``text``, in order."""
    return [m.group(2) for m in _REGION.finditer(text)]


def all_ops() -> frozenset[str]:
    return frozenset(c.op for c in (*COMMANDS, *PRESENCE_COMMANDS))


if __name__ == "__main__":  # python -m gateway.protocol.spec [--write]
    new = render_doc(DOC.read_text())
    if "--write" in sys.argv:
        DOC.write_text(new)
    else:
        sys.stdout.write(new)
