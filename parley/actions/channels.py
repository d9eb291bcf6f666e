"""Channels: create, settings (rename, topic, purpose, archive, make private),
membership (join, leave, add, remove), lists with read state, DMs, and
marking read.

Visibility (one rule, ``visible_channel``): a channel is visible to its
members, and a public channel also to workspace members holding
``browse_public_channels`` (not guests).  Anything else answers 404
``channel_not_found``, exactly like a channel that does not exist.
Changing a channel needs membership of it (or, for a visible public
channel, a staff role); archived channels are read-only.

Apps' bots see public channels' metadata like members do (lists, info,
members) but read the content (history, threads, pins, files) only of the
channels they are in (``readable_channel``), as Slack bots do.
"""

from __future__ import annotations

from parley import events
from parley.actions import validate
from parley.actions.workspaces import require_member, require_target
from parley.auth import Identity
from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.model import Channel, ChannelMember, ChannelView, Member, ReadState
from parley.permissions import Perm, Role, allowed, outranks, require
from parley.services import Services

LIST_PAGE_MAX = 200
MEMBER_PAGE_MAX = 200
DM_MAX_MEMBERS = 8  # a group DM has at most 8 people, the caller included
TOPIC_MAX = 250  # characters of a topic
PURPOSE_MAX = 250
DEFAULT_CHANNEL = "general"  # every member is in it; it cannot be renamed, archived or left


def _not_found() -> NotFound:
    return NotFound("channel_not_found", "no such channel")


async def visible_channel(svc: Services, ident: Identity, workspace_id: int,
                          channel_id: int) -> Channel:
    """The channel if the caller may see it, else NotFound (see module doc)."""
    member = await require_member(svc, ident, workspace_id)
    channel, _ = await _visible(svc, member, workspace_id, channel_id)
    return channel


async def readable_channel(svc: Services, ident: Identity, workspace_id: int,
                           channel_id: int) -> Channel:
    """The channel if the caller may read its messages: ``visible_channel``
    for people; an app's bot must be in it (403 ``not_in_channel`` for a
    public channel it has not joined, 404 for anything it cannot see)."""
    if ident.app_id is None:
        return await visible_channel(svc, ident, workspace_id, channel_id)
    _, channel = await member_channel(svc, ident, workspace_id, channel_id)
    return channel


async def _visible(svc: Services, member: Member, workspace_id: int,
                   channel_id: int) -> tuple[Channel, bool]:
    """(channel, caller is a member of it), or NotFound.

    Both reads run whatever the first finds, so a real channel the caller
    cannot see costs what a made-up id costs (no timing difference), and
    nothing about the channel's state (archived, kind) is looked at before
    the caller is shown to be allowed to see it: every guard below, and
    every caller, decides on state only after this returned."""
    is_member = await svc.store.roster.is_channel_member(workspace_id, channel_id, member.user_id)
    channel = await svc.store.channels.channel(workspace_id, channel_id)
    if channel is None:
        raise _not_found()
    if is_member:
        return channel, True
    if channel.kind == "public" and allowed(member, Perm.BROWSE_PUBLIC_CHANNELS):
        return channel, False
    raise _not_found()


async def member_channel(svc: Services, ident: Identity, workspace_id: int,
                         channel_id: int) -> tuple[Member, Channel]:
    """The channel when the caller is a member of it: 404 when they cannot
    see it, 403 ``not_in_channel`` when it is public and they have not joined."""
    member = await require_member(svc, ident, workspace_id)
    channel, is_member = await _visible(svc, member, workspace_id, channel_id)
    if not is_member:
        raise Forbidden("not_in_channel", "join the channel first")
    return member, channel


async def _manageable(svc: Services, ident: Identity, workspace_id: int,
                      channel_id: int) -> tuple[Member, Channel]:
    member = await require_member(svc, ident, workspace_id)
    channel, is_member = await _visible(svc, member, workspace_id, channel_id)
    if not is_member and member.role not in {Role.OWNER, Role.ADMIN}:
        raise Forbidden("not_in_channel", "join the channel first")
    if channel.kind in {"dm", "group_dm"}:
        raise InvalidInput("not_allowed_for_dm", "direct messages have no channel settings")
    return member, channel


