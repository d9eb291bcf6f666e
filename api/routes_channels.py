"""Channels: create, list, settings, membership, DMs and read state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from api.deps import Auth, Mutator, Svc
from api.params import Cursor, IdPath, PageSize
from api.schemas import (
    AddedOut,
    ChannelIn,
    ChannelList,
    ChannelMemberList,
    ChannelMemberOut,
    ChannelOut,
    ChannelPatch,
    DmIn,
    ReadIn,
    ReadStateOut,
    UserIdsIn,
)
from parley.actions import channels

router = APIRouter(tags=["channels"])
Limit = Annotated[PageSize, Query(le=channels.LIST_PAGE_MAX, description="Page size")]
CHANNEL = "/v1/workspaces/{workspace_id}/channels/{channel_id}"


@router.post("/v1/workspaces/{workspace_id}/channels", status_code=201,
             response_model=ChannelOut)
async def create_channel(workspace_id: IdPath, body: ChannelIn, me: Mutator,
                         s: Svc) -> ChannelOut:
    """Create a public or private channel; the caller is its first member."""
    channel = await channels.create_channel(s, me, workspace_id, body.name, body.kind)
    out = ChannelOut.of(channel, 0)
    out.is_member, out.unread_count, out.mention_count = True, 0, 0
    return out


@router.get("/v1/workspaces/{workspace_id}/channels", response_model=ChannelList)
async def list_channels(
    workspace_id: IdPath, me: Auth, s: Svc, cursor: Cursor = 0, limit: Limit = 100,
    include_public: Annotated[bool, Query(
        description="Also list public channels you are not in (not for guests)")] = False,
) -> ChannelList:
    """The caller's channels (DMs included), by id, with membership, read
    position, unread and mention counts."""
    rows = await channels.list_channels(s, me, workspace_id, include_public=include_public,
                                        after_id=cursor, limit=limit)
    nxt = str(rows[-1].channel.id) if len(rows) == limit else None
    return ChannelList(channels=[ChannelOut.view(v) for v in rows], next_cursor=nxt)


@router.get("/v1/workspaces/{workspace_id}/channels/public", response_model=ChannelList)
async def public_channels(workspace_id: IdPath, me: Auth, s: Svc, cursor: Cursor = 0,
                          limit: Limit = 100) -> ChannelList:
    """Browse the workspace's public channels, by id."""
    rows = await channels.list_public_channels(s, me, workspace_id, cursor, limit)
    nxt = str(rows[-1].id) if len(rows) == limit else None
    return ChannelList(channels=[ChannelOut.of(c) for c in rows], next_cursor=nxt)


@router.post("/v1/workspaces/{workspace_id}/dms", response_model=ChannelOut,
             responses={201: {"model": ChannelOut, "description": "Created"}})
async def open_dm(workspace_id: IdPath, body: DmIn, me: Mutator, s: Svc) -> JSONResponse:
    """Get or create the DM or group DM (at most 8 people, you included) of
    exactly these users: 201 when created, 200 when it existed."""
    channel, created = await channels.open_dm(s, me, workspace_id,
                                              [int(u) for u in body.user_ids])
    view = await channels.get_channel(s, me, workspace_id, channel.id)
    return JSONResponse(ChannelOut.view(view).model_dump(), status_code=201 if created else 200)


@router.get(CHANNEL, response_model=ChannelOut)
async def get_channel(workspace_id: IdPath, channel_id: IdPath, me: Auth, s: Svc) -> ChannelOut:
    """One channel, with the caller's membership and read state."""
    return ChannelOut.view(await channels.get_channel(s, me, workspace_id, channel_id))


@router.patch(CHANNEL, response_model=ChannelOut)
async def update_channel(workspace_id: IdPath, channel_id: IdPath, body: ChannelPatch,
                         me: Mutator, s: Svc) -> ChannelOut:
    """Rename (staff or the creator), set topic or purpose (full members)."""
    return ChannelOut.of(await channels.update_channel(
        s, me, workspace_id, channel_id, name=body.name, topic=body.topic,
        purpose=body.purpose))


@router.post(CHANNEL + "/archive", response_model=ChannelOut)
async def archive_channel(workspace_id: IdPath, channel_id: IdPath, me: Mutator,
                          s: Svc) -> ChannelOut:
    """Archive: the channel becomes read-only."""
    return ChannelOut.of(await channels.set_archived(s, me, workspace_id, channel_id, True))


@router.post(CHANNEL + "/unarchive", response_model=ChannelOut)
async def unarchive_channel(workspace_id: IdPath, channel_id: IdPath, me: Mutator,
                            s: Svc) -> ChannelOut:
    """Unarchive: the channel is writable again."""
    return ChannelOut.of(await channels.set_archived(s, me, workspace_id, channel_id, False))


@router.post(CHANNEL + "/make-private", response_model=ChannelOut)
async def make_private(workspace_id: IdPath, channel_id: IdPath, me: Mutator,
                       s: Svc) -> ChannelOut:
    """Convert a public channel to private (there is no way back)."""
    return ChannelOut.of(await channels.make_private(s, me, workspace_id, channel_id))


@router.post(CHANNEL + "/join", response_model=ChannelOut)
async def join_channel(workspace_id: IdPath, channel_id: IdPath, me: Mutator,
                       s: Svc) -> ChannelOut:
    """Join a public channel."""
    return ChannelOut.of(await channels.join_channel(s, me, workspace_id, channel_id))


@router.post(CHANNEL + "/leave", status_code=204)
async def leave_channel(workspace_id: IdPath, channel_id: IdPath, me: Mutator,
                        s: Svc) -> Response:
    """Leave a channel (not #general, not a DM)."""
    await channels.leave_channel(s, me, workspace_id, channel_id)
    return Response(status_code=204)


@router.get(CHANNEL + "/members", response_model=ChannelMemberList)
async def channel_members(workspace_id: IdPath, channel_id: IdPath, me: Auth, s: Svc,
                          cursor: Cursor = 0, limit: Limit = 100) -> ChannelMemberList:
    """The channel's members, by user id."""
    rows = await channels.channel_members(s, me, workspace_id, channel_id, cursor, limit)
    nxt = str(rows[-1].user_id) if len(rows) == limit else None
    return ChannelMemberList(members=[ChannelMemberOut.of(m) for m in rows], next_cursor=nxt)


@router.post(CHANNEL + "/members", response_model=AddedOut)
async def add_to_channel(workspace_id: IdPath, channel_id: IdPath, body: UserIdsIn,
                         me: Mutator, s: Svc) -> AddedOut:
    """Add workspace members to a channel you are in (guests too)."""
    added = await channels.add_to_channel(s, me, workspace_id, channel_id,
                                          [int(u) for u in body.user_ids])
    return AddedOut(added=[str(u) for u in added])


@router.delete(CHANNEL + "/members/{user_id}", status_code=204)
async def remove_from_channel(workspace_id: IdPath, channel_id: IdPath, user_id: IdPath,
                              me: Mutator, s: Svc) -> Response:
    """Remove someone (staff or the creator), or yourself (leave).  Their
    sockets stop receiving the channel at once."""
    await channels.remove_from_channel(s, me, workspace_id, channel_id, user_id)
    return Response(status_code=204)


@router.post(CHANNEL + "/read", response_model=ReadStateOut)
async def mark_read(workspace_id: IdPath, channel_id: IdPath, body: ReadIn, me: Mutator,
                    s: Svc) -> ReadStateOut:
    """Set your read position (default: the newest message); every device of
    yours gets `channel.read`."""
    return ReadStateOut.of(await channels.mark_read(s, me, workspace_id, channel_id, body.seq))
