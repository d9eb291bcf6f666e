"""Ports of workspaces: placement, members and invites.

Every method takes the workspace id and never returns data of another
workspace: that is the tenant boundary.  Workspace rows live on the
workspace's shard; placement (which shard) in the directory.  Connection
failures raise ``StoreUnavailable``; nothing was written then.
"""

from __future__ import annotations

from typing import Protocol

from parley.model import Invite, InviteOutcome, Member, User, Workspace


class WorkspaceStore(Protocol):
    """Workspaces and where they live."""

    async def create_workspace(self, workspace_id: int, name: str, owner: User,
                               general_channel_id: int) -> Workspace:
        """Place the workspace on a shard, make ``owner`` its owner and create
        #general with the owner in it (one transaction on the shard)."""

    async def workspace(self, workspace_id: int) -> Workspace | None:
        """The workspace, or None when there is none."""

    async def workspaces_of(self, user_id: int) -> list[Workspace]:
        """The workspaces where the user is an active member, by id, over every shard."""

    async def shard_of(self, workspace_id: int) -> str | None:
        """The shard holding the workspace (None: no such workspace).  May
        read the directory; a found answer is cached for ``cached_shard``."""

    def cached_shard(self, workspace_id: int) -> str | None:
        """The workspace's shard if this store already knows it, else None.

        Synchronous and cache-only: never does I/O, never raises
        ``StoreUnavailable``.  The cache is filled by ``shard_of`` and
        ``create_workspace``.  Placement never changes for a workspace, so a
        cached answer is never stale; None only means "not known yet" (call
        ``shard_of``), not "no such workspace"."""


class MemberStore(Protocol):
    """Workspace memberships (role, active or ended)."""

    async def member(self, workspace_id: int, user_id: int) -> Member | None:
        """The membership, active or ended; None when the user never was a member."""

    async def add_member(self, workspace_id: int, user: User, role: str) -> Member:
        """Add ``user`` with ``role`` (or reactivate an ended membership,
        keeping its role) and join them to #general, atomically."""

    async def members_page(self, workspace_id: int, after_user_id: int,
                           limit: int) -> list[Member]:
        """Active members by user id, keyset-paged."""

    async def set_role(self, workspace_id: int, user_id: int, role: str) -> Member | None:
        """Change an active member's role; None when not an active member."""

    async def active_members_among(self, workspace_id: int,
                                   user_ids: list[int]) -> set[int]:
        """The ids in ``user_ids`` that are active members of the workspace."""

    async def end_membership(self, workspace_id: int, user_id: int,
                             reason: str) -> list[int] | None:
        """Deactivate an active membership ('left' | 'deactivated') and remove
        the user from every channel of the workspace, atomically; the removed
        channel ids, or None when the user was not an active member."""


class InviteStore(Protocol):
    """Invite links (only the hash of the secret is stored)."""

    async def create_invite(self, invite_id: int, workspace_id: int, token_hash: str,
                            role: str, created_by: int, ttl_s: float,
                            max_uses: int | None) -> Invite:
        """A new invite valid for ``ttl_s`` seconds and ``max_uses`` uses (None: unlimited)."""

    async def invites(self, workspace_id: int, after_id: int, limit: int) -> list[Invite]:
        """Usable invites (not revoked, expired or used up), by id."""

    async def invite(self, workspace_id: int, invite_id: int) -> Invite | None:
        """The invite in whatever state; None when it is not of this workspace."""

    async def revoke_invite(self, workspace_id: int, invite_id: int) -> bool:
        """Revoke for good; True when it was not revoked before."""

    async def accept_invite(self, workspace_id: int, token_hash: str,
                            user: User) -> InviteOutcome:
        """Join (or rejoin after leaving) through a usable invite, atomically
        with counting the use and joining #general.  A membership an admin
        deactivated is not revived ('deactivated')."""
