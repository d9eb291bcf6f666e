"""Workspaces and their members: create, list, invite links, join, leave,
deactivate, roles.

Ending a membership (leave or deactivate) removes the user from every
channel of the workspace in one transaction, then tells the user's sockets:
``channel.left`` for each channel (the gateway unsubscribes at once, so not
one more event of those channels reaches them) and ``membership.ended``
(the gateway closes their sockets of that workspace with 4006).
"""

from __future__ import annotations

import hashlib
import secrets

from parley import events
from parley.actions import validate
from parley.auth import Identity
from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.model import Invite, Member, Workspace
from parley.permissions import Perm, Role, allowed, outranks, require
from parley.services import Services

INVITE_TOKEN_BYTES = 24  # 192 bits of secret after the workspace id
INVITE_TTL_MAX_S = 30 * 24 * 3600  # the longest an invite link may live
INVITE_PAGE_MAX = 200
MEMBER_PAGE_MAX = 200


async def require_member(svc: Services, ident: Identity, workspace_id: int) -> Member:
    """The caller's active membership, or NotFound: a workspace the caller is
    not in does not exist as far as they can tell (no id probing)."""
    member = await svc.store.members.member(workspace_id, ident.user_id)
    if member is None or not member.active:
        raise NotFound("workspace_not_found", "no such workspace")
    return member


async def require_target(svc: Services, workspace_id: int, user_id: int) -> Member:
    """Another user's active membership, or NotFound ``user_not_found``."""
    member = await svc.store.members.member(workspace_id, user_id)
    if member is None or not member.active:
        raise NotFound("user_not_found", "no such member in this workspace")
    return member


async def get_member(svc: Services, ident: Identity, workspace_id: int,
                     user_id: int) -> Member:
    """Anyone who is or was a member of the caller's workspace (a former
    member shows as deactivated), else NotFound ``user_not_found``."""
    await require_member(svc, ident, workspace_id)
    member = await svc.store.members.member(workspace_id, user_id)
    if member is None:
        raise NotFound("user_not_found", "no such member in this workspace")
    return member


async def member_email(svc: Services, ident: Identity, workspace_id: int,
                       user_id: int) -> str | None:
    """A member's e-mail address (None for a bot, which has none)."""
    member = await get_member(svc, ident, workspace_id, user_id)
    if member.is_bot:
        return None
    user = await svc.store.users.user(user_id)
    return None if user is None or user.is_bot else user.email


async def member_by_email(svc: Services, ident: Identity, workspace_id: int,
                          email: str) -> Member:
    """The active member (never a bot) with this e-mail address."""
    await require_member(svc, ident, workspace_id)
    address = validate.lookup_email(email)
    user = None if address is None else await svc.store.users.user_by_email(address)
    if user is None or user.is_bot:
        raise NotFound("user_not_found", "no member with this e-mail address")
    return await require_target(svc, workspace_id, user.id)


async def create_workspace(svc: Services, ident: Identity, name: str) -> Workspace:
    name = validate.display_text(name, "workspace_name")
    owner = await svc.store.users.user(ident.user_id)
    if owner is None:
        raise NotFound("user_not_found", "no such user")
    return await svc.store.workspaces.create_workspace(svc.ids.next_id(), name, owner,
                                                       svc.ids.next_id())


async def list_workspaces(svc: Services, ident: Identity) -> list[Workspace]:
    return await svc.store.workspaces.workspaces_of(ident.user_id)


async def get_workspace(svc: Services, ident: Identity,
                        workspace_id: int) -> tuple[Workspace, Member]:
    member = await require_member(svc, ident, workspace_id)
    ws = await svc.store.workspaces.workspace(workspace_id)
    if ws is None:
        raise NotFound("workspace_not_found", "no such workspace")
    return ws, member


async def list_members(svc: Services, ident: Identity, workspace_id: int, after_user_id: int,
                       limit: int) -> list[Member]:
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.LIST_MEMBERS)
    return await svc.store.members.members_page(workspace_id, after_user_id,
                                                max(1, min(limit, MEMBER_PAGE_MAX)))