def _writable(channel: Channel) -> None:
    if channel.archived:
        raise Forbidden("channel_archived", "the channel is archived")


async def _publish_updated(svc: Services, channel: Channel) -> None:
    await svc.publish(events.channel_topic(channel.id),
                      events.encode(events.CHANNEL_UPDATED, events.channel_data(channel)))


async def create_channel(svc: Services, ident: Identity, workspace_id: int, name: str,
                         kind: str) -> Channel:
    member = await require_member(svc, ident, workspace_id)
    if kind not in {"public", "private"}:
        raise InvalidInput("invalid_channel_kind", "kind must be public or private")
    require(member, Perm.CREATE_PUBLIC_CHANNEL if kind == "public"
            else Perm.CREATE_PRIVATE_CHANNEL)
    name = validate.channel_name(name)
    channel = await svc.store.channels.create_channel(svc.ids.next_id(), workspace_id, kind, name,
                                                      ident.user_id)
    if channel is None:
        raise Conflict("name_taken", "a channel with this name exists")
    await svc.publish(events.user_topic(ident.user_id),
                      events.encode(events.CHANNEL_JOINED, events.joined_data(channel, None)))
    return channel


async def joined_event(svc: Services, channel: Channel, user_id: int) -> tuple[str, bytes]:
    """``channel.joined`` for ``user_id``, with their read state in it."""
    state = await svc.store.reads.read_state(channel.workspace_id, channel.id, user_id)
    return (events.user_topic(user_id),
            events.encode(events.CHANNEL_JOINED, events.joined_data(channel, state)))


async def get_channel(svc: Services, ident: Identity, workspace_id: int,
                      channel_id: int) -> ChannelView:
    member = await require_member(svc, ident, workspace_id)
    channel, is_member = await _visible(svc, member, workspace_id, channel_id)
    state = (await svc.store.reads.read_state(workspace_id, channel_id, ident.user_id)
             if is_member else None)
    if state is None:
        return ChannelView(channel, False, None, None, None)
    return ChannelView(channel, True, state.last_read_seq, state.unread_count,
                       state.mention_count)


async def update_channel(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                         *, name: str | None = None, topic: str | None = None,
                         purpose: str | None = None) -> Channel:
    """Rename and/or set topic and purpose; each change needs its permission."""
    member, channel = await _manageable(svc, ident, workspace_id, channel_id)
    _writable(channel)
    creator = channel.created_by == ident.user_id
    if name is not None:
        require(member, Perm.RENAME_CHANNEL, creator=creator)
        name = validate.channel_name(name)
        if DEFAULT_CHANNEL in {name, channel.name} and name != channel.name:
            raise Conflict("default_channel", "#general cannot be renamed, nor take its name")
    if topic is not None or purpose is not None:
        require(member, Perm.SET_CHANNEL_TOPIC)
    if topic is not None:
        topic = validate.free_text(topic, "topic", TOPIC_MAX)
    if purpose is not None:
        purpose = validate.free_text(purpose, "purpose", PURPOSE_MAX)
    updated = await svc.store.channels.update_channel(workspace_id, channel_id, name=name,
                                                      topic=topic, purpose=purpose)
    if updated is None:
        raise Conflict("name_taken", "a channel with this name exists")
    if updated != channel:
        await _publish_updated(svc, updated)
    return updated


async def set_archived(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                       archived: bool) -> Channel:
    member, channel = await _manageable(svc, ident, workspace_id, channel_id)
    require(member, Perm.ARCHIVE_CHANNEL, creator=channel.created_by == ident.user_id)
    if channel.name == DEFAULT_CHANNEL:
        raise Conflict("default_channel", "#general cannot be archived")
    if channel.archived == archived:
        return channel
    updated = await svc.store.channels.update_channel(workspace_id, channel_id, archived=archived,
                                                      by=ident.user_id)
    if updated is None:
        raise _not_found()
    await _publish_updated(svc, updated)
    return updated


