"""A Web API call's arguments, as Slack takes them: from the query string,
a form body, a JSON body or a multipart body, merged (the body wins).

The token is taken from ``Authorization: Bearer`` or a ``token`` field of
the body, never from the query string (URLs end up in logs).  Values keep
their JSON types when sent as JSON; form values are strings, so every
getter accepts both (``"true"``/``"1"``/``true``, ``"5"``/``5``, a JSON
array as text or as an array).  Every problem is ``invalid_arguments``
with a message naming the argument, or Slack's own string where it has one.
"""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from api.slack.errors import SlackError, invalid
from parley.actions.rich import bad_text

FIELD_MAX_CHARS = 1_000_000  # a single argument; the body as a whole is limited to 1 MiB
UPLOADED = "__files__"  # where multipart file parts go (name -> (filename, bytes))


def _clean(name: str, value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > FIELD_MAX_CHARS:
            raise invalid(f"{name} is too long")
        if bad_text(value):
            raise invalid(f"{name} may not contain NUL characters or lone surrogates")
    return value


def _multipart(body: bytes, content_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = BytesParser(policy=HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise SlackError("invalid_form_data")
    fields: dict[str, Any] = {}
    uploads: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            uploads[name] = (filename, data)
        else:
            try:
                fields[name] = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SlackError("invalid_form_data") from exc
    return fields, uploads


async def read(request: Request) -> tuple[dict[str, Any], str | None]:
    """(arguments, token) of a request."""
    args: dict[str, Any] = {k: v for k, v in request.query_params.multi_items() if k != "token"}
    body = await request.body()
    ctype = request.headers.get("content-type", "").lower()
    body_args: dict[str, Any] = {}
    if body:
        if ctype.startswith("application/json"):
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise SlackError("invalid_json") from exc
            if not isinstance(parsed, dict):
                raise SlackError("json_not_object")
            body_args = parsed
        elif ctype.startswith("multipart/form-data"):
            body_args, uploads = _multipart(body, request.headers["content-type"])
            if uploads:
                body_args[UPLOADED] = uploads
        else:  # Slack's default (and urllib's): a form
            try:
                body_args = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                           strict_parsing=False, errors="strict"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise SlackError("invalid_form_data") from exc
    args.update(body_args)
    token: str | None = None
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        token = value.strip()
    form_token = args.pop("token", None)
    if token is None and isinstance(form_token, str) and form_token:
        token = form_token
    for k, v in args.items():
        if k != UPLOADED:
            _clean(k, v)
    return args, token


class Args:
    """Typed access to the merged arguments."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def has(self, name: str) -> bool:
        v = self.values.get(name)
        return v is not None and v != ""

    def text(self, name: str, *, required: bool = False, default: str = "",
            max_len: int = FIELD_MAX_CHARS) -> str:
        v = self.values.get(name)
        if v is None or v == "":
            if required:
                raise invalid(f"missing required field: {name}")
            return default
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise invalid(f"{name} must be a string")
        s = str(v)
        if len(s) > max_len:
            raise invalid(f"{name} has at most {max_len} characters")
        return s

    def number(self, name: str, *, default: int, lo: int, hi: int) -> int:
        v = self.values.get(name)
        if v is None or v == "":
            return default
        try:
            n = int(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            n = None
        if n is None:
            raise invalid(f"{name} must be a number")
        return max(lo, min(hi, n))

    def flag(self, name: str, *, default: bool = False) -> bool:
        v = self.values.get(name)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return v != 0
        if isinstance(v, str) and v.lower() in {"1", "true", "yes"}:
            return True
        if isinstance(v, str) and v.lower() in {"0", "false", "no"}:
            return False
        raise invalid(f"{name} must be true or false")

    def items(self, name: str, *, required: bool = False) -> list[str]:
        """A comma-separated string, or a JSON array of strings."""
        v = self.values.get(name)
        if v is None or v == "":
            if required:
                raise invalid(f"missing required field: {name}")
            return []
        if isinstance(v, str):
            items: list[Any] = [p.strip() for p in v.split(",") if p.strip()]
        elif isinstance(v, list):
            items = v
        else:
            raise invalid(f"{name} must be a comma-separated list")
        if not all(isinstance(i, str) for i in items):
            raise invalid(f"{name} must be a list of strings")
        return [str(i) for i in items]

    def json(self, name: str) -> Any:
        """A JSON value sent as JSON, or as its text in a form."""
        v = self.values.get(name)
        if isinstance(v, str) and v:
            try:
                return json.loads(v)
            except ValueError as exc:
                raise invalid(f"{name} must be JSON") from exc
        return v
