"""parley/actions/validate.py: the one test for "PostgreSQL can store this
text" and the input rules built on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from parley.actions import validate
from parley.errors import DomainError

LONE = ["\ud800", "x\udfff", "\udbff\u00e9", "ok \ud83d"]  # high or low, alone or before text
FINE = ["", "plain ascii", "caf\u00e9", "\u4f60\u597d", "\U0001f600", "tab\tand\nnewline"]


@pytest.mark.parametrize("text", FINE)
def test_valid_unicode_without_nul_is_storable(text: str) -> None:
    assert validate.encodable(text) and validate.storable(text)


@pytest.mark.parametrize("text", LONE)
def test_a_lone_surrogate_is_neither_encodable_nor_storable(text: str) -> None:
    assert not validate.encodable(text) and not validate.storable(text)


@pytest.mark.parametrize("text", ["\x00", "a\x00", "caf\u00e9\x00", "\U0001f600\x00"])
def test_a_nul_is_encodable_but_not_storable(text: str) -> None:
    assert validate.encodable(text) and not validate.storable(text)


def test_surrogate_code_points_in_a_pair_are_still_not_text() -> None:
    # json.loads joins an escaped pair into one code point; two surrogate code
    # points side by side (built any other way) have no UTF-8 form either.
    assert not validate.storable("\ud83d\ude00")


_RULES: list[tuple[Callable[[str], Any], str]] = [
    (lambda v: validate.message_text(v, 40_000), "invalid_text"),
    (validate.client_msg_id, "invalid_client_msg_id"),
    (lambda v: validate.display_text(v, "display_name"), "invalid_display_name"),
    (lambda v: validate.free_text(v, "topic", 250), "invalid_topic"),
    (validate.search_query, "invalid_query"),
    (validate.emoji, "invalid_emoji"),
    (validate.email, "invalid_email"),
    (validate.channel_name, "invalid_channel_name"),
]


@pytest.mark.parametrize("rule,code", _RULES)
@pytest.mark.parametrize("bad", ["a\ud800b", "a\x00b"], ids=["surrogate", "nul"])
def test_every_rule_for_stored_text_refuses_with_its_code(
        rule: Callable[[str], Any], code: str, bad: str) -> None:
    with pytest.raises(DomainError) as err:
        rule(bad if code != "invalid_email" else f"{bad}@example.com")
    assert err.value.code == code and not err.value.retryable


def test_a_password_must_be_encodable_to_be_hashed() -> None:
    assert validate.password("pass\x00word") == "pass\x00word"  # argon2 hashes bytes
    with pytest.raises(DomainError) as err:
        validate.password("pass\ud800word")
    assert err.value.code == "invalid_password"


def test_an_emoji_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(DomainError):
        validate.emoji("tada\n")  # "$" matched before a final newline


def test_tokens_the_server_issued_are_url_safe_ascii() -> None:
    assert validate.opaque_token("Ab-_09")
    assert not validate.opaque_token("ab\x00") and not validate.opaque_token("ab\ud800")
    assert not validate.opaque_token("\u00e9")
