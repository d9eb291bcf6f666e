"""parley.mentions: the server-side mention parser."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parley.mentions import MAX_USER_MENTIONS, parse


def test_user_mentions_are_ids_in_order_without_duplicates() -> None:
    m = parse("hi <@12> and <@7>, again <@12>")
    assert m.user_ids == (12, 7) and not m.everyone


def test_channel_and_here_are_broadcasts_only_at_word_starts() -> None:
    for text in ("@channel standup", "ping @here!", "(@channel)", "ok\n@here"):
        assert parse(text).everyone, text
    for text in ("mail foo@here.com", "@channels", "@@here", "x@channel", "@hereby", "@ here"):
        assert not parse(text).everyone, text


def test_malformed_user_mentions_are_ignored() -> None:
    for text in ("<@>", "<@0>", "<@-1>", "<@abc>", "<@12", f"<@{2**64}>", "<@01>"):
        assert parse(text).user_ids == (), text


def test_the_number_of_user_mentions_is_bounded() -> None:
    text = " ".join(f"<@{i}>" for i in range(1, 200))
    assert len(parse(text).user_ids) == MAX_USER_MENTIONS


@given(st.text(max_size=300))
def test_any_text_parses(text: str) -> None:
    m = parse(text)
    assert all(0 < u < 2**63 for u in m.user_ids)
    assert len(set(m.user_ids)) == len(m.user_ids)
