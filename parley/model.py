"""The domain's records: what actions work with and stores return.

Rules for this file: it imports nothing of ours; records are frozen,
slotted dataclasses (plain values, no behaviour, no I/O); the two
exceptions at the end are the ones every store may raise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    display_name: str
    password_hash: str
    deactivated: bool
    is_bot: bool = False  # an app's bot account (cannot log in)


@dataclass(frozen=True, slots=True)
class Member:
    workspace_id: int
    user_id: int
    role: str  # 'owner' | 'admin' | 'member' | 'guest'
    display_name: str
    active: bool
    is_bot: bool = False  # an app's bot (see parley/ports/apps.py)


@dataclass(frozen=True, slots=True)
class Workspace:
    id: int
    name: str
    created_by: int
    shard: str


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    workspace_id: int
    kind: str  # 'public' | 'private' | 'dm' | 'group_dm'
    name: str | None
    topic: str
    purpose: str
    created_by: int
    archived: bool
    last_seq: int


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    channel_id: int
    seq: int
    workspace_id: int
    user_id: int
    text: str
    client_msg_id: str | None
    thread_root_id: int | None
    created_at: dt.datetime
    edited_at: dt.datetime | None
    deleted: bool
    # A thread reply also shown in the channel ("also send to channel").
    also_in_channel: bool = False


@dataclass(frozen=True, slots=True)
class MessageExtras:
    """What a Slack-style message carries beyond Parley's own fields; a
    message has these only when one of them is set (plain messages have
    none, so the writer's hot path never sees them).

    ``blocks`` and ``attachments`` are JSON arrays, kept as the text they
    were received as (``parley.actions.rich`` validates them); ``bot_id`` /
    ``app_id`` name the app's bot that posted; ``subtype`` is
    ``'bot_message'`` for posts through an incoming webhook."""

    blocks: str | None = None
    attachments: str | None = None
    bot_id: int | None = None
    app_id: int | None = None
    subtype: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel as one user sees it in a list: membership and read state
    (the read fields are None when the user is not a member)."""

    channel: Channel
    is_member: bool
    last_read_seq: int | None
    unread_count: int | None  # others' non-deleted channel messages after last_read_seq
    mention_count: int | None  # the user's mentions after last_read_seq


@dataclass(frozen=True, slots=True)
class ReadState:
    channel_id: int
    last_read_seq: int
    unread_count: int
    mention_count: int


@dataclass(frozen=True, slots=True)
class ChannelMember:
    user_id: int
    display_name: str
    role: str  # the workspace role


@dataclass(frozen=True, slots=True)
class Invite:
    id: int
    workspace_id: int
    role: str
    created_by: int
    created_at: dt.datetime
    expires_at: dt.datetime
    max_uses: int | None
    uses: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class InviteOutcome:
    """``status``: 'joined' | 'already_member' | 'invalid' (unknown, expired,
    revoked or used up) | 'deactivated' (an admin ended this membership)."""

    status: str
    member: Member | None


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """``status``: 'rotated' | 'reused' (the session is now revoked) |
    'invalid' (unknown, expired, or its session ended)."""

    status: str
    user_id: int | None = None
    session_id: int | None = None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    root_id: int
    reply_count: int  # non-deleted replies
    latest_reply_at: dt.datetime | None
    replier_ids: tuple[int, ...]  # distinct authors of non-deleted replies, by id


@dataclass(frozen=True, slots=True)
class Reaction:
    message_id: int
    emoji: str
    user_ids: tuple[int, ...]  # in the order they reacted


@dataclass(frozen=True, slots=True)
class Pin:
    message: Message
    pinned_by: int
    pinned_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MentionChange:
    """Users whose mention of a message appeared or disappeared."""

    added: tuple[int, ...]
    removed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append; id and created_at are assigned by the caller
    (snowflake), seq by the store inside the write transaction."""

    id: int
    channel_id: int
    workspace_id: int
    user_id: int
    text: str
    client_msg_id: str | None
    thread_root_id: int | None
    created_at: dt.datetime
    also_in_channel: bool = False  # a thread reply also shown in the channel


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An uploaded file.  ``state``: 'pending' (created, bytes not checked yet)
    | 'ready' (size checked, type sniffed; attachable) | 'deleted'."""

    id: int
    workspace_id: int
    uploader_id: int
    key: str  # the blob key, under the workspace's prefix; never from the name
    name: str  # declared by the uploader; display only
    size: int  # declared while pending, the stored size once ready
    declared_type: str  # the uploader's claim: never served
    content_type: str | None  # sniffed from the bytes (None while pending)
    state: str
    created_at: dt.datetime
    thumbnail_key: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class FileShare:
    """A channel in which a live (not deleted) message shares a file, and
    whether a given user is a member of it."""

    channel_id: int
    kind: str
    is_member: bool


@dataclass(frozen=True, slots=True)
class FileLimits:
    """A workspace's own limits; None means the server's setting."""

    max_file_bytes: int | None = None
    allowed_types: tuple[str, ...] | None = None


class AppendRejected(Exception):
    """One message of a batch was refused; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StoreUnavailable(Exception):
    """The database cannot be reached; the operation may be retried later.
    Nothing was written."""
