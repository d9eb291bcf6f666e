"""Ports of channels: the channels themselves, who is in them, read markers.

Workspace-scoped like every shard port: a channel id of workspace B looked
up under workspace A is not found.  A channel's ``last_seq`` is the highest
committed seq (the counter the writer advances in its transaction).
Connection failures raise ``StoreUnavailable``; nothing was written then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from parley.model import Channel, ChannelMember, ChannelView, ReadState


class ChannelStore(Protocol):
    """Channels (public, private, DMs, group DMs) and their settings."""

    async def create_channel(self, channel_id: int, workspace_id: int, kind: str, name: str,
                             creator: int) -> Channel | None:
        """Create the channel, its seq counter (at 0) and the creator's
        membership, atomically, with the Events API's ``channel_created``
        (public channels) and ``member_joined_channel`` outbox rows; None
        (nothing written) when the name is taken."""

    async def channel(self, workspace_id: int, channel_id: int) -> Channel | None:
        """The channel (archived or not), or None."""

    async def update_channel(self, workspace_id: int, channel_id: int, *,
                             name: str | None = None, topic: str | None = None,
                             purpose: str | None = None, kind: str | None = None,
                             archived: bool | None = None,
                             by: int | None = None) -> Channel | None:
        """Apply the non-None changes; None when ``name`` is taken.  A change
        of the archive state writes, in its transaction, the Events API's
        ``channel_archive`` / ``group_archive`` (or ``*_unarchive``) outbox
        rows, ``by`` the user who made it (parley/ports/app_events.py)."""

    async def default_channel(self, workspace_id: int) -> Channel | None:
        """#general, which every member is in."""

    async def list_public_channels(self, workspace_id: int, after_id: int,
                                   limit: int) -> list[Channel]:
        """Public channels with ids above ``after_id``, by id, at most ``limit``."""

    async def get_or_create_dm(self, channel_id: int, workspace_id: int, kind: str,
                               dm_key: str, creator: int,
                               members: Sequence[int]) -> tuple[Channel, list[int]]:
        """The one DM channel for ``dm_key`` (race-free), and the members
        newly added to it."""

    async def channel_views(self, workspace_id: int, user_id: int, *, include_public: bool,
                            after_id: int, limit: int) -> list[ChannelView]:
        """The user's channels (plus public ones with ``include_public``) by
        id, with membership, unread and mention counts."""


class RosterStore(Protocol):
    """Channel memberships."""

    async def is_channel_member(self, workspace_id: int, channel_id: int,
                                user_id: int) -> bool:
        """True when the user is in the channel now."""

    async def join_channel(self, workspace_id: int, channel_id: int, user_id: int) -> bool:
        """Add the membership; True when it is new (False: already a member).
        A new one writes ``member_joined_channel`` outbox rows in its transaction."""

    async def user_channels(self, workspace_id: int,
                            user_id: int) -> list[tuple[Channel, int]]:
        """(channel, last read seq) for every channel the user is in, by channel id."""

    async def add_channel_members(self, workspace_id: int, channel_id: int,
                                  user_ids: Sequence[int],
                                  inviter_id: int | None = None) -> list[int]:
        """Add the active workspace members among ``user_ids``; the newly added
        (with ``member_joined_channel`` outbox rows naming ``inviter_id``, in
        the same transaction)."""

    async def remove_channel_member(self, workspace_id: int, channel_id: int,
                                    user_id: int) -> bool:
        """Remove the membership (and the user's follows and mentions there);
        a removal writes ``member_left_channel`` outbox rows in its transaction."""

    async def channel_members_page(self, workspace_id: int, channel_id: int,
                                   after_user_id: int, limit: int) -> list[ChannelMember]:
        """Members with user ids above ``after_user_id``, by user id, at most ``limit``."""

    async def channel_member_ids(self, workspace_id: int, channel_id: int) -> list[int]:
        """Every member's user id, ascending."""

    async def channel_member_count(self, workspace_id: int, channel_id: int) -> int:
        """How many members the channel has (0 for an unknown channel)."""


class ReadStore(Protocol):
    """Per-member read markers and the counts derived from them."""

    async def read_state(self, workspace_id: int, channel_id: int,
                         user_id: int) -> ReadState | None:
        """The member's read position with unread and mention counts; None
        when the user is not a member."""

    async def mark_read(self, workspace_id: int, channel_id: int, user_id: int,
                        seq: int) -> ReadState | None:
        """Set the read position (clamped to the channel's last seq); None
        when the user is not a member."""
