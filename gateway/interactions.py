"""The ``action`` op: a member presses a button in an app's message, run by
``parley.actions.interactions`` (the same action as the REST route),
answered with an empty ``ack`` once the app acknowledged, or a typed
``error`` (``action_not_found``, ``app_not_interactive``,
``app_did_not_respond``, ...).  What the app does next (through its
response_url) reaches the member as ordinary events.

Like ``command``, it runs in its own task: the app has up to
``app_events_timeout_s`` to answer, and the connection's other commands
are not held up meanwhile.
"""

from __future__ import annotations

from typing import Any

from gateway.commands import Spawn, answered, api_base
from gateway.protocol import ERR_INVALID_FIELD
from gateway.protocol import codec as codecs
from gateway.sending import Sender
from parley.actions import interactions
from parley.services import Services


def start(svc: Services, spawn: Spawn, session: Sender, ref: Any, d: dict[str, Any]) -> None:
    try:
        channel_id = codecs.as_id(d.get("channel_id"), "channel_id")
        message_id = codecs.as_id(d.get("message_id"), "message_id")
        action_id, block_id, value = d.get("action_id"), d.get("block_id"), d.get("value")
        if not isinstance(action_id, str) or not all(
                v is None or isinstance(v, str) for v in (block_id, value)):
            raise codecs.BadEnvelope(ERR_INVALID_FIELD,
                                     "'action_id', 'block_id' and 'value' are strings")
    except codecs.BadEnvelope as exc:
        session.error(ref, exc.code, exc.message)
        return
    spawn(_run(svc, session, ref, channel_id, message_id, action_id, block_id, value))


async def _run(svc: Services, session: Sender, ref: Any, channel_id: int, message_id: int,
               action_id: str, block_id: str | None, value: str | None) -> None:
    done = await answered(session, ref, _press(svc, session, channel_id, message_id, action_id,
                                               block_id, value))
    if done:
        session.reply(ref, {})


async def _press(svc: Services, session: Sender, channel_id: int, message_id: int,
                 action_id: str, block_id: str | None, value: str | None) -> bool:
    await interactions.press(svc, session.ident, session.workspace_id, channel_id, message_id,
                             action_id, block_id=block_id, value=value, base_url=api_base(svc))
    return True
