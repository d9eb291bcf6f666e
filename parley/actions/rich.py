"""Slack-style message content beyond text: ``blocks`` and ``attachments``,
and the text rules every app-facing input shares.

Rules:

* ``blocks`` and ``attachments`` are JSON arrays of objects, kept as the
  JSON text of what was received (``MessageExtras``) and given back
  unchanged: Parley does not interpret Block Kit, so anything a Slack
  client can render reaches it.  The bounds are Slack's (50 blocks, 100
  attachments) plus a size bound on the whole.
* Text anywhere in them (keys and values) may hold no NUL and no lone
  surrogate: PostgreSQL text cannot store NUL, and a lone surrogate cannot
  be encoded as UTF-8, so either would fail later as a 500.  Refusing them
  here answers a clear error instead.  (``clean_text`` is the same rule for
  plain strings; the shared validator in ``parley/actions/validate.py`` is
  its eventual home.)
"""

from __future__ import annotations

import json
from typing import Any

from parley.errors import InvalidInput, TooLarge

MAX_BLOCKS = 50  # Slack's limit per message
MAX_ATTACHMENTS = 100  # Slack's limit per message
MAX_JSON_BYTES = 256 * 1024  # blocks and attachments together, serialized
MAX_DEPTH = 16  # nesting of objects and arrays


def bad_text(value: str) -> bool:
    """True when ``value`` holds a NUL or a lone surrogate."""
    if "\x00" in value:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean_text(value: str, field: str = "text") -> str:
    if bad_text(value):
        raise InvalidInput(f"invalid_{field}",
                           f"{field} may not contain NUL characters or lone surrogates")
    return value


def _walk(value: Any, field: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"invalid_{field}", f"{field} are nested too deeply")
    if isinstance(value, str):
        if bad_text(value):
            raise InvalidInput(f"invalid_{field}",
                               f"{field} may not contain NUL characters or lone surrogates")
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(k, field, depth + 1)
            _walk(v, field, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _walk(v, field, depth + 1)
    elif not (value is None or isinstance(value, bool | int | float)):
        raise InvalidInput(f"invalid_{field}", f"{field} must be JSON")


def json_array(value: Any, field: str, max_items: int) -> str | None:
    """A validated JSON array of objects as text, or None for None/empty.

    ``value`` is the parsed array, or its JSON text (form-encoded requests
    send it as a string)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidInput(f"invalid_{field}", f"{field} must be a JSON array") from exc
    if not isinstance(value, list):
        raise InvalidInput(f"invalid_{field}", f"{field} must be a JSON array")
    if not value:
        return None
    if len(value) > max_items:
        raise InvalidInput(f"invalid_{field}", f"at most {max_items} {field}")
    if not all(isinstance(v, dict) for v in value):
        raise InvalidInput(f"invalid_{field}", f"each of the {field} is a JSON object")
    _walk(value, field, 0)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > MAX_JSON_BYTES:
        raise TooLarge(f"invalid_{field}", f"{field} are limited to {MAX_JSON_BYTES} bytes")
    return text


def blocks(value: Any) -> str | None:
    return json_array(value, "blocks", MAX_BLOCKS)


def attachments(value: Any) -> str | None:
    return json_array(value, "attachments", MAX_ATTACHMENTS)


def parsed(text: str | None) -> list[Any] | None:
    """The array stored as ``text`` (validated when it was stored)."""
    if text is None:
        return None
    out: list[Any] = json.loads(text)
    return out


def attachments_text(text: str | None) -> bool:
    """Whether stored attachments carry something to show without text
    (Slack accepts a message of attachments with a ``fallback`` or ``text``)."""
    items = parsed(text) or []
    return any(isinstance(a, dict) and (a.get("text") or a.get("fallback") or a.get("blocks")
                                        or a.get("title")) for a in items)
