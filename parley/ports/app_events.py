"""The store contract of the Events API dispatcher: per (app, channel)
cursors over the committed message stream, claimed by dispatchers.

Rules (``storage/pg_app_events.py`` implements them,
``tests/storage/test_app_events_store.py`` checks them on PostgreSQL):

* A *pair* is an installed, live app that gets events (a Socket Mode app,
  or one whose request URL answered ``url_verification``; its events not
  turned off for failing, parley/ports/app_health.py) and a channel its
  bot is a member of now.  Its
  cursor ``delivered`` is the position of the last event that got a final
  answer; positions are ``2 * seq`` (the message event) and
  ``2 * seq + 1`` (its ``app_mention``).  A new pair (or the bot back in a
  channel after leaving it) starts at the bot's join: no message posted
  before it, or while it was away, is ever delivered.
* ``claim`` is the only cross-workspace scan (the dispatcher's); every
  other method is scoped by the claim's workspace.  A pair is claimed by
  one dispatcher at a time (a lease with an owner token, taken with
  ``FOR UPDATE SKIP LOCKED``): two dispatchers never hold one pair, and a
  crashed one's pairs are taken over when its lease runs out.  Writes
  with a lost lease change nothing and answer False (the event may then
  be sent twice, with the same event_id: at-least-once).
* Messages are read from the committed history, in seq order.
* Events that are not messages are outbox rows, written by the store
  method that makes the change, in its transaction, one per app that
  would get the event: installed, verified, subscribed to the kind, and
  its bot a member of the channel now (``storage/pg_app_events._audience``,
  the one place of that rule).  The kinds and who gets them:

  - ``reaction_added`` / ``reaction_removed``: bots in the message's channel.
  - ``member_joined_channel`` (after the join: a bot that joins is told
    too) / ``member_left_channel`` (after the leave: only bots still in
    it), public and private channels only.
  - ``channel_created``: public channels, every subscribed app of the
    workspace (no membership, as Slack).
  - ``channel_archive`` / ``channel_unarchive`` (public),
    ``group_archive`` / ``group_unarchive`` (private): bots in the channel.
  - ``file_shared``: a file newly attached to a message, bots in the channel.
  - ``app_uninstalled`` / ``tokens_revoked``: the app being uninstalled
    itself (no channel), the only events an uninstalled app gets.

  ``claim_outbox`` leases them like pairs (one dispatcher each), except
  rows of an app whose events are turned off;
  ``outbox_done`` deletes one after a final answer.  Outbox events carry
  no order between them (Slack gives none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from parley.model import Message, MessageExtras


@dataclass(frozen=True, slots=True)
class EventClaim:
    """A claimed (app, channel) pair and where its cursor stands."""

    workspace_id: int
    app_id: int
    channel_id: int
    channel_kind: str
    delivered: int  # position of the last event with a final answer
    attempts: int  # failed tries of the event after ``delivered``
    retry_reason: str | None  # of the last failed try
    owner: str  # the dispatcher's lease token
    # The lease ran out in another dispatcher's hands (it died or stalled
    # mid-delivery), so the next event may have been sent already.
    taken_over: bool = False
    # Changes whenever the app's record does (URL, secrets, subscriptions,
    # install state): a dispatcher may keep what it read of the app while
    # this is the same.  Empty: unknown (read the app).
    app_version: str = ""


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A committed message after a cursor, with what its event needs."""

    message: Message
    extras: MessageExtras | None
    root_created_at: dt.datetime | None  # the thread root's, for ``thread_ts``
    root_seq: int | None
    root_user_id: int | None


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A claimed outbox row: an event that is not a message."""

    id: int  # names the event (its event_id)
    workspace_id: int
    app_id: int
    channel_id: int | None  # None: the event is about no channel (app_uninstalled)
    channel_kind: str | None
    kind: str  # the event type, e.g. 'reaction_added'
    payload: dict[str, Any]  # Parley's facts, shaped by parley/actions/app_events.py
    created_at: dt.datetime
    attempts: int
    retry_reason: str | None
    owner: str
    taken_over: bool = False  # as ``EventClaim.taken_over``


@dataclass(frozen=True, slots=True)
class UrlToVerify:
    workspace_id: int
    app_id: int
    url: str


@dataclass(frozen=True, slots=True)
class ResponseUrl:
    """A slash command's or an interaction's ``response_url`` (the random
    part only as a hash)."""

    id: int
    workspace_id: int
    app_id: int
    channel_id: int
    user_id: int  # who invoked the command: ephemeral posts go to them
    secret_hash: str
    expires_at: dt.datetime
    max_uses: int
    message_id: int | None = None  # its original (``replace_original``); None: none stored


class AppEventStore(Protocol):
    async def claim(self, owner: str, lease_s: float, limit: int,
                    socket_apps: Sequence[int] | None = None) -> list[EventClaim]:
        """Claim up to ``limit`` pairs with undelivered messages whose next
        try is due and that no live lease holds, on every shard; each is
        leased to ``owner`` for ``lease_s`` seconds.  Creates (or restarts
        at the bot's join) the cursors of new pairs first.  ``socket_apps``
        None: pairs of HTTP apps only; else pairs of the Socket Mode apps
        among those ids only (each dispatcher claims what it can send)."""

    async def pending(self, claim: EventClaim, limit: int) -> list[PendingMessage]:
        """Up to ``limit`` committed messages of the channel after the
        cursor's seq (the one it is inside of included), in seq order."""

    async def advance(self, claim: EventClaim, delivered: int, lease_s: float, *,
                      release: bool = False) -> bool:
        """Move the cursor to ``delivered`` (forward only), clear the
        failure count and extend the lease (``release``: end it instead, as
        ``release`` does, in the same write); False when the lease was lost."""

    async def defer(self, claim: EventClaim, attempts: int, reason: str,
                    not_before: dt.datetime) -> bool:
        """Record a failed try of the next event and release the pair until
        ``not_before``; False when the lease was lost."""

    async def release(self, claim: EventClaim) -> None:
        """End the lease (the pair may be claimed again at once)."""

    async def urls_to_verify(self, retry_after_s: float, limit: int) -> list[UrlToVerify]:
        """Live apps whose manifest's event request URL is not the verified
        one, not tried in the last ``retry_after_s`` seconds, on every shard."""

    async def set_verified(self, workspace_id: int, app_id: int, url: str, ok: bool) -> None:
        """Record a url_verification result for ``url`` (ignored when the
        manifest's URL changed meanwhile); a failure blocks retries for a
        while (``urls_to_verify``) and unverifies nothing."""

    async def claim_outbox(self, owner: str, lease_s: float, limit: int,
                           socket_apps: Sequence[int] | None = None) -> list[OutboxEvent]:
        """Lease up to ``limit`` due outbox rows no live lease holds, on every
        shard, oldest first, to ``owner`` for ``lease_s`` seconds
        (``socket_apps`` as in ``claim``)."""

    async def outbox_done(self, event: OutboxEvent) -> bool:
        """Delete the row after a final answer; False when the lease was lost."""

    async def outbox_defer(self, event: OutboxEvent, attempts: int, reason: str,
                           not_before: dt.datetime) -> bool:
        """Record a failed try and release the row until ``not_before``."""

    async def create_response_url(self, url: ResponseUrl) -> None:
        """Store a new response_url (nothing else is written)."""

    async def use_response_url(self, workspace_id: int, url_id: int,
                               secret_hash: str) -> ResponseUrl | None:
        """Count one post through the URL, atomically: the record when the
        hash matches, it has not expired and fewer than ``max_uses`` posts
        were counted; None otherwise (nothing counted).  Two concurrent
        posts never both take the last use."""

    async def set_response_url_message(self, workspace_id: int, url_id: int,
                                       message_id: int) -> None:
        """Make ``message_id`` the URL's original unless it has one already
        (the first in_channel post of a command is its original)."""
