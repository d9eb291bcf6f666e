"""Mentions in message text, parsed on the server (pure functions).

Syntax:

* ``<@123456>``: the user with that id (clients insert ids, never names:
  display names are neither unique nor stable);
* ``@channel`` and ``@here``: every member of the channel.  ``@here`` is
  stored like ``@channel``: mentions are written with the message, and
  presence (ephemeral, at the gateways) is not consulted on the write path.

A token only counts at a word boundary (``foo@here.com`` is not a mention)
and mentions inside inline code (`` `...` ``) or code blocks count too: the
rule is kept simple and identical for clients that highlight mentions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_USER_MENTIONS = 50  # distinct users one message may mention; the rest are ignored

_USER_RE = re.compile(r"<@([1-9][0-9]{0,18})>")
_BROADCAST_RE = re.compile(r"(?<![\w@.])@(channel|here)\b")


@dataclass(frozen=True, slots=True)
class Mentions:
    user_ids: tuple[int, ...]  # distinct, in order of appearance
    everyone: bool  # @channel or @here

    @property
    def any(self) -> bool:
        return self.everyone or bool(self.user_ids)


_NONE = Mentions(user_ids=(), everyone=False)


def parse(text: str) -> Mentions:
    # Most messages name no one: C-level substring scans instead of two
    # regex passes.  Realistic chat has "@" in addresses and plain "@name"
    # words, which mention nothing; only "<@" or "@channel"/"@here" can.
    if "<@" not in text and "@channel" not in text and "@here" not in text:
        return _NONE
    seen: dict[int, None] = {}
    for m in _USER_RE.finditer(text):
        uid = int(m.group(1))
        if uid < 2**63 and uid not in seen:
            seen[uid] = None
            if len(seen) == MAX_USER_MENTIONS:
                break
    return Mentions(user_ids=tuple(seen), everyone=_BROADCAST_RE.search(text) is not None)
