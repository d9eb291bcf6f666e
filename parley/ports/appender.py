"""The append port: durable, ordered message writes (the group-commit writer,
``storage/writer.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from parley.model import Message, NewMessage


class MessageAppender(Protocol):
    """Durable, ordered appends (the group-commit writer).

    Contract:

    * ``append`` returns only after the message is committed, with its
      per-channel ``seq`` (1, 2, 3 ... with no gaps) and ``id``.
    * The sender must be a member of an unarchived channel at commit time,
      else ``AppendRejected('not_in_channel' | 'channel_archived' | ...)``.
    * Idempotent per (user_id, client_msg_id): a retry returns the message
      stored the first time, never a second one; ``Message.id`` tells the
      caller which (it differs from the id it proposed).
    * ``StoreUnavailable`` means nothing was acknowledged; retrying is safe.
    * A message whose own data the database refuses (text it cannot hold)
      gets ``AppendRejected('invalid_text' | 'invalid_message')``, never
      retryable, and costs the other messages appended with it nothing: they
      are stored and acknowledged as if it had not been sent.
    * Appends from one caller to one channel are stored in call order.
    * ``submit`` is ``append`` without a coroutine per message (the
      gateway's hot path): ``done`` is called exactly once, after the commit,
      with the ``Message`` or the exception ``append`` would raise, on the
      event loop, never from inside ``submit``; callbacks of one channel are
      called in commit (seq) order.  ``submit`` itself raises
      ``StoreUnavailable`` only when the appender is closed.
    """

    async def append(self, shard: str, msg: NewMessage) -> Message: ...

    def submit(self, shard: str, msg: NewMessage,
               done: Callable[[Message | BaseException], None]) -> None: ...

    async def close(self) -> None: ...
