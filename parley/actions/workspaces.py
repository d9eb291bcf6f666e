"""Workspaces and their members."""

from __future__ import annotations

from parley.actions import validate
from parley.auth import Identity
from parley.errors import NotFound
from parley.permissions import Perm, Role, require
from parley.services import Services
from storage.interfaces import Member, Workspace


async def require_member(svc: Services, ident: Identity, workspace_id: int) -> Member:
    """The caller's active membership, or NotFound: a workspace the caller is
    not in does not exist as far as they can tell (no id probing)."""
    member = await svc.store.member(workspace_id, ident.user_id)
    if member is None or not member.active:
        raise NotFound("workspace_not_found", "no such workspace")
    return member


async def create_workspace(svc: Services, ident: Identity, name: str) -> Workspace:
    name = validate.display_text(name, "workspace_name")
    owner = await svc.store.user(ident.user_id)
    if owner is None:
        raise NotFound("user_not_found", "no such user")
    return await svc.store.create_workspace(svc.ids.next_id(), name, owner, svc.ids.next_id())


async def list_workspaces(svc: Services, ident: Identity) -> list[Workspace]:
    return await svc.store.workspaces_of(ident.user_id)


async def add_member(svc: Services, ident: Identity, workspace_id: int, email: str,
                     role: str) -> Member:
    """Add an existing account to the workspace (admins and owners)."""
    actor = await require_member(svc, ident, workspace_id)
    require(actor, Perm.ADD_MEMBER)
    if role not in {Role.ADMIN, Role.MEMBER, Role.GUEST}:
        from parley.errors import InvalidInput

        raise InvalidInput("invalid_role", "role must be admin, member or guest")
    user = await svc.store.user_by_email(email)
    if user is None or user.deactivated:
        raise NotFound("user_not_found", "no account with this e-mail address")
    member = await svc.store.add_member(workspace_id, user, role)
    # The new member's sockets (if any) learn their channel list on reconnect;
    # live membership events come with the channel actions.
    return member
