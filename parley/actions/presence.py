"""Reads the gateway's presence service needs (typing and subscriptions).

Presence itself lives at the edge (``gateway/presence*.py``): nothing of it
is stored in PostgreSQL.  These two reads are how it asks the domain, rather
than the store, who may see what.
"""

from __future__ import annotations

from collections.abc import Collection

from parley.services import Services


async def channel_size(svc: Services, workspace_id: int, channel_id: int) -> int:
    """The channel's member count (typing is not sent in large channels)."""
    return await svc.store.roster.channel_member_count(workspace_id, channel_id)


async def watchable(svc: Services, workspace_id: int, user_ids: list[int]) -> Collection[int]:
    """The ids a member of the workspace may watch: its active members."""
    return await svc.store.members.active_members_among(workspace_id, user_ids)
