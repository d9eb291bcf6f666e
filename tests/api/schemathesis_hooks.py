"""schemathesis hooks for tests/api/test_schemathesis.py (loaded by the
``st`` process through SCHEMATHESIS_HOOKS; never imported by pytest).

``parley_error_envelope``: every 4xx answer is Parley's error envelope,
``{"error": {"code", "message", "retryable"}}`` and nothing else at the top
(``details`` only for ``invalid_request``), whatever refused the request:
an action, FastAPI's validation, the body limit or the router.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import schemathesis


@schemathesis.check
def parley_error_envelope(ctx: Any, response: Any, case: Any) -> None:
    if not 400 <= response.status_code < 500:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(
            f"{response.status_code} is not JSON: {response.content[:200]!r}") from None
    err = body.get("error") if isinstance(body, dict) else None
    assert isinstance(body, dict) and set(body) == {"error"} and isinstance(err, dict), body
    assert isinstance(err.get("code"), str) and err["code"], body
    assert isinstance(err.get("message"), str), body
    assert isinstance(err.get("retryable"), bool), body
    assert set(err) <= {"code", "message", "retryable", "details"}, body
    assert "details" not in err or err["code"] == "invalid_request", body


# Only for the stateful run (PARLEY_ST_REALISTIC set): random channel names
# and message bodies are nearly always refused (invalid_channel_name,
# empty_message, file_not_found for made-up file ids), so few chains would get
# past "create channel" to a message and what acts on it.  The per-operation
# run fuzzes these fields as they come.
_NAME_CHARS = re.compile(r"[^a-z0-9_-]")


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    op = ctx.operation
    if (not os.environ.get("PARLEY_ST_REALISTIC") or op is None or op.method.upper() != "POST"
            or not isinstance(body, dict)):
        return body
    if op.path.endswith("/channels") and isinstance(body.get("name"), str):
        body["name"] = (_NAME_CHARS.sub("", body["name"].lower())[:70] or "c") + "-st"
    elif op.path.endswith("/messages"):
        body.pop("file_ids", None)
        body.pop("thread_root_id", None)
        body.pop("also_in_channel", None)
        if not isinstance(body.get("text"), str) or not body["text"].strip():
            body["text"] = "hello from the stateful run"
    return body
