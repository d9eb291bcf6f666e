"""Reads the gateway needs to deliver exactly once, in order: a channel's
position and the events after a sequence number (backfill and resume).
They bypass per-user checks: the gateway only calls them for channels its
authenticated sessions are members of."""

from __future__ import annotations

from parley import events
from parley.auth import Identity
from parley.services import Services
from storage.interfaces import Channel

BACKFILL_PAGE = 500  # messages per backfill query


async def channel_position(svc: Services, workspace_id: int, channel_id: int) -> int:
    """The channel's highest committed seq (0 for none, or an unknown channel)."""
    channel = await svc.store.channel(workspace_id, channel_id)
    return 0 if channel is None else channel.last_seq


async def events_after(svc: Services, workspace_id: int, channel_id: int, after_seq: int,
                       limit: int = BACKFILL_PAGE) -> list[tuple[int, bytes]]:
    """(seq, encoded message.created event) for seq > after_seq, in order."""
    page = await svc.store.history(workspace_id, channel_id, after=after_seq, limit=limit)
    shared = await svc.store.message_files(workspace_id, [m.id for m in page if not m.deleted])
    extras = await svc.store.message_extras(workspace_id, [m.id for m in page])
    return [(m.seq, events.encode(events.MESSAGE_CREATED,
                                  events.message_data(m, shared.get(m.id, []), extras.get(m.id))))
            for m in page]


async def session_channels(svc: Services, ident: Identity,
                           workspace_id: int) -> list[tuple[Channel, int]] | None:
    """The user's channels with read positions, or None when the user is no
    longer an active member of the workspace (or the session was revoked)."""
    member = await svc.store.member(workspace_id, ident.user_id)
    if member is None or not member.active:
        return None
    if not await svc.store.session_active(ident.session_id, ident.user_id):
        return None
    return await svc.store.user_channels(workspace_id, ident.user_id)
