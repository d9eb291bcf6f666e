"""The ``send`` command: parse, post through the domain action, acknowledge.

Two paths, one outcome (tests/gateway/test_session.py checks they agree):

* a plain message (no thread, no files) takes ``messages.post_message_nowait``:
  no coroutine or Task per command; the writer's commit callback writes the
  ack (``_sent``).  It may decline (a mention, an unknown shard) and then
  the full path runs;
* anything else is a Task awaiting ``messages.post_message``.

Invariants: every ``send`` is answered exactly once (an ack after the
message is durable, or a typed error); ``quiesce`` waits for both kinds of
in-flight sends, so a draining gateway never leaves an acknowledged send
unsaid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, NamedTuple, Protocol

from gateway.protocol import (
    ERR_INTERNAL,
    ERR_INVALID_FIELD,
    ERR_STORE_UNAVAILABLE,
)
from gateway.protocol import codec as codecs
from parley.actions import files, messages
from parley.auth import Identity
from parley.errors import DomainError
from parley.model import Message, StoreUnavailable
from parley.services import Services

log = logging.getLogger("parley.gateway")


class Sender(Protocol):
    """What the send path needs of a session."""

    ident: Identity
    workspace_id: int

    def reply(self, ref: Any, data: dict[str, Any]) -> None: ...

    def error(self, ref: Any, code: str, message: str, *, retryable: bool = False,
              **extra: Any) -> None: ...


class SendFields(NamedTuple):  # a tuple: built once per send, cheaper than a dataclass
    channel_id: int
    text: str
    cmid: str | None
    root_id: int | None
    also: bool
    file_ids: list[int]


def send_fields(d: dict[str, Any]) -> SendFields:
    """The ``send`` command's fields, type-checked (``BadEnvelope`` if not)."""
    channel_id = codecs.as_id(d.get("channel_id"), "channel_id")
    text = d.get("text")
    if not isinstance(text, str):
        raise codecs.BadEnvelope(ERR_INVALID_FIELD, "'text' must be a string")
    cmid = d.get("client_msg_id")
    if cmid is not None and not isinstance(cmid, str):
        raise codecs.BadEnvelope(ERR_INVALID_FIELD, "'client_msg_id' must be a string")
    root = d.get("thread_root_id")
    root_id = None if root is None else codecs.as_id(root, "thread_root_id")
    also = d.get("also_in_channel", False)
    if not isinstance(also, bool):
        raise codecs.BadEnvelope(ERR_INVALID_FIELD, "'also_in_channel' must be a boolean")
    raw_files = d.get("file_ids", [])
    if not isinstance(raw_files, list) or len(raw_files) > files.FILES_PER_MESSAGE:
        raise codecs.BadEnvelope(ERR_INVALID_FIELD, "'file_ids' is a list of at most "
                                 f"{files.FILES_PER_MESSAGE} ids")
    file_ids = [codecs.as_id(f, "file_ids") for f in raw_files]
    return SendFields(channel_id, text, cmid, root_id, also, file_ids)


def ack_data(msg: Message) -> dict[str, Any]:
    return {"id": msg.id, "channel_id": msg.channel_id, "seq": msg.seq,
            "ts": int(msg.created_at.timestamp() * 1000), "client_msg_id": msg.client_msg_id}


class Sends:
    """Every ``send`` of one gateway, with what is in flight (for the drain)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._tasks: set[asyncio.Task[Any]] = set()  # in flight on the full path
        self._inflight = 0  # in flight on the nowait path
        self._idle: asyncio.Event | None = None  # set when _inflight drops to 0 (drain)

    def start(self, session: Sender, ref: Any, d: dict[str, Any]) -> None:
        try:
            f = send_fields(d)
        except codecs.BadEnvelope as exc:
            session.error(ref, exc.code, exc.message)
            return
        if f.root_id is None and not f.file_ids:
            try:
                started = messages.post_message_nowait(
                    self.svc, session.ident, session.workspace_id, f.channel_id, f.text,
                    f.cmid, done=lambda res: self._sent(session, ref, res))
            except DomainError as exc:
                session.error(ref, exc.code, exc.message, retryable=exc.retryable)
                return
            except StoreUnavailable:
                session.error(ref, ERR_STORE_UNAVAILABLE, "nothing was saved; retry",
                              retryable=True)
                return
            if started:
                self._inflight += 1
                return
        task = asyncio.create_task(self._send(session, ref, f))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sent(self, session: Sender, ref: Any, res: Message | DomainError) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()
        if isinstance(res, DomainError):
            session.error(ref, res.code, res.message, retryable=res.retryable)
        else:
            session.reply(ref, ack_data(res))

    async def _send(self, session: Sender, ref: Any, f: SendFields) -> None:
        try:
            msg = await messages.post_message(self.svc, session.ident, session.workspace_id,
                                              f.channel_id, f.text, f.cmid, f.root_id,
                                              member_checked=True, also_in_channel=f.also,
                                              file_ids=f.file_ids)
        except DomainError as exc:
            session.error(ref, exc.code, exc.message, retryable=exc.retryable)
            return
        except StoreUnavailable:
            session.error(ref, ERR_STORE_UNAVAILABLE, "nothing was saved; retry",
                          retryable=True)
            return
        except Exception:  # a bug: the client still gets an answer, never silence
            log.exception("send failed")
            session.error(ref, ERR_INTERNAL, "the send failed; retry with the same "
                          "client_msg_id (a retry never stores it twice)", retryable=True)
            return
        session.reply(ref, ack_data(msg))

    async def quiesce(self, deadline_s: float) -> None:
        """Wait (up to ``deadline_s``) for in-flight sends to commit and their
        acks to be queued."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=deadline_s)
        if self._inflight > 0:  # nowait sends: acked from commit callbacks
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, end - loop.time()))

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
