"""Reads the gateway needs to deliver exactly once, in order: a channel's
position and the events after a sequence number (backfill and resume).
They bypass per-user checks: the gateway only calls them for channels its
authenticated sessions are members of."""

from __future__ import annotations

import contextlib

from parley import events
from parley.auth import Identity
from parley.model import Channel, StoreUnavailable
from parley.services import Services

BACKFILL_PAGE = 500  # messages per backfill query


async def channel_position(svc: Services, workspace_id: int, channel_id: int) -> int:
    """The channel's highest committed seq (0 for none, or an unknown channel)."""
    channel = await svc.store.channels.channel(workspace_id, channel_id)
    return 0 if channel is None else channel.last_seq


async def events_after(svc: Services, workspace_id: int, channel_id: int, after_seq: int,
                       limit: int = BACKFILL_PAGE) -> list[tuple[int, bytes]]:
    """(seq, encoded message.created event) for seq > after_seq, in order."""
    page = await svc.store.messages.history(workspace_id, channel_id, after=after_seq, limit=limit)
    live = [m.id for m in page if not m.deleted]
    shared = await svc.store.shares.message_files(workspace_id, live)
    extras = await svc.store.extras.message_extras(workspace_id, [m.id for m in page])
    return [(m.seq, events.encode(events.MESSAGE_CREATED,
                                  events.message_data(m, shared.get(m.id, []), extras.get(m.id))))
            for m in page]


async def session_channels(svc: Services, ident: Identity,
                           workspace_id: int) -> list[tuple[Channel, int]] | None:
    """The user's channels with read positions, or None when the user is no
    longer an active member of the workspace (or the session was revoked).

    Also learns the workspace's shard, so the session's plain sends take the
    synchronous path (``messages.post_message_nowait`` needs it cached); if
    the directory is down, they take the full path, which looks it up again.
    """
    member = await svc.store.members.member(workspace_id, ident.user_id)
    if member is None or not member.active:
        return None
    if not await svc.store.sessions.session_active(ident.session_id, ident.user_id):
        return None
    if svc.store.workspaces.cached_shard(workspace_id) is None:
        with contextlib.suppress(StoreUnavailable):
            await svc.store.workspaces.shard_of(workspace_id)
    return await svc.store.roster.user_channels(workspace_id, ident.user_id)