async def make_private(svc: Services, ident: Identity, workspace_id: int,
                       channel_id: int) -> Channel:
    """Convert a public channel to private: its members stay; everyone else
    stops seeing it at once (lists, history, search)."""
    member, channel = await _manageable(svc, ident, workspace_id, channel_id)
    require(member, Perm.CONVERT_TO_PRIVATE)
    _writable(channel)
    if channel.name == DEFAULT_CHANNEL:
        raise Conflict("default_channel", "#general stays public")
    if channel.kind == "private":
        return channel
    updated = await svc.store.channels.update_channel(workspace_id, channel_id, kind="private")
    if updated is None:
        raise _not_found()
    await _publish_updated(svc, updated)
    return updated


# -- membership -------------------------------------------------------------------


async def _announce_added(svc: Services, channel: Channel, user_ids: list[int]) -> None:
    items: list[tuple[str, bytes]] = []
    for uid in user_ids:
        items.append(await joined_event(svc, channel, uid))
        items.append((events.channel_topic(channel.id), events.encode(
            events.MEMBER_JOINED, {"workspace_id": channel.workspace_id,
                                   "channel_id": channel.id, "user_id": uid})))
    if items:
        await svc.publish_many(items)


async def _announce_removed(svc: Services, channel: Channel, user_id: int) -> None:
    # channel.left first: the gateway unsubscribes the user's sockets from the
    # channel when it sees it, so nothing published after reaches them.
    await svc.publish_many([
        (events.user_topic(user_id), events.encode(
            events.CHANNEL_LEFT, {"id": channel.id, "workspace_id": channel.workspace_id})),
        (events.channel_topic(channel.id), events.encode(
            events.MEMBER_LEFT, {"workspace_id": channel.workspace_id,
                                 "channel_id": channel.id, "user_id": user_id})),
    ])


async def join_channel(svc: Services, ident: Identity, workspace_id: int,
                       channel_id: int) -> Channel:
    member = await require_member(svc, ident, workspace_id)
    channel, is_member = await _visible(svc, member, workspace_id, channel_id)
    if is_member:
        return channel
    if channel.kind != "public":
        raise _not_found()
    require(member, Perm.JOIN_PUBLIC_CHANNEL)
    _writable(channel)
    if await svc.store.roster.join_channel(workspace_id, channel_id, ident.user_id):
        await _announce_added(svc, channel, [ident.user_id])
    return channel


async def add_to_channel(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                         user_ids: list[int]) -> list[int]:
    """Add workspace members (guests included: this is how guests get in);
    returns the ids newly added."""
    member, channel = await member_channel(svc, ident, workspace_id, channel_id)
    if channel.kind in {"dm", "group_dm"}:
        raise InvalidInput("not_allowed_for_dm", "start a new group DM instead")
    require(member, Perm.ADD_TO_CHANNEL)
    _writable(channel)
    if not 1 <= len(set(user_ids)) <= 100:
        raise InvalidInput("invalid_user_ids", "give 1 to 100 user ids")
    for uid in sorted(set(user_ids)):
        await require_target(svc, workspace_id, uid)
    added = await svc.store.roster.add_channel_members(workspace_id, channel_id,
                                                       sorted(set(user_ids)), ident.user_id)
    await _announce_added(svc, channel, added)
    return added


async def leave_channel(svc: Services, ident: Identity, workspace_id: int,
                        channel_id: int) -> None:
    _, channel = await member_channel(svc, ident, workspace_id, channel_id)
    if channel.kind in {"dm", "group_dm"}:
        raise InvalidInput("not_allowed_for_dm", "you cannot leave a direct message")
    if channel.name == DEFAULT_CHANNEL:
        raise Conflict("default_channel", "everyone stays in #general")
    if await svc.store.roster.remove_channel_member(workspace_id, channel_id, ident.user_id):
        await _announce_removed(svc, channel, ident.user_id)


async def remove_from_channel(svc: Services, ident: Identity, workspace_id: int,
                              channel_id: int, user_id: int) -> None:
    if user_id == ident.user_id:
        await leave_channel(svc, ident, workspace_id, channel_id)
        return
    member, channel = await _manageable(svc, ident, workspace_id, channel_id)
    require(member, Perm.REMOVE_FROM_CHANNEL, creator=channel.created_by == ident.user_id)
    if channel.name == DEFAULT_CHANNEL:
        raise Conflict("default_channel", "everyone stays in #general")
    target = await require_target(svc, workspace_id, user_id)
    if outranks(target, member):
        raise Forbidden("permission_denied", "you may not remove a member of a higher role")
    if not await svc.store.roster.is_channel_member(workspace_id, channel_id, user_id):
        raise NotFound("user_not_found", "that user is not in this channel")
    if await svc.store.roster.remove_channel_member(workspace_id, channel_id, user_id):
        await _announce_removed(svc, channel, user_id)


