"""Channels: create, list, join."""

from __future__ import annotations

from parley import events
from parley.actions import validate
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import Conflict, InvalidInput, NotFound
from parley.permissions import Perm, require
from parley.services import Services
from storage.interfaces import Channel

LIST_PAGE_MAX = 200


async def visible_channel(svc: Services, ident: Identity, workspace_id: int,
                          channel_id: int) -> Channel:
    """The channel if the caller may see it: a member of it, or it is public
    and the caller a full member of the workspace.  Otherwise NotFound, the
    same answer as for a channel that does not exist."""
    member = await require_member(svc, ident, workspace_id)
    channel = await svc.store.channel(workspace_id, channel_id)
    if channel is None:
        raise NotFound("channel_not_found", "no such channel")
    if await svc.store.is_channel_member(workspace_id, channel_id, ident.user_id):
        return channel
    if channel.kind == "public" and member.role != "guest":
        return channel
    raise NotFound("channel_not_found", "no such channel")


async def create_channel(svc: Services, ident: Identity, workspace_id: int, name: str,
                         kind: str) -> Channel:
    member = await require_member(svc, ident, workspace_id)
    if kind not in {"public", "private"}:
        raise InvalidInput("invalid_channel_kind", "kind must be public or private")
    require(member, Perm.CREATE_PUBLIC_CHANNEL if kind == "public"
            else Perm.CREATE_PRIVATE_CHANNEL)
    name = validate.channel_name(name)
    channel = await svc.store.create_channel(svc.ids.next_id(), workspace_id, kind, name,
                                             ident.user_id)
    if channel is None:
        raise Conflict("name_taken", "a channel with this name exists")
    await svc.publish(events.user_topic(ident.user_id),
                      events.encode(events.CHANNEL_JOINED, events.channel_data(channel)))
    return channel


async def join_channel(svc: Services, ident: Identity, workspace_id: int,
                       channel_id: int) -> Channel:
    member = await require_member(svc, ident, workspace_id)
    channel = await visible_channel(svc, ident, workspace_id, channel_id)
    if channel.kind != "public":
        raise NotFound("channel_not_found", "no such channel")
    require(member, Perm.JOIN_PUBLIC_CHANNEL)
    if await svc.store.join_channel(workspace_id, channel_id, ident.user_id):
        await svc.publish_many([
            (events.user_topic(ident.user_id),
             events.encode(events.CHANNEL_JOINED, events.channel_data(channel))),
            (events.channel_topic(channel_id),
             events.encode(events.MEMBER_JOINED, {"channel_id": channel_id,
                                                  "user_id": ident.user_id})),
        ])
    return channel


async def my_channels(svc: Services, ident: Identity,
                      workspace_id: int) -> list[tuple[Channel, int]]:
    await require_member(svc, ident, workspace_id)
    return await svc.store.user_channels(workspace_id, ident.user_id)


async def list_public_channels(svc: Services, ident: Identity, workspace_id: int,
                               after_id: int, limit: int) -> list[Channel]:
    await require_member(svc, ident, workspace_id)
    return await svc.store.list_public_channels(workspace_id, after_id,
                                                max(1, min(limit, LIST_PAGE_MAX)))
