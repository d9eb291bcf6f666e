"""Messages: post (REST and gateway alike) and history."""

from __future__ import annotations

from parley import events
from parley.actions import validate
from parley.actions.channels import visible_channel
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import Forbidden, NotFound, Unavailable
from parley.permissions import Perm, require
from parley.services import Services
from storage.interfaces import AppendRejected, Message, NewMessage, StoreUnavailable

_REJECTION_ERRORS = {
    "not_in_channel": Forbidden,
    "channel_archived": Forbidden,
}


async def post_message(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                       text: str, client_msg_id: str | None = None,
                       thread_root_id: int | None = None, *,
                       member_checked: bool = False) -> Message:
    """Store a message durably, then publish it; returns the stored message.

    ``member_checked`` lets the gateway skip the workspace-membership read it
    already did at connect time; channel membership is always checked inside
    the write transaction.  Idempotent per (sender, client_msg_id).
    """
    text = validate.message_text(text, svc.settings.max_message_chars)
    client_msg_id = validate.client_msg_id(client_msg_id)
    if not member_checked:
        member = await require_member(svc, ident, workspace_id)
        require(member, Perm.POST_MESSAGE)
    shard = await svc.store.shard_of(workspace_id)
    if shard is None:
        raise NotFound("workspace_not_found", "no such workspace")
    msg_id = svc.ids.next_id()
    new = NewMessage(id=msg_id, channel_id=channel_id, workspace_id=workspace_id,
                     user_id=ident.user_id, text=text, client_msg_id=client_msg_id,
                     thread_root_id=thread_root_id, created_at=svc.ids.timestamp(msg_id))
    try:
        stored = await svc.writer.append(shard, new)
    except AppendRejected as exc:
        if exc.code == "not_in_channel":
            # Do not reveal whether a private channel exists.
            raise NotFound("channel_not_found", "no such channel") from exc
        raise _REJECTION_ERRORS.get(exc.code, Forbidden)(exc.code, exc.message) from exc
    except StoreUnavailable as exc:
        raise Unavailable("store_unavailable",
                          "the message store is unavailable; nothing was saved, retry") from exc
    if stored.id == msg_id:  # first time: publish; a retry's event went out already
        await svc.publish(events.channel_topic(channel_id),
                          events.encode(events.MESSAGE_CREATED, events.message_data(stored)))
    return stored


async def history(svc: Services, ident: Identity, workspace_id: int, channel_id: int, *,
                  before: int | None, after: int | None, limit: int) -> list[Message]:
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    await visible_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.history(workspace_id, channel_id, before=before, after=after,
                                   limit=limit)
