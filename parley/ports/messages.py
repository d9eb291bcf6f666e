"""Ports of messages beyond the append path (``appender.MessageAppender``):
reading and changing stored messages, threads, reactions, pins and search.

Workspace-scoped like every shard port.  A message's seq never changes; a
deleted message stays as a tombstone with its id and seq.  Connection
failures raise ``StoreUnavailable``; nothing was written then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from parley.model import MentionChange, Message, MessageExtras, Pin, Reaction, ThreadSummary


class MessageStore(Protocol):
    """Stored messages: read, page, edit, tombstone, and their mentions."""

    async def message(self, workspace_id: int, message_id: int) -> Message | None:
        """The message (a tombstone if deleted), or None."""

    async def history(self, workspace_id: int, channel_id: int, *, before: int | None = None,
                      after: int | None = None, limit: int = 50) -> list[Message]:
        """A page of the channel in seq order, oldest first: seqs above
        ``after``, else below ``before`` (or the newest); tombstones included,
        so a page has no hole a client could mistake for a gap."""

    async def edit_message(self, workspace_id: int, message_id: int, text: str,
                           edited_at: dt.datetime,
                           extras: MessageExtras | None = None) -> Message | None:
        """Replace the text and set ``edited_at``; None when missing or deleted.
        With ``extras``, the message's extras become those (their blocks and
        attachments replace the old ones) in the same transaction."""

    async def delete_message(self, workspace_id: int,
                             message_id: int) -> tuple[Message, tuple[int, ...]] | None:
        """Tombstone (keeps the seq; empties the text; drops reactions, pin,
        mentions and the extras' blocks and attachments) atomically; the
        tombstone and the users whose mention went away, or None when missing
        or already deleted."""

    async def set_mentions(self, message: Message, user_ids: Sequence[int],
                           everyone: bool) -> MentionChange:
        """Make the message's mentions the channel members among ``user_ids``
        (all members with ``everyone``), never its author; what changed."""


class MessageExtrasStore(Protocol):
    """Blocks, attachments and the posting bot: what a Slack-style message
    carries beyond Parley's own fields (plain messages have none)."""

    async def put_message_extras(self, workspace_id: int, channel_id: int, message_id: int,
                                 extras: MessageExtras) -> None:
        """Store a message's extras, before the message itself is appended
        (keyed by the id the caller assigned), so no reader sees the message
        without them.  Idempotent."""

    async def drop_message_extras(self, workspace_id: int, message_id: int) -> None:
        """Remove the extras stored for an append that did not happen (a
        refusal, or a retry that found the first attempt's message)."""

    async def message_extras(self, workspace_id: int,
                             message_ids: Sequence[int]) -> dict[int, MessageExtras]:
        """The extras of those messages that have any."""


class TimelineIndex(Protocol):
    """Addressing a channel by time, as the Slack-compatible Web API does
    (a message ``ts`` is its creation second and its seq; see
    ``parley/slack_ids.py``)."""

    async def message_at(self, workspace_id: int, channel_id: int, second: int,
                         seq_residue: int, modulus: int) -> Message | None:
        """The message of the channel with ``seq % modulus == seq_residue``
        created in the unix second ``second``: one primary-key probe per
        candidate seq (``residue + k * modulus`` up to the channel's last
        seq; one for channels of fewer than ``modulus`` messages)."""

    async def seq_at(self, workspace_id: int, channel_id: int, at: dt.datetime) -> int:
        """The first seq of the channel created at or after ``at`` (last seq
        + 1 when none): bisection over the primary key (see
        ``parley_seq_at``, migration shard/0007)."""

    async def channel_page(self, workspace_id: int, channel_id: int, *, after_seq: int,
                           before_seq: int, limit: int, newest_first: bool,
                           top_level: bool) -> list[Message]:
        """Messages with ``after_seq < seq < before_seq``, in seq order or
        newest first; with ``top_level`` only what the channel's main view
        shows (not thread replies, except those also sent to the channel).
        One index scan on the primary key."""


class ThreadStore(Protocol):
    """Threads: summaries derived from the replies, and who follows them."""

    async def thread_summaries(self, workspace_id: int,
                               root_ids: Sequence[int]) -> dict[int, ThreadSummary]:
        """Summaries of the roots that have live replies (others are absent),
        computed from the replies in one query, never stored."""

    async def thread_replies(self, workspace_id: int, root_id: int, after_seq: int,
                             limit: int) -> list[Message]:
        """Replies with seqs above ``after_seq``, in seq order, at most ``limit``."""

    async def follow_thread(self, workspace_id: int, channel_id: int, root_id: int,
                            user_ids: Sequence[int], *, override: bool) -> list[int]:
        """Those of ``user_ids`` (channel members only) newly following;
        ``override=False`` keeps an explicit unfollow."""

    async def unfollow_thread(self, workspace_id: int, channel_id: int, root_id: int,
                              user_id: int) -> bool:
        """Record an explicit unfollow; True when the user was following."""

    async def is_following(self, workspace_id: int, root_id: int, user_id: int) -> bool:
        """True when the user follows the thread now."""


class ReactionStore(Protocol):
    """Reactions: one per (message, emoji, user)."""

    async def add_reaction(self, workspace_id: int, channel_id: int, message_id: int,
                           user_id: int, emoji: str, max_distinct: int) -> str:
        """'added' | 'exists' | 'too_many' (the message has ``max_distinct``
        other emoji) | 'gone' (the message is missing or deleted).  When
        'added', the same transaction writes the Events API's
        ``reaction_added`` outbox rows (parley/ports/app_events.py)."""

    async def remove_reaction(self, workspace_id: int, message_id: int, user_id: int,
                              emoji: str) -> bool:
        """Remove the user's reaction; True when there was one."""

    async def reactions_of(self, workspace_id: int,
                           message_ids: Sequence[int]) -> list[Reaction]:
        """Per message, per emoji (in order of the first reaction), who reacted in order."""


class PinStore(Protocol):
    """Pinned messages of a channel."""

    async def pin(self, workspace_id: int, channel_id: int, message_id: int, user_id: int,
                  max_pins: int) -> str:
        """'pinned' | 'exists' | 'too_many' (``max_pins`` already) | 'gone'
        (the message is missing, deleted or of another channel)."""

    async def unpin(self, workspace_id: int, channel_id: int, message_id: int) -> bool:
        """True when the message was pinned."""

    async def pins(self, workspace_id: int, channel_id: int) -> list[Pin]:
        """The channel's pins, newest pin first."""

    async def pinned_ids(self, workspace_id: int, channel_id: int,
                         message_ids: Sequence[int]) -> set[int]:
        """Those of ``message_ids`` pinned in the channel."""


class SearchIndex(Protocol):
    """Full-text search, scoped to what the user may read."""

    async def search(self, workspace_id: int, user_id: int, query: str, *,
                     include_public: bool, channel_id: int | None, author_id: int | None,
                     since: dt.datetime | None, until: dt.datetime | None,
                     before_id: int | None, limit: int) -> list[Message]:
        """Non-deleted messages matching ``query`` in the channels the user
        is in (plus public ones with ``include_public``), newest first."""