async def channel_members(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                          after_user_id: int, limit: int) -> list[ChannelMember]:
    await visible_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.roster.channel_members_page(workspace_id, channel_id, after_user_id,
                                                       max(1, min(limit, MEMBER_PAGE_MAX)))


async def member_count(svc: Services, ident: Identity, workspace_id: int,
                       channel_id: int) -> int:
    await visible_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.roster.channel_member_count(workspace_id, channel_id)


# -- lists ---------------------------------------------------------------------------


async def my_channels(svc: Services, ident: Identity,
                      workspace_id: int) -> list[tuple[Channel, int]]:
    await require_member(svc, ident, workspace_id)
    return await svc.store.roster.user_channels(workspace_id, ident.user_id)


async def list_channels(svc: Services, ident: Identity, workspace_id: int, *,
                        include_public: bool, after_id: int, limit: int) -> list[ChannelView]:
    """The caller's channels (and, if asked and allowed, the public ones they
    are not in), by id, with membership, unread and mention counts."""
    member = await require_member(svc, ident, workspace_id)
    return await svc.store.channels.channel_views(
        workspace_id, ident.user_id,
        include_public=include_public and allowed(member, Perm.BROWSE_PUBLIC_CHANNELS),
        after_id=after_id, limit=max(1, min(limit, LIST_PAGE_MAX)))


async def list_public_channels(svc: Services, ident: Identity, workspace_id: int,
                               after_id: int, limit: int) -> list[Channel]:
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.BROWSE_PUBLIC_CHANNELS)
    return await svc.store.channels.list_public_channels(workspace_id, after_id,
                                                         max(1, min(limit, LIST_PAGE_MAX)))


# -- direct messages -------------------------------------------------------------------


async def open_dm(svc: Services, ident: Identity, workspace_id: int,
                  user_ids: list[int]) -> tuple[Channel, bool]:
    """Get or create the DM (2 people, or yourself alone) or group DM (3 to
    8) of exactly the caller plus ``user_ids``.  Idempotent: the same set
    always gives the same channel.  Returns (channel, created)."""
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.START_DM)
    people = sorted({ident.user_id, *user_ids})
    if len(people) > DM_MAX_MEMBERS:
        raise InvalidInput("too_many_members",
                           f"a group DM has at most {DM_MAX_MEMBERS} people, you included")
    for uid in people:
        if uid != ident.user_id:
            await require_target(svc, workspace_id, uid)
    kind = "dm" if len(people) <= 2 else "group_dm"
    channel, added = await svc.store.channels.get_or_create_dm(
        svc.ids.next_id(), workspace_id, kind, ",".join(map(str, people)), ident.user_id,
        people)
    created = len(added) == len(people)
    items = [await joined_event(svc, channel, uid) for uid in added]
    if not created:  # someone came back (their membership had ended): tell the others
        items += [(events.channel_topic(channel.id), events.encode(
            events.MEMBER_JOINED, {"workspace_id": workspace_id, "channel_id": channel.id,
                                   "user_id": uid})) for uid in added]
    if items:
        await svc.publish_many(items)
    return channel, created


# -- read state -------------------------------------------------------------------------


async def mark_read(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                    seq: int | None) -> ReadState:
    """Move the caller's read position (to the end without ``seq``; a lower
    seq marks messages unread again); every device of theirs is told."""
    _, channel = await member_channel(svc, ident, workspace_id, channel_id)
    state = await svc.store.reads.mark_read(workspace_id, channel_id, ident.user_id,
                                            channel.last_seq if seq is None else seq)
    if state is None:
        raise _not_found()
    await svc.publish(events.user_topic(ident.user_id),
                      events.encode(events.CHANNEL_READ, events.read_data(workspace_id, state)))
    return state
