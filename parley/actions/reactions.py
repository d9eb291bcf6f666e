"""Reactions: add and remove, idempotent per (user, message, emoji).

Only a change publishes (``reaction.added`` / ``reaction.removed`` on the
channel topic), so a retried request never produces a second event.
"""

from __future__ import annotations

from parley import events
from parley.actions import validate
from parley.actions.channels import member_channel
from parley.auth import Identity
from parley.errors import Conflict, Forbidden, NotFound
from parley.permissions import Perm, require
from parley.services import Services

MAX_DISTINCT_EMOJI = 50  # different emoji on one message


async def set_reaction(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                       message_id: int, emoji: str, present: bool) -> bool:
    """Add or remove one reaction; whether something changed."""
    emoji = validate.emoji(emoji)
    member, channel = await member_channel(svc, ident, workspace_id, channel_id)
    require(member, Perm.REACT)
    if channel.archived:
        raise Forbidden("channel_archived", "the channel is archived")
    msg = await svc.store.messages.message(workspace_id, message_id)
    if msg is None or msg.channel_id != channel_id:
        raise NotFound("message_not_found", "no such message")
    if present:
        status = await svc.store.reactions.add_reaction(workspace_id, channel_id, message_id,
                                                        ident.user_id, emoji, MAX_DISTINCT_EMOJI)
        if status == "gone":
            raise Conflict("message_deleted", "the message was deleted")
        if status == "too_many":
            raise Conflict("too_many_reactions",
                           f"a message has at most {MAX_DISTINCT_EMOJI} different emoji")
        changed = status == "added"
    else:
        changed = await svc.store.reactions.remove_reaction(workspace_id, message_id,
                                                            ident.user_id, emoji)
    if changed:
        await svc.publish(events.channel_topic(channel_id), events.encode(
            events.REACTION_ADDED if present else events.REACTION_REMOVED,
            {"workspace_id": workspace_id, "channel_id": channel_id, "message_id": message_id,
             "user_id": ident.user_id, "emoji": emoji}))
    return changed
