"""The permission table: which workspace roles may do what.

Every domain action that needs a permission asks ``require(member, perm)``;
there is no other place where roles are compared.  The table is also
rendered into docs/architecture.md.
"""

from __future__ import annotations

from enum import StrEnum

from parley.errors import Forbidden
from storage.interfaces import Member


class Role(StrEnum):
    OWNER = "owner"  # created the workspace; everything, including deleting it
    ADMIN = "admin"  # manages members and channels
    MEMBER = "member"  # a regular full member
    GUEST = "guest"  # sees only channels they are invited to


class Perm(StrEnum):
    CREATE_PUBLIC_CHANNEL = "create_public_channel"
    CREATE_PRIVATE_CHANNEL = "create_private_channel"
    JOIN_PUBLIC_CHANNEL = "join_public_channel"
    ADD_MEMBER = "add_member"
    POST_MESSAGE = "post_message"
    READ_HISTORY = "read_history"


_ALL = frozenset(Role)
_STAFF = frozenset({Role.OWNER, Role.ADMIN})
_FULL = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})

TABLE: dict[Perm, frozenset[Role]] = {
    Perm.CREATE_PUBLIC_CHANNEL: _FULL,
    Perm.CREATE_PRIVATE_CHANNEL: _FULL,
    Perm.JOIN_PUBLIC_CHANNEL: _FULL,
    Perm.ADD_MEMBER: _STAFF,
    Perm.POST_MESSAGE: _ALL,
    Perm.READ_HISTORY: _ALL,
}


def allowed(member: Member, perm: Perm) -> bool:
    return member.active and Role(member.role) in TABLE[perm]


def require(member: Member, perm: Perm) -> None:
    if not allowed(member, perm):
        raise Forbidden("permission_denied", f"your role may not {perm.value.replace('_', ' ')}")
