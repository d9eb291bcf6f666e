"""The permission table: which workspace roles may do what.

Rules of this file:

* Every domain action that needs a permission asks ``require(member, perm)``
  (or ``allowed``); there is no other place where roles are compared.
* ``TABLE`` says which roles hold a permission.  ``CREATOR_MAY`` lists the
  permissions a channel's creator holds on that channel whatever their role
  (except a guest).  ``outranks`` decides who may manage whom (change a role,
  deactivate): a strictly higher rank.
* Visibility is not a permission: a channel or message the caller may not
  see answers 404 like a missing one (see ``parley.actions.channels``).
* ``render_table()`` produces the table in docs/architecture.md;
  tests/parley/test_permissions.py checks the two agree.
"""

from __future__ import annotations

from enum import StrEnum

from parley.errors import Forbidden
from parley.model import Member


class Role(StrEnum):
    OWNER = "owner"  # created the workspace; everything; cannot leave or be deactivated
    ADMIN = "admin"  # manages members and channels
    MEMBER = "member"  # a regular full member
    GUEST = "guest"  # sees only channels they are invited to


RANK = {Role.GUEST: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Perm(StrEnum):
    CREATE_PUBLIC_CHANNEL = "create_public_channel"
    CREATE_PRIVATE_CHANNEL = "create_private_channel"
    BROWSE_PUBLIC_CHANNELS = "browse_public_channels"  # see, read and search non-joined ones
    JOIN_PUBLIC_CHANNEL = "join_public_channel"
    ADD_MEMBER = "add_member"  # add an existing account to the workspace directly
    INVITE = "invite"  # create and revoke invite links for members and guests
    GRANT_ADMIN = "grant_admin"  # make someone an admin (invite or role change)
    CHANGE_ROLE = "change_role"  # of a member of lower rank
    DEACTIVATE_MEMBER = "deactivate_member"  # of a member of lower rank
    RENAME_CHANNEL = "rename_channel"
    SET_CHANNEL_TOPIC = "set_channel_topic"  # topic and purpose
    ARCHIVE_CHANNEL = "archive_channel"  # and unarchive
    CONVERT_TO_PRIVATE = "convert_to_private"
    ADD_TO_CHANNEL = "add_to_channel"  # invite workspace members into a channel you are in
    REMOVE_FROM_CHANNEL = "remove_from_channel"  # someone else
    POST_MESSAGE = "post_message"
    MENTION_CHANNEL_LARGE = "mention_channel_large"  # @channel/@here above the size limit
    DELETE_ANY_MESSAGE = "delete_any_message"  # everyone may delete their own
    PIN_MESSAGE = "pin_message"
    REACT = "react"
    READ_HISTORY = "read_history"
    START_DM = "start_dm"
    LIST_MEMBERS = "list_members"
    MANAGE_WORKSPACE_FILES = "manage_workspace_files"  # the workspace's file size/type limits
    DELETE_ANY_FILE = "delete_any_file"  # one they can see; everyone may delete their own
    MANAGE_APPS = "manage_apps"  # create, change, install, uninstall and delete apps


_ALL = frozenset(Role)
_STAFF = frozenset({Role.OWNER, Role.ADMIN})
_FULL = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})
_OWNER = frozenset({Role.OWNER})

TABLE: dict[Perm, frozenset[Role]] = {
    Perm.CREATE_PUBLIC_CHANNEL: _FULL,
    Perm.CREATE_PRIVATE_CHANNEL: _FULL,
    Perm.BROWSE_PUBLIC_CHANNELS: _FULL,
    Perm.JOIN_PUBLIC_CHANNEL: _FULL,
    Perm.ADD_MEMBER: _STAFF,
    Perm.INVITE: _STAFF,
    Perm.GRANT_ADMIN: _OWNER,
    Perm.CHANGE_ROLE: _STAFF,
    Perm.DEACTIVATE_MEMBER: _STAFF,
    Perm.RENAME_CHANNEL: _STAFF,
    Perm.SET_CHANNEL_TOPIC: _FULL,
    Perm.ARCHIVE_CHANNEL: _STAFF,
    Perm.CONVERT_TO_PRIVATE: _STAFF,
    Perm.ADD_TO_CHANNEL: _FULL,
    Perm.REMOVE_FROM_CHANNEL: _STAFF,
    Perm.POST_MESSAGE: _ALL,
    Perm.MENTION_CHANNEL_LARGE: _STAFF,
    Perm.DELETE_ANY_MESSAGE: _STAFF,
    Perm.PIN_MESSAGE: _FULL,
    Perm.REACT: _ALL,
    Perm.READ_HISTORY: _ALL,
    Perm.START_DM: _ALL,
    Perm.LIST_MEMBERS: _ALL,
    Perm.MANAGE_WORKSPACE_FILES: _STAFF,
    Perm.DELETE_ANY_FILE: _STAFF,
    Perm.MANAGE_APPS: _STAFF,
}

# Permissions a channel's creator holds on that channel (unless a guest).
CREATOR_MAY: frozenset[Perm] = frozenset({
    Perm.RENAME_CHANNEL, Perm.ARCHIVE_CHANNEL, Perm.REMOVE_FROM_CHANNEL,
})


def allowed(member: Member, perm: Perm, *, creator: bool = False) -> bool:
    if not member.active:
        return False
    role = Role(member.role)
    if creator and perm in CREATOR_MAY and role is not Role.GUEST:
        return True
    return role in TABLE[perm]


def require(member: Member, perm: Perm, *, creator: bool = False) -> None:
    if not allowed(member, perm, creator=creator):
        raise Forbidden("permission_denied", f"your role may not {perm.value.replace('_', ' ')}")


def outranks(actor: Member, target: Member) -> bool:
    """May ``actor`` manage ``target`` (change their role, deactivate them)?"""
    return RANK[Role(actor.role)] > RANK[Role(target.role)]


def render_table() -> str:
    """The Markdown table of docs/architecture.md, generated from TABLE."""
    roles = list(Role)
    lines = ["| Permission | " + " | ".join(r.value for r in roles) + " | creator |",
             "|---|" + "---|" * (len(roles) + 1)]
    for perm, who in TABLE.items():
        cells = ["yes" if r in who else "no" for r in roles]
        cells.append("yes" if perm in CREATOR_MAY else "-")
        lines.append(f"| {perm.value.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
