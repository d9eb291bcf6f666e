"""The ``command`` op: a member's ``/command text`` in a channel, run by
``parley.actions.commands`` (the same action as the REST route), answered
with ``ack`` carrying the app's immediate reply, or a typed ``error``
(``unknown_command``, ``channel_not_found``, ``app_did_not_respond``, ...).

The app has up to ``app_events_timeout_s`` to answer, so the command runs
in its own task: the connection's other commands are not held up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from gateway.protocol import ERR_INVALID_FIELD, ERR_STORE_UNAVAILABLE
from gateway.protocol import codec as codecs
from gateway.sending import Sender
from parley.actions import commands
from parley.errors import DomainError
from parley.model import StoreUnavailable
from parley.services import Services

Spawn = Callable[[Coroutine[Any, Any, None]], None]
T = TypeVar("T")


def api_base(svc: Services) -> str:
    """Where apps reach the API (the response_url's base)."""
    s = svc.settings
    return s.public_api_url.rstrip("/") or f"http://{s.host}:{s.api_port}"


def start(svc: Services, spawn: Spawn, session: Sender, ref: Any, d: dict[str, Any]) -> None:
    try:
        channel_id = codecs.as_id(d.get("channel_id"), "channel_id")
        command, text = d.get("command"), d.get("text", "")
        if not isinstance(command, str) or not isinstance(text, str):
            raise codecs.BadEnvelope(ERR_INVALID_FIELD, "'command' and 'text' are strings")
    except codecs.BadEnvelope as exc:
        session.error(ref, exc.code, exc.message)
        return
    spawn(_run(svc, session, ref, channel_id, command, text))


async def answered(session: Sender, ref: Any, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None once its refusal was sent as a typed
    ``error`` (a domain error's code, or ``store_unavailable``): the app ops'
    one way of answering failures."""
    try:
        return await work
    except DomainError as exc:
        session.error(ref, exc.code, exc.message, retryable=exc.retryable)
    except StoreUnavailable:
        session.error(ref, ERR_STORE_UNAVAILABLE, "the database is unavailable; retry",
                      retryable=True)
    return None


async def _run(svc: Services, session: Sender, ref: Any, channel_id: int, command: str,
               text: str) -> None:
    reply = await answered(session, ref, commands.invoke(
        svc, session.ident, session.workspace_id, channel_id, command, text,
        base_url=api_base(svc)))
    if reply is None:
        return
    data: dict[str, Any] = {"response_type": reply.response_type, "text": reply.text,
                            "blocks": reply.blocks}
    if reply.message is not None:
        data["message_id"], data["seq"] = reply.message.id, reply.message.seq
    if reply.warning is not None:
        data["warning"] = reply.warning
    session.reply(ref, data)
