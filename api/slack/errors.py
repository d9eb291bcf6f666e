"""Errors of the Web API: Slack's strings, mapped from Parley's domain codes.

Every answer is HTTP 200 with ``{"ok": false, "error": "<string>"}``, as
Slack answers, except three that Slack also answers with a status: 429
``ratelimited`` (with ``Retry-After`` in whole seconds), 503
``service_unavailable`` (the database is down; nothing was written) and
500 ``fatal_error`` (a bug, logged).  ``missing_scope`` carries ``needed``
and ``provided``; ``invalid_arguments`` carries
``response_metadata.messages``.
"""

from __future__ import annotations

from typing import Any

from parley.errors import DomainError


class SlackError(Exception):
    """An ``ok: false`` answer.  ``extra`` are further top-level keys."""

    def __init__(self, error: str, *, status: int = 200, extra: dict[str, Any] | None = None,
                 messages: list[str] | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = dict(extra or {})
        if messages:
            self.extra["response_metadata"] = {"messages": messages}
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


def invalid(message: str) -> SlackError:
    return SlackError("invalid_arguments", messages=[f"[ERROR] {message}"])


# Parley's domain codes (parley/errors.py users) -> Slack's error strings.
# Codes not listed are already Slack-shaped (snake case) and pass through.
_DOMAIN: dict[str, str] = {
    "channel_archived": "is_archived",
    "message_deleted": "message_not_found",
    "thread_not_found": "thread_not_found",
    "permission_denied": "restricted_action",
    "empty_message": "no_text",
    "message_too_long": "msg_too_long",
    "invalid_text": "invalid_arguments",
    "invalid_blocks": "invalid_blocks",
    "invalid_attachments": "invalid_attachments",
    "rate_limited": "ratelimited",
    "invalid_channel_name": "invalid_name_specials",
    "not_allowed_for_dm": "method_not_supported_for_channel_type",
    "invalid_emoji": "invalid_name",
    "workspace_not_found": "account_inactive",
    "invalid_user_ids": "invalid_arguments",
    "invalid_client_msg_id": "invalid_arguments",
    "invalid_thread_root": "invalid_thread_ts",
    "invalid_file_name": "invalid_arguments",
    "invalid_file_size": "invalid_arguments",
    "file_type_not_allowed": "file_upload_type_not_allowed",
    "file_already_complete": "file_already_uploaded",
    "store_unavailable": "service_unavailable",
    "storage_unavailable": "service_unavailable",
}

# Per method, where Slack uses a method-specific string for the same refusal.
_PER_METHOD: dict[str, dict[str, str]] = {
    "chat.update": {"not_author": "cant_update_message",
                    "permission_denied": "cant_update_message"},
    "chat.delete": {"not_author": "cant_delete_message",
                    "permission_denied": "cant_delete_message"},
    "conversations.leave": {"default_channel": "cant_leave_general"},
    "conversations.kick": {"default_channel": "cant_kick_from_general",
                           "user_not_found": "not_in_channel",
                           "permission_denied": "restricted_action"},
    "conversations.create": {"name_taken": "name_taken"},
    "users.lookupByEmail": {"user_not_found": "users_not_found"},
    "files.delete": {"not_uploader": "cant_delete_file"},
    "conversations.open": {"user_not_found": "user_not_found"},
}


def from_domain(method: str, exc: DomainError) -> SlackError:
    code = _PER_METHOD.get(method, {}).get(exc.code) or _DOMAIN.get(exc.code, exc.code)
    if code == "service_unavailable":
        return SlackError(code, status=503, retry_after_s=1)
    if code == "ratelimited":
        return SlackError(code, status=429, retry_after_s=max(1, round(exc.retry_after_s or 1)))
    if code == "invalid_arguments":
        return invalid(exc.message)
    return SlackError(code)
