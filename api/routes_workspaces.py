"""Workspaces, members, roles and invite links."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Auth, Mutator, Svc
from api.params import Cursor, IdPath, PageSize
from api.schemas import (
    AcceptInviteIn,
    InviteCreatedOut,
    InviteIn,
    InviteList,
    InviteOut,
    MemberIn,
    MemberList,
    MemberOut,
    RoleIn,
    TicketOut,
    WorkspaceIn,
    WorkspaceList,
    WorkspaceOut,
)
from parley.actions import accounts, workspaces

router = APIRouter(tags=["workspaces"])
Limit = Annotated[PageSize, Query(le=workspaces.MEMBER_PAGE_MAX, description="Page size")]


@router.post("/v1/workspaces", status_code=201, response_model=WorkspaceOut)
async def create_workspace(body: WorkspaceIn, me: Mutator, s: Svc) -> WorkspaceOut:
    """Create a workspace; the caller becomes its owner and joins #general."""
    return WorkspaceOut.of(await workspaces.create_workspace(s, me, body.name), "owner")


@router.get("/v1/workspaces", response_model=WorkspaceList)
async def list_workspaces(me: Auth, s: Svc) -> WorkspaceList:
    """The workspaces the caller is an active member of."""
    return WorkspaceList(workspaces=[WorkspaceOut.of(w)
                                     for w in await workspaces.list_workspaces(s, me)])


@router.get("/v1/workspaces/{workspace_id}", response_model=WorkspaceOut)
async def get_workspace(workspace_id: IdPath, me: Auth, s: Svc) -> WorkspaceOut:
    """One workspace, with the caller's role."""
    ws, member = await workspaces.get_workspace(s, me, workspace_id)
    return WorkspaceOut.of(ws, member.role)


@router.get("/v1/workspaces/{workspace_id}/members", response_model=MemberList)
async def list_members(workspace_id: IdPath, me: Auth, s: Svc, cursor: Cursor = 0,
                       limit: Limit = 100) -> MemberList:
    """Active members, by user id."""
    rows = await workspaces.list_members(s, me, workspace_id, cursor, limit)
    nxt = str(rows[-1].user_id) if len(rows) == limit else None
    return MemberList(members=[MemberOut.of(m) for m in rows], next_cursor=nxt)


@router.post("/v1/workspaces/{workspace_id}/members", status_code=201, response_model=MemberOut)
async def add_member(workspace_id: IdPath, body: MemberIn, me: Mutator, s: Svc) -> MemberOut:
    """Add an existing account to the workspace (owners and admins)."""
    return MemberOut.of(await workspaces.add_member(s, me, workspace_id, body.email, body.role))


@router.patch("/v1/workspaces/{workspace_id}/members/{user_id}", response_model=MemberOut)
async def change_role(workspace_id: IdPath, user_id: IdPath, body: RoleIn, me: Mutator,
                      s: Svc) -> MemberOut:
    """Change the role of a member of lower rank (admin only by the owner)."""
    return MemberOut.of(await workspaces.change_role(s, me, workspace_id, user_id, body.role))


@router.post("/v1/workspaces/{workspace_id}/members/{user_id}/deactivate", status_code=204)
async def deactivate_member(workspace_id: IdPath, user_id: IdPath, me: Mutator,
                            s: Svc) -> Response:
    """End a member's membership: they leave every channel and their sockets
    of this workspace close at once (4006)."""
    await workspaces.deactivate_member(s, me, workspace_id, user_id)
    return Response(status_code=204)


@router.post("/v1/workspaces/{workspace_id}/leave", status_code=204)
async def leave_workspace(workspace_id: IdPath, me: Mutator, s: Svc) -> Response:
    """Leave the workspace (not the owner); an invite brings you back."""
    await workspaces.leave_workspace(s, me, workspace_id)
    return Response(status_code=204)


@router.post("/v1/workspaces/{workspace_id}/invites", status_code=201,
             response_model=InviteCreatedOut)
async def create_invite(workspace_id: IdPath, body: InviteIn, me: Mutator,
                        s: Svc) -> InviteCreatedOut:
    """An expiring invite link.  The token is shown once."""
    invite, token = await workspaces.create_invite(s, me, workspace_id, body.role, body.ttl_s,
                                                   body.max_uses)
    return InviteCreatedOut(invite=InviteOut.of(invite), token=token)


@router.get("/v1/workspaces/{workspace_id}/invites", response_model=InviteList)
async def list_invites(workspace_id: IdPath, me: Auth, s: Svc, cursor: Cursor = 0,
                       limit: Limit = 100) -> InviteList:
    """Invites that still work, by id."""
    rows = await workspaces.list_invites(s, me, workspace_id, cursor, limit)
    nxt = str(rows[-1].id) if len(rows) == limit else None
    return InviteList(invites=[InviteOut.of(i) for i in rows], next_cursor=nxt)


@router.delete("/v1/workspaces/{workspace_id}/invites/{invite_id}", status_code=204)
async def revoke_invite(workspace_id: IdPath, invite_id: IdPath, me: Mutator,
                        s: Svc) -> Response:
    """Revoke an invite link (idempotent)."""
    await workspaces.revoke_invite(s, me, workspace_id, invite_id)
    return Response(status_code=204)


@router.post("/v1/invites/accept", response_model=MemberOut)
async def accept_invite(body: AcceptInviteIn, me: Mutator, s: Svc) -> MemberOut:
    """Join the workspace of an invite link (idempotent for members)."""
    return MemberOut.of(await workspaces.accept_invite(s, me, body.token))


@router.post("/v1/workspaces/{workspace_id}/connect-ticket", response_model=TicketOut,
             tags=["gateway"])
async def connect_ticket(workspace_id: IdPath, me: Mutator, s: Svc) -> TicketOut:
    """A single-use ticket for a browser's WebSocket upgrade."""
    ticket, ttl = await accounts.issue_connect_ticket(s, me, workspace_id)
    url = f"ws://{s.settings.host}:{s.settings.gateway_port}/v1/connect?ticket={ticket}"
    return TicketOut(ticket=ticket, expires_in=ttl, url=url)
