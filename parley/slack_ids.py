"""Slack's shapes of ids, timestamps, cursors and mentions, to and from
Parley's (pure functions: no I/O, no lookup table).

Ids: a letter and the snowflake in upper-case base 36, so every id maps
both ways without storing anything.  The letter is Slack's: ``T`` team
(workspace), ``U`` user (bots' accounts too), ``B`` bot (and an incoming
webhook's URL), ``A`` app, ``F`` file, and for channels ``C`` public, ``G``
private, ``D`` DMs and group DMs.  A channel made private keeps its number
but is then written ``G...``; decoding accepts any of the three letters for
any channel (the letter says what it was when the id was handed out).

Message timestamps (``ts``): ``<created second>.<seq mod 10^6, 6 digits>``,
e.g. ``"1405894322.002768"``.  The second makes it a real time (apps
format and compare it as one); the fraction makes it unique in the
channel, since two messages of one channel with the same fraction have
seqs at least 10^6 apart, far more than a channel commits in a second.
Decoding gives the candidate seqs ``frac + k * 10^6`` of the channel; the
store probes them by primary key and keeps the one created in that second
(``WorkspaceStore.message_at``; one probe below a million messages).  See
docs/architecture.md "Apps" for what is not exact (order across seconds).
"""

from __future__ import annotations

import base64
import datetime as dt
import re

TS_MODULUS = 1_000_000  # the ts fraction is seq mod this (6 digits, like Slack's)
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ID_MAX = 2**63 - 1
_ENC_RE = re.compile(r"^[0-9A-Z]{1,13}$")
_TS_RE = re.compile(r"^([0-9]{1,12})\.([0-9]{6})$")
_TIME_RE = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")
CHANNEL_LETTERS = frozenset("CGD")


def enc(n: int) -> str:
    if n <= 0:
        raise ValueError("ids are positive")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def dec(s: str) -> int | None:
    if not _ENC_RE.match(s):
        return None
    n = int(s, 36)
    return n if 0 < n <= _ID_MAX else None


def with_letter(letter: str, n: int) -> str:
    return letter + enc(n)


def parse(letters: str | frozenset[str], value: object) -> int | None:
    """The snowflake of an id written with one of ``letters``, else None."""
    if not isinstance(value, str) or len(value) < 2 or value[0] not in letters:
        return None
    return dec(value[1:])


def channel_letter(kind: str) -> str:
    return {"public": "C", "private": "G"}.get(kind, "D")


def channel(kind: str, channel_id: int) -> str:
    return with_letter(channel_letter(kind), channel_id)


def team(workspace_id: int) -> str:
    return with_letter("T", workspace_id)


def user(user_id: int) -> str:
    return with_letter("U", user_id)


def bot(bot_id: int) -> str:
    return with_letter("B", bot_id)


def app(app_id: int) -> str:
    return with_letter("A", app_id)


def file(file_id: int) -> str:
    return with_letter("F", file_id)


# -- timestamps -------------------------------------------------------------------------


def ts(created_at: dt.datetime, seq: int) -> str:
    return f"{int(created_at.timestamp())}.{seq % TS_MODULUS:06d}"


def parse_ts(value: object) -> tuple[int, int] | None:
    """(second, seq residue) of a message ts, or None when it is not one."""
    if not isinstance(value, str):
        return None
    m = _TS_RE.match(value)
    return None if m is None else (int(m.group(1)), int(m.group(2)))


def parse_time(value: object) -> float | None:
    """A time bound (``oldest`` / ``latest``): any unix time in seconds,
    with up to 9 decimals (a ts is one)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if 0 <= value < 10**12 else None
    if not isinstance(value, str) or not _TIME_RE.match(value):
        return None
    return float(value)


def time_ts(t: dt.datetime) -> str:
    """A ts-shaped time that names no message (edits, ephemeral messages)."""
    us = int(t.timestamp() * 1_000_000)
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


# -- cursors ----------------------------------------------------------------------------


def cursor(kind: str, value: int) -> str:
    """Opaque to clients, like Slack's (base64 of ``<kind>:<value>``)."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def parse_cursor(kind: str, value: object) -> int | None:
    """The value of a cursor of ``kind``; None for an empty one (the first
    page); raises ValueError for anything else (``invalid_cursor``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor") from exc
    k, _, v = raw.partition(":")
    if k != kind or not v.isdigit() or len(v) > 19:
        raise ValueError("not a cursor")
    return int(v)


# -- mentions in text -----------------------------------------------------------------------

_SLACK_USER_RE = re.compile(r"<@([UW])([0-9A-Z]{1,13})(\|[^>]*)?>")
_SLACK_BROADCAST_RE = re.compile(r"<!(here|channel|everyone)(\|[^>]*)?>")
_PARLEY_USER_RE = re.compile(r"<@([1-9][0-9]{0,18})>")
_PARLEY_BROADCAST_RE = re.compile(r"(?<![\w@.])@(channel|here)\b")


def text_in(text: str) -> str:
    """Slack's mention syntax to Parley's: ``<@U...>`` to ``<@id>`` and
    ``<!here>`` / ``<!channel>`` / ``<!everyone>`` to ``@here`` /
    ``@channel``, so an app's mentions notify like a person's."""
    if "<" not in text:
        return text

    def user_ref(m: re.Match[str]) -> str:
        n = dec(m.group(2))
        return m.group(0) if n is None else f"<@{n}>"

    text = _SLACK_USER_RE.sub(user_ref, text)
    return _SLACK_BROADCAST_RE.sub(
        lambda m: "@here" if m.group(1) == "here" else "@channel", text)


def text_out(text: str) -> str:
    """Parley's mention syntax to Slack's (the inverse of ``text_in``)."""
    if "@" not in text:
        return text
    text = _PARLEY_USER_RE.sub(lambda m: f"<@U{enc(int(m.group(1)))}>", text)
    return _PARLEY_BROADCAST_RE.sub(lambda m: f"<!{m.group(1)}>", text)