async def _announce_join(svc: Services, workspace_id: int, user_id: int) -> None:
    """A new (or returning) member is in #general: tell them and the channel."""
    general = await svc.store.channels.default_channel(workspace_id)
    if general is None:
        return
    state = await svc.store.reads.read_state(workspace_id, general.id, user_id)
    await svc.publish_many([
        (events.user_topic(user_id),
         events.encode(events.CHANNEL_JOINED, events.joined_data(general, state))),
        (events.channel_topic(general.id),
         events.encode(events.MEMBER_JOINED, {"workspace_id": workspace_id,
                                              "channel_id": general.id, "user_id": user_id})),
    ])


async def add_member(svc: Services, ident: Identity, workspace_id: int, email: str,
                     role: str) -> Member:
    """Add an existing account to the workspace (admins and owners)."""
    actor = await require_member(svc, ident, workspace_id)
    require(actor, Perm.ADD_MEMBER)
    if role not in {Role.ADMIN, Role.MEMBER, Role.GUEST}:
        raise InvalidInput("invalid_role", "role must be admin, member or guest")
    if role == Role.ADMIN:
        require(actor, Perm.GRANT_ADMIN)
    address = validate.lookup_email(email)
    user = None if address is None else await svc.store.users.user_by_email(address)
    if user is None or user.deactivated:
        raise NotFound("user_not_found", "no account with this e-mail address")
    before = await svc.store.members.member(workspace_id, user.id)
    member = await svc.store.members.add_member(workspace_id, user, role)
    if before is None or not before.active:
        await _announce_join(svc, workspace_id, user.id)
    return member


# -- invites -----------------------------------------------------------------


def _invite_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse_invite_token(token: str) -> tuple[int, str] | None:
    """``<workspace id>.<secret>`` -> (workspace id, secret)."""
    wid, dot, secret = token.partition(".")
    # isascii: str.isdigit also takes "²", which int() refuses.
    if (not dot or not (wid.isascii() and wid.isdigit()) or len(wid) > 19
            or not 16 <= len(secret) <= 128 or not validate.opaque_token(secret)):
        return None
    workspace_id = int(wid)
    return (workspace_id, secret) if 0 < workspace_id < 2**63 else None


async def create_invite(svc: Services, ident: Identity, workspace_id: int, role: str,
                        ttl_s: int | None, max_uses: int | None) -> tuple[Invite, str]:
    """A new invite link; returns it and its token (shown once, stored hashed)."""
    actor = await require_member(svc, ident, workspace_id)
    require(actor, Perm.INVITE)
    if role not in {Role.ADMIN, Role.MEMBER, Role.GUEST}:
        raise InvalidInput("invalid_role", "role must be admin, member or guest")
    if role == Role.ADMIN:
        require(actor, Perm.GRANT_ADMIN)
    ttl = svc.settings.invite_ttl_s if ttl_s is None else ttl_s
    if not 60 <= ttl <= INVITE_TTL_MAX_S:
        raise InvalidInput("invalid_ttl", f"ttl_s must be 60 to {INVITE_TTL_MAX_S}")
    if max_uses is not None and not 1 <= max_uses <= 10_000:
        raise InvalidInput("invalid_max_uses", "max_uses must be 1 to 10000")
    secret = secrets.token_urlsafe(INVITE_TOKEN_BYTES)
    invite = await svc.store.invites.create_invite(svc.ids.next_id(), workspace_id,
                                                   _invite_hash(secret), role, ident.user_id,
                                                   ttl, max_uses)
    return invite, f"{workspace_id}.{secret}"


async def list_invites(svc: Services, ident: Identity, workspace_id: int, after_id: int,
                       limit: int) -> list[Invite]:
    actor = await require_member(svc, ident, workspace_id)
    require(actor, Perm.INVITE)
    return await svc.store.invites.invites(workspace_id, after_id,
                                           max(1, min(limit, INVITE_PAGE_MAX)))


