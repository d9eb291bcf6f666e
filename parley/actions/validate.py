"""Input rules shared by the actions (one place, one error code each)."""

from __future__ import annotations

import re
import unicodedata

from parley.errors import InvalidInput, TooLarge

EMAIL_MAX = 254  # RFC 5321 path limit
PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # bounds the argon2 input (and its cost)
NAME_MAX = 80
CHANNEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
CLIENT_MSG_ID_MAX = 64
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email(value: str) -> str:
    value = value.strip()
    if (len(value) > EMAIL_MAX or not _EMAIL_RE.match(value)
            or any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in value)):
        raise InvalidInput("invalid_email", "not a valid e-mail address")
    return value


def lookup_email(value: str) -> str | None:
    """An address to look an account up by, or None when no account can have
    it (PostgreSQL text cannot even hold a NUL, so never send one)."""
    try:
        return email(value)
    except InvalidInput:
        return None


def password(value: str) -> str:
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise InvalidInput("invalid_password",
                           f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return value


def display_text(value: str, field: str, max_len: int = NAME_MAX) -> str:
    value = value.strip()
    if not value or len(value) > max_len:
        raise InvalidInput(f"invalid_{field}", f"{field} must have 1 to {max_len} characters")
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in value):
        raise InvalidInput(f"invalid_{field}", f"{field} may not contain control characters")
    return value


def channel_name(value: str) -> str:
    value = value.strip().lower()
    if not CHANNEL_NAME_RE.match(value):
        raise InvalidInput("invalid_channel_name",
                           "channel names are 1-80 lower-case letters, digits, '-' or '_'")
    return value


def message_text(value: str, max_chars: int) -> str:
    if not value.strip():
        raise InvalidInput("empty_message", "message text may not be empty")
    if len(value) > max_chars:
        raise TooLarge("message_too_long", f"message text is limited to {max_chars} characters")
    if "\x00" in value:
        raise InvalidInput("invalid_text", "message text may not contain NUL characters")
    return value


def client_msg_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= CLIENT_MSG_ID_MAX or "\x00" in value:
        raise InvalidInput("invalid_client_msg_id",
                           f"client_msg_id has 1 to {CLIENT_MSG_ID_MAX} characters")
    return value


def free_text(value: str, field: str, max_len: int) -> str:
    """Optional one-line text (a topic, a purpose): may be empty."""
    value = value.strip()
    if len(value) > max_len:
        raise InvalidInput(f"invalid_{field}", f"{field} has at most {max_len} characters")
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in value):
        raise InvalidInput(f"invalid_{field}", f"{field} may not contain control characters")
    return value


EMOJI_RE = re.compile(r"^[a-z0-9_+\-]{1,64}$")


def emoji(value: str) -> str:
    """A reaction is an emoji short name (``thumbsup``, ``+1``, ``tada``)."""
    if not EMOJI_RE.match(value):
        raise InvalidInput("invalid_emoji",
                           "an emoji is a short name of 1-64 characters a-z, 0-9, '_', '+', '-'")
    return value


SEARCH_QUERY_MAX = 256


def search_query(value: str) -> str:
    value = value.strip()
    if not value or len(value) > SEARCH_QUERY_MAX or "\x00" in value:
        raise InvalidInput("invalid_query",
                           f"a search query has 1 to {SEARCH_QUERY_MAX} characters")
    return value
