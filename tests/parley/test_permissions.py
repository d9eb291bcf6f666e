"""parley.permissions: the one permission table, and its rendering in
docs/architecture.md."""

from __future__ import annotations

from pathlib import Path

from parley.model import Member
from parley.permissions import CREATOR_MAY, TABLE, Perm, Role, allowed, outranks, render_table

ROOT = Path(__file__).resolve().parents[2]


def _m(role: Role, active: bool = True) -> Member:
    return Member(workspace_id=1, user_id=2, role=role.value, display_name="x", active=active)


def test_every_permission_is_in_the_table() -> None:
    assert set(TABLE) == set(Perm)


def test_deactivated_members_may_do_nothing() -> None:
    for perm in Perm:
        assert not allowed(_m(Role.OWNER, active=False), perm)


def test_creators_hold_their_extra_permissions_unless_guests() -> None:
    for perm in CREATOR_MAY:
        assert allowed(_m(Role.MEMBER), perm, creator=True)
        assert not allowed(_m(Role.MEMBER), perm)
        assert not allowed(_m(Role.GUEST), perm, creator=True)
    assert not allowed(_m(Role.MEMBER), Perm.CONVERT_TO_PRIVATE, creator=True)


def test_rank_is_strict() -> None:
    assert outranks(_m(Role.OWNER), _m(Role.ADMIN))
    assert outranks(_m(Role.ADMIN), _m(Role.MEMBER))
    assert not outranks(_m(Role.ADMIN), _m(Role.ADMIN))
    assert not outranks(_m(Role.GUEST), _m(Role.GUEST))


def test_guests_are_the_most_restricted_and_owners_may_do_everything() -> None:
    for perm in Perm:
        assert allowed(_m(Role.OWNER), perm)
        if allowed(_m(Role.GUEST), perm):
            assert allowed(_m(Role.MEMBER), perm)


def test_architecture_doc_shows_the_table() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert render_table() in doc, "regenerate the table: python -c " \
        "'from parley.permissions import render_table; print(render_table())'"


def test_workspace_file_limits_are_set_by_staff_only() -> None:
    # Its own entry, not borrowed from another staff permission: the two can
    # now change independently.
    assert TABLE[Perm.MANAGE_WORKSPACE_FILES] == {Role.OWNER, Role.ADMIN}
    assert not allowed(_m(Role.MEMBER), Perm.MANAGE_WORKSPACE_FILES, creator=True)


def test_deleting_others_files_is_its_own_staff_permission() -> None:
    assert TABLE[Perm.DELETE_ANY_FILE] == {Role.OWNER, Role.ADMIN}
    assert not allowed(_m(Role.MEMBER), Perm.DELETE_ANY_FILE, creator=True)