async def revoke_invite(svc: Services, ident: Identity, workspace_id: int,
                        invite_id: int) -> None:
    actor = await require_member(svc, ident, workspace_id)
    require(actor, Perm.INVITE)
    if await svc.store.invites.invite(workspace_id, invite_id) is None:
        raise NotFound("invite_not_found", "no such invite")
    await svc.store.invites.revoke_invite(workspace_id, invite_id)  # idempotent


async def accept_invite(svc: Services, ident: Identity, token: str) -> Member:
    parsed = _parse_invite_token(token)
    user = await svc.store.users.user(ident.user_id)
    if parsed is None or user is None:
        raise NotFound("invite_not_found", "the invite is unknown, expired, revoked or used up")
    workspace_id, secret = parsed
    outcome = await svc.store.invites.accept_invite(workspace_id, _invite_hash(secret), user)
    if outcome.status == "deactivated":
        raise Forbidden("membership_deactivated",
                        "an admin deactivated your membership; ask them to add you back")
    if outcome.member is None:
        raise NotFound("invite_not_found", "the invite is unknown, expired, revoked or used up")
    if outcome.status == "joined":
        await _announce_join(svc, workspace_id, ident.user_id)
    return outcome.member


# -- ending memberships and roles ------------------------------------------------


async def _end(svc: Services, workspace_id: int, user_id: int, reason: str) -> None:
    channel_ids = await svc.store.members.end_membership(workspace_id, user_id, reason)
    if channel_ids is None:
        return
    items: list[tuple[str, bytes]] = []
    for cid in channel_ids:
        items.append((events.user_topic(user_id), events.encode(
            events.CHANNEL_LEFT, {"id": cid, "workspace_id": workspace_id})))
        items.append((events.channel_topic(cid), events.encode(
            events.MEMBER_LEFT, {"workspace_id": workspace_id, "channel_id": cid,
                                 "user_id": user_id})))
    items.append((events.user_topic(user_id), events.encode(
        events.MEMBERSHIP_ENDED, {"workspace_id": workspace_id, "user_id": user_id,
                                  "reason": reason})))
    await svc.publish_many(items)


async def leave_workspace(svc: Services, ident: Identity, workspace_id: int) -> None:
    member = await require_member(svc, ident, workspace_id)
    if member.role == Role.OWNER:
        raise Conflict("owner_cannot_leave", "the owner cannot leave the workspace")
    await _end(svc, workspace_id, ident.user_id, "left")


async def deactivate_member(svc: Services, ident: Identity, workspace_id: int,
                            user_id: int) -> None:
    actor = await require_member(svc, ident, workspace_id)
    require(actor, Perm.DEACTIVATE_MEMBER)
    target = await require_target(svc, workspace_id, user_id)
    if user_id == ident.user_id:
        raise Conflict("cannot_deactivate_self", "leave the workspace instead")
    if not outranks(actor, target):
        raise Forbidden("permission_denied", "you may only deactivate members of a lower role")
    await _end(svc, workspace_id, user_id, "deactivated")


async def change_role(svc: Services, ident: Identity, workspace_id: int, user_id: int,
                      role: str) -> Member:
    actor = await require_member(svc, ident, workspace_id)
    require(actor, Perm.CHANGE_ROLE)
    target = await require_target(svc, workspace_id, user_id)
    if role not in {Role.ADMIN, Role.MEMBER, Role.GUEST}:
        raise InvalidInput("invalid_role", "role must be admin, member or guest")
    if role == Role.ADMIN and not allowed(actor, Perm.GRANT_ADMIN):
        raise Forbidden("permission_denied", "your role may not grant admin")
    if user_id == ident.user_id or not outranks(actor, target):
        raise Forbidden("permission_denied", "you may only change the role of a lower role")
    if role == target.role:
        return target
    updated = await svc.store.members.set_role(workspace_id, user_id, role)
    if updated is None:
        raise NotFound("user_not_found", "no such member in this workspace")
    await svc.publish(events.user_topic(user_id), events.encode(
        events.MEMBERSHIP_UPDATED, {"workspace_id": workspace_id, "user_id": user_id,
                                    "role": role}))
    return updated
