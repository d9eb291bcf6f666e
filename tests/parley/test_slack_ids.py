"""The Web API's shapes of ids, timestamps, cursors and mentions (pure
functions, api/slack/ids.py), on fixed cases and on random input."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley import slack_ids as ids

SNOWFLAKES = st.integers(min_value=1, max_value=2**63 - 1)


@given(SNOWFLAKES)
def test_ids_round_trip_and_look_like_slacks(n: int) -> None:
    for letter in "CGDUBTAF":
        encoded = ids.with_letter(letter, n)
        assert re.fullmatch(r"[CGDUBTAF][0-9A-Z]{1,13}", encoded), encoded
        assert ids.parse(letter, encoded) == n
    assert ids.parse(ids.CHANNEL_LETTERS, ids.channel("private", n)) == n


@pytest.mark.parametrize("bad", ["", "C", "c123", "X12", "C!", "C" + "Z" * 14, 5, None,
                                 "C" + ids.enc(2**63 - 1) + "0"])
def test_malformed_ids_parse_to_none(bad: object) -> None:
    assert ids.parse("C", bad) is None


def test_any_channel_letter_names_the_channel() -> None:
    # A channel made private keeps its number; the old C... id still works.
    assert ids.parse(ids.CHANNEL_LETTERS, ids.channel("public", 42)) == 42
    assert ids.channel("private", 42).startswith("G")
    assert ids.channel("dm", 42).startswith("D") and ids.channel("group_dm", 42).startswith("D")


@given(st.integers(min_value=0, max_value=4_000_000_000), st.integers(min_value=1,
                                                                       max_value=2**40))
def test_ts_is_second_and_seq_residue(second: int, seq: int) -> None:
    at = dt.datetime.fromtimestamp(second + 0.75, tz=dt.UTC)
    ts = ids.ts(at, seq)
    assert ids.parse_ts(ts) == (second, seq % ids.TS_MODULUS)
    assert len(ts.split(".")[1]) == 6 and float(ts) == pytest.approx(second, abs=1)


@pytest.mark.parametrize("value", ["1405894322.002768", "1.000001"])
def test_slack_shaped_ts_parse(value: str) -> None:
    assert ids.parse_ts(value) is not None and ids.parse_time(value) == float(value)


@pytest.mark.parametrize("value", ["1405894322", "1405894322.0027", "x.000001", "", None,
                                   "1405894322.0027681", "-1.000001"])
def test_other_values_are_not_message_ts(value: object) -> None:
    assert ids.parse_ts(value) is None


def test_time_bounds_accept_numbers_and_refuse_junk() -> None:
    assert ids.parse_time("0") == 0.0 and ids.parse_time(12) == 12.0
    assert ids.parse_time("1405894322.5") == 1405894322.5
    for junk in ("yesterday", "1e9", True, -1, "1.2.3"):
        assert ids.parse_time(junk) is None


@given(st.sampled_from(["c", "s", "u"]), st.integers(min_value=0, max_value=2**63 - 1))
def test_cursors_round_trip_and_are_typed(kind: str, value: int) -> None:
    c = ids.cursor(kind, value)
    assert ids.parse_cursor(kind, c) == value
    with pytest.raises(ValueError, match="not a cursor"):
        ids.parse_cursor("x", c)


@pytest.mark.parametrize("bad", ["!!", "bm9wZQ", "a" * 65, 7])
def test_bad_cursors_raise(bad: object) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        ids.parse_cursor("c", bad)


def test_empty_cursor_is_the_first_page() -> None:
    assert ids.parse_cursor("c", "") is None and ids.parse_cursor("c", None) is None


def test_mentions_convert_both_ways() -> None:
    u = ids.user(123456789)
    assert ids.text_in(f"hi <@{u}> and <@{u}|ada>, <!here> <!channel|c> <!everyone>") == (
        "hi <@123456789> and <@123456789>, @here @channel @channel")
    assert ids.text_out("hi <@123456789>, @here and @channel; ada@here.com") == (
        f"hi <@{u}>, <!here> and <!channel>; ada@here.com")
    assert ids.text_in("<@Unot-an-id>") == "<@Unot-an-id>"
    assert ids.text_in("no mentions") == "no mentions"


@given(st.lists(st.sampled_from(["a", " ", "@here", "<@1>", "<@9000>", "x@here.io", "@"]),
                max_size=12).map("".join))
def test_text_out_then_in_is_identity(text: str) -> None:
    assert ids.text_in(ids.text_out(text)) == text
