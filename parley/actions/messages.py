"""Messages: post (REST and gateway alike), edit, delete, pin, history and
threads.

Rules:

* Every stored message, thread replies included, goes through the
  group-commit writer and takes the channel's next ``seq``: history and the
  gateway's resume stay gap-free.  A reply carries ``thread_root_id``; the
  channel's main view shows top-level messages and replies with
  ``also_in_channel``.
* Only a new message publishes a sequenced event (``message.created``).
  Edits, deletions, pins, reactions and thread summaries are unsequenced
  channel events; mention and follow events go to the users concerned.
* A deleted message is a tombstone: it keeps its id and seq, its text is
  emptied, its reactions, pin and mentions are dropped.  Deleting twice is
  not an error.
* Archived channels are read-only: no posts (the writer refuses them), edits,
  deletions, pins or reactions.
* Files: a message may share up to ``files.FILES_PER_MESSAGE`` ready files
  its author uploaded in the workspace (then its text may be empty).  They
  are attached right after the writer commits, before ``message.created`` is
  published with them (a gateway that backfills in that window replays the
  message without its ``files``, as with ``also_in_channel``).
* Extras (``MessageExtras``: Slack-style blocks and attachments, and the
  app's bot that posted): stored before the append, keyed by the message's
  snowflake, so every reader (history, backfill, resume) sees them with the
  message; dropped again when the append is refused or was a retry.  A
  message with blocks or attachments may have empty text.  What an app
  posts always carries its ``bot_id`` and ``app_id`` (from the identity,
  never from the request).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from parley import events, mentions
from parley.actions import files, rich, validate
from parley.actions.channels import member_channel, readable_channel
from parley.actions.workspaces import require_member
from parley.auth import Identity
from parley.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)
from parley.model import (
    AppendRejected,
    Channel,
    FileRecord,
    MentionChange,
    Message,
    MessageExtras,
    NewMessage,
    Pin,
    Reaction,
    StoreUnavailable,
    ThreadSummary,
)
from parley.permissions import Perm, allowed, require
from parley.services import Outgoing, Services

MAX_PINS = 100  # pinned messages per channel
HISTORY_PAGE_MAX = 200
THREAD_PAGE_MAX = 200

_REJECTION_ERRORS: dict[str, type[DomainError]] = {
    "not_in_channel": Forbidden,
    "channel_archived": Forbidden,
    # The writer's per-message rejections of data PostgreSQL refused
    # (storage/writer.py): the message itself is at fault, never retryable.
    "invalid_text": InvalidInput,
    "invalid_message": InvalidInput,
    # An earlier entry with the same client_msg_id in the same batch failed,
    # so nothing is stored under the key: a retry makes a fresh attempt.
    "duplicate_in_flight": Unavailable,
}


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message with what readers see around it."""

    message: Message
    reactions: tuple[Reaction, ...] = ()
    thread: ThreadSummary | None = None  # roots only (None: no replies)
    pinned: bool = False
    files: tuple[FileRecord, ...] = ()  # in order; deleted ones show as removed
    extras: MessageExtras | None = None  # blocks, attachments, the bot that posted


def _message_not_found() -> NotFound:
    return NotFound("message_not_found", "no such message")


async def _message_in(svc: Services, workspace_id: int, channel_id: int,
                      message_id: int) -> Message:
    msg = await svc.store.messages.message(workspace_id, message_id)
    if msg is None or msg.channel_id != channel_id:
        raise _message_not_found()
    return msg


def _writable(channel: Channel) -> None:
    if channel.archived:
        raise Forbidden("channel_archived", "the channel is archived")


def _empty_summary(root_id: int) -> ThreadSummary:
    return ThreadSummary(root_id=root_id, reply_count=0, latest_reply_at=None, replier_ids=())


async def _thread_event(svc: Services, msg: Message, root_id: int) -> tuple[str, bytes]:
    summary = (await svc.store.threads.thread_summaries(msg.workspace_id, [root_id])).get(
        root_id, _empty_summary(root_id))
    return (events.channel_topic(msg.channel_id), events.encode(
        events.THREAD_UPDATED, events.thread_data(msg.workspace_id, msg.channel_id, summary)))


def _mention_events(msg: Message, change: MentionChange) -> list[tuple[str, bytes]]:
    data: dict[str, Any] = {"workspace_id": msg.workspace_id, "channel_id": msg.channel_id,
                            "message_id": msg.id, "message_seq": msg.seq,
                            "thread_root_id": msg.thread_root_id, "user_id": msg.user_id}
    return ([(events.user_topic(uid), events.encode(events.MENTION_CREATED, data))
             for uid in change.added]
            + [(events.user_topic(uid), events.encode(events.MENTION_REMOVED, data))
               for uid in change.removed])


def follow_events(workspace_id: int, channel_id: int, root_id: int, user_ids: list[int],
                  kind: str = events.THREAD_FOLLOWED) -> list[tuple[str, bytes]]:
    data = {"workspace_id": workspace_id, "channel_id": channel_id, "thread_root_id": root_id}
    return [(events.user_topic(uid), events.encode(kind, data)) for uid in user_ids]


async def _check_broadcast(svc: Services, ident: Identity, workspace_id: int,
                           channel_id: int) -> None:
    """@channel / @here in a large channel needs ``mention_channel_large``."""
    member = await require_member(svc, ident, workspace_id)
    if not await svc.store.roster.is_channel_member(workspace_id, channel_id, ident.user_id):
        raise NotFound("channel_not_found", "no such channel")
    if (not allowed(member, Perm.MENTION_CHANNEL_LARGE)
            and await svc.store.roster.channel_member_count(workspace_id, channel_id)
            > svc.settings.large_channel_members):
        raise Forbidden("permission_denied",
                        f"your role may not use @channel or @here in channels of more than "
                        f"{svc.settings.large_channel_members} members")


async def _check_thread_root(svc: Services, ident: Identity, workspace_id: int,
                             channel_id: int, root_id: int) -> None:
    # Membership first, so a message id of a channel the caller cannot see
    # answers like a channel that does not exist.
    if not await svc.store.roster.is_channel_member(workspace_id, channel_id, ident.user_id):
        raise NotFound("channel_not_found", "no such channel")
    root = await _message_in(svc, workspace_id, channel_id, root_id)
    if root.thread_root_id is not None:
        raise InvalidInput("invalid_thread_root", "reply to the thread's root message")
    if root.deleted:
        raise Conflict("message_deleted", "the thread's root message was deleted")


def _append_error(exc: AppendRejected | StoreUnavailable) -> DomainError:
    if isinstance(exc, StoreUnavailable):
        return Unavailable("store_unavailable",
                           "the message store is unavailable; nothing was saved, retry")
    if exc.code == "not_in_channel":
        # Do not reveal whether a private channel exists.
        return NotFound("channel_not_found", "no such channel")
    return _REJECTION_ERRORS.get(exc.code, Forbidden)(exc.code, exc.message)


def _new_message(svc: Services, ident: Identity, workspace_id: int, channel_id: int, text: str,
                 client_msg_id: str | None, thread_root_id: int | None,
                 also_in_channel: bool) -> NewMessage:
    msg_id = svc.ids.next_id()
    return NewMessage(id=msg_id, channel_id=channel_id, workspace_id=workspace_id,
                      user_id=ident.user_id, text=text, client_msg_id=client_msg_id,
                      thread_root_id=thread_root_id, created_at=svc.ids.timestamp(msg_id),
                      also_in_channel=also_in_channel)


def _created(msg: Message, attached: Sequence[FileRecord],
             extras: MessageExtras | None = None) -> tuple[str, bytes, int]:
    """``message.created`` on the channel topic, with its seq (the hub carries
    it outside the event: ``parley.events.publication``): the one event both
    post paths publish."""
    return (events.channel_topic(msg.channel_id),
            events.encode(events.MESSAGE_CREATED, events.message_data(msg, attached, extras)),
            msg.seq)


def _with_bot(ident: Identity, extras: MessageExtras | None) -> MessageExtras | None:
    """The extras to store: an app's posts always name its bot (from the
    identity, whatever the request said); a person's never do."""
    if ident.app_id is None:
        if extras is None or (extras.bot_id is None and extras.subtype is None):
            return extras
        return MessageExtras(blocks=extras.blocks, attachments=extras.attachments)
    base = extras or MessageExtras()
    return MessageExtras(blocks=base.blocks, attachments=base.attachments, bot_id=ident.bot_id,
                         app_id=ident.app_id, subtype=base.subtype)


def _has_content(extras: MessageExtras | None) -> bool:
    return extras is not None and (extras.blocks is not None or extras.attachments is not None)


def post_message_nowait(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                        text: str, client_msg_id: str | None, *,
                        done: Callable[[Message | DomainError], None]) -> bool:
    """``post_message`` for a plain message, without a coroutine per message:
    the gateway's hot path (one ``send`` command = one call).

    Plain means: no files, not a thread reply, no mention (``@`` parsed as
    nothing), posted by a workspace member whose membership the caller
    checked at connect time (channel membership is checked in the write
    transaction, as always) into a workspace whose shard is already known
    (``delivery.session_channels`` learns it when a session opens).  Returns False,
    having done nothing, for anything else: the caller then awaits
    ``post_message``, which handles every case.  Invalid text or
    ``client_msg_id`` raise ``DomainError`` at once.  Otherwise ``done`` is
    called exactly once, after the commit, with the stored message or the
    ``DomainError`` that ``post_message`` would raise; right after it, in
    the same callback, ``message.created`` is handed to ``svc.publish_soon``
    (not for a retry that found the first attempt's message, as in
    ``post_message``), which delivers it to this process's sockets at once.
    """
    text = validate.message_text(text, svc.settings.max_message_chars)
    client_msg_id = validate.client_msg_id(client_msg_id)
    if mentions.parse(text).any:  # (no "@": parse returns at once)
        return False
    shard = svc.store.workspaces.cached_shard(workspace_id)
    if shard is None:
        return False
    new = _new_message(svc, ident, workspace_id, channel_id, text, client_msg_id, None, False)

    def committed(res: Message | BaseException) -> None:
        if isinstance(res, BaseException):
            done(_append_error(res) if isinstance(res, AppendRejected | StoreUnavailable)
                 else Unavailable("internal_error", "the message was not saved; retry"))
            return
        done(res)  # the ack first: the client sees it before its own message.created
        if res.id == new.id:
            # Same callback, so the same loop iteration: the local copy of
            # the event joins the ack in the sender's outbound buffer.
            svc.publish_soon([_created(res, ())])

    svc.writer.submit(shard, new, committed)
    return True


async def post_message(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                       text: str, client_msg_id: str | None = None,
                       thread_root_id: int | None = None, *, member_checked: bool = False,
                       also_in_channel: bool = False,
                       file_ids: Sequence[int] = (),
                       extras: MessageExtras | None = None) -> Message:
    """Store a message durably, then publish it; returns the stored message.

    ``member_checked`` lets the gateway skip the workspace-membership read it
    already did at connect time; channel membership is always checked inside
    the write transaction.  Idempotent per (sender, client_msg_id): a retry
    returns the stored message and publishes nothing again.  ``file_ids``:
    ready files the sender uploaded; ``extras``: blocks and attachments (see
    the module rules).
    """
    extras = _with_bot(ident, extras)
    rich.clean_text(text)
    if not ((file_ids or _has_content(extras)) and text == ""):
        text = validate.message_text(text, svc.settings.max_message_chars)
    client_msg_id = validate.client_msg_id(client_msg_id)
    if not member_checked or file_ids:
        member = await require_member(svc, ident, workspace_id)
        require(member, Perm.POST_MESSAGE)
    if file_ids:
        file_ids = await files.attachable(svc, ident, workspace_id, file_ids)
    if also_in_channel and thread_root_id is None:
        raise InvalidInput("invalid_thread_root", "also_in_channel needs a thread_root_id")
    if thread_root_id is not None:
        await _check_thread_root(svc, ident, workspace_id, channel_id, thread_root_id)
    found = mentions.parse(text)
    if found.everyone:
        await _check_broadcast(svc, ident, workspace_id, channel_id)
    shard = await svc.store.workspaces.shard_of(workspace_id)
    if shard is None:
        raise NotFound("workspace_not_found", "no such workspace")
    new = _new_message(svc, ident, workspace_id, channel_id, text, client_msg_id,
                       thread_root_id, also_in_channel)
    msg_id = new.id
    if extras is not None:
        await svc.store.extras.put_message_extras(workspace_id, channel_id, msg_id, extras)
    try:
        stored = await svc.writer.append(shard, new)
    except (AppendRejected, StoreUnavailable) as exc:
        if extras is not None:
            await _forget_extras(svc, workspace_id, msg_id)
        raise _append_error(exc) from exc
    attached: list[FileRecord] | None = None
    if file_ids:  # idempotent: a retry attaches what a failed first attempt did not
        attached = await svc.store.shares.attach_files(workspace_id, channel_id, stored.id,
                                                       file_ids, ident.user_id)
    if stored.id != msg_id:  # a retry: the first attempt published already
        if extras is not None:
            await _forget_extras(svc, workspace_id, msg_id)
        return stored
    change = MentionChange((), ())
    if found.any:
        change = await svc.store.messages.set_mentions(stored, found.user_ids, found.everyone)
    items: list[Outgoing] = [_created(stored, attached or (), extras)]
    root_id = thread_root_id if thread_root_id is not None else stored.id
    followed: list[int] = []
    if thread_root_id is not None:
        root = await svc.store.messages.message(workspace_id, thread_root_id)
        if root is not None:
            followed += await svc.store.threads.follow_thread(workspace_id, channel_id, root_id,
                                                              [root.user_id], override=False)
        followed += await svc.store.threads.follow_thread(workspace_id, channel_id, root_id,
                                                          [stored.user_id, *change.added],
                                                          override=True)
        items.append(await _thread_event(svc, stored, root_id))
    elif change.added:
        followed += await svc.store.threads.follow_thread(workspace_id, channel_id, root_id,
                                                          list(change.added), override=True)
    items += follow_events(workspace_id, channel_id, root_id, sorted(set(followed)))
    items += _mention_events(stored, change)
    await svc.publish_many(items)
    return stored


async def _forget_extras(svc: Services, workspace_id: int, message_id: int) -> None:
    try:
        await svc.store.extras.drop_message_extras(workspace_id, message_id)
    except StoreUnavailable:  # an orphan names an id no message has: never read
        pass


async def edit_message(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                       message_id: int, text: str,
                       extras: MessageExtras | None = None) -> Message:
    """The author edits their message (``edited_ts`` is set); mentions are
    re-parsed: newly mentioned users are told, unmentioned ones too.  With
    ``extras``, its blocks and attachments become those (None: unchanged)."""
    if extras is not None:
        extras = _with_bot(ident, extras)
    rich.clean_text(text)
    if not (_has_content(extras) and text == ""):
        text = validate.message_text(text, svc.settings.max_message_chars)
    _, channel = await member_channel(svc, ident, workspace_id, channel_id)
    msg = await _message_in(svc, workspace_id, channel_id, message_id)
    if msg.user_id != ident.user_id:
        raise Forbidden("not_author", "only the author may edit a message")
    if msg.deleted:
        raise Conflict("message_deleted", "the message was deleted")
    _writable(channel)
    found = mentions.parse(text)
    if found.everyone and not mentions.parse(msg.text).everyone:
        await _check_broadcast(svc, ident, workspace_id, channel_id)
    edited = await svc.store.messages.edit_message(workspace_id, message_id, text,
                                                   dt.datetime.now(dt.UTC), extras)
    if edited is None:
        raise Conflict("message_deleted", "the message was deleted")
    change = await svc.store.messages.set_mentions(edited, found.user_ids, found.everyone)
    shared = (await files.attachments(svc, workspace_id, [edited.id])).get(edited.id, [])
    now_extras = (await svc.store.extras.message_extras(workspace_id, [edited.id])).get(edited.id)
    items = [(events.channel_topic(channel_id), events.encode(
        events.MESSAGE_UPDATED, {"workspace_id": workspace_id, "channel_id": channel_id,
                                 "message": events.message_data(edited, shared, now_extras)}))]
    if change.added:
        root_id = edited.thread_root_id if edited.thread_root_id is not None else edited.id
        followed = await svc.store.threads.follow_thread(workspace_id, channel_id, root_id,
                                                         list(change.added), override=True)
        items += follow_events(workspace_id, channel_id, root_id, followed)
    items += _mention_events(edited, change)
    await svc.publish_many(items)
    return edited


async def delete_message(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                         message_id: int) -> None:
    """Tombstone a message: the author, or a role with ``delete_any_message``."""
    member = await require_member(svc, ident, workspace_id)
    channel = await readable_channel(svc, ident, workspace_id, channel_id)
    msg = await _message_in(svc, workspace_id, channel_id, message_id)
    if msg.user_id != ident.user_id:
        require(member, Perm.DELETE_ANY_MESSAGE)
    _writable(channel)
    result = await svc.store.messages.delete_message(workspace_id, message_id)
    if result is None:  # already deleted
        return
    tomb, unmentioned = result
    tomb_extras = (await svc.store.extras.message_extras(workspace_id, [tomb.id])).get(tomb.id)
    items = [(events.channel_topic(channel_id), events.encode(
        events.MESSAGE_DELETED, {"workspace_id": workspace_id, "channel_id": channel_id,
                                 "message": events.message_data(tomb, [], tomb_extras)}))]
    if tomb.thread_root_id is not None:
        items.append(await _thread_event(svc, tomb, tomb.thread_root_id))
    items += _mention_events(tomb, MentionChange((), unmentioned))
    await svc.publish_many(items)


async def set_pinned(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                     message_id: int, pinned: bool) -> bool:
    """Pin or unpin; idempotent (no event when nothing changed).  Whether
    something changed."""
    member, channel = await member_channel(svc, ident, workspace_id, channel_id)
    require(member, Perm.PIN_MESSAGE)
    _writable(channel)
    await _message_in(svc, workspace_id, channel_id, message_id)
    if pinned:
        status = await svc.store.pins.pin(workspace_id, channel_id, message_id, ident.user_id,
                                          MAX_PINS)
        if status == "too_many":
            raise Conflict("too_many_pins", f"a channel has at most {MAX_PINS} pinned messages")
        if status == "gone":
            raise Conflict("message_deleted", "the message was deleted")
        changed = status == "pinned"
    else:
        changed = await svc.store.pins.unpin(workspace_id, channel_id, message_id)
    if changed:
        await svc.publish(events.channel_topic(channel_id), events.encode(
            events.MESSAGE_PINNED if pinned else events.MESSAGE_UNPINNED,
            {"workspace_id": workspace_id, "channel_id": channel_id, "message_id": message_id,
             "user_id": ident.user_id}))
    return changed


async def list_pins(svc: Services, ident: Identity, workspace_id: int,
                    channel_id: int) -> list[Pin]:
    await readable_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.pins.pins(workspace_id, channel_id)


# -- reading ------------------------------------------------------------------------


async def enrich(svc: Services, workspace_id: int, channel_id: int,
                 msgs: list[Message]) -> list[MessageView]:
    """Reactions, thread summaries, pins, files and extras for a page: five queries."""
    live = [m.id for m in msgs if not m.deleted]
    by_message: dict[int, list[Reaction]] = {}
    for r in await svc.store.reactions.reactions_of(workspace_id, live):
        by_message.setdefault(r.message_id, []).append(r)
    summaries = await svc.store.threads.thread_summaries(
        workspace_id, [m.id for m in msgs if m.thread_root_id is None])
    pinned = await svc.store.pins.pinned_ids(workspace_id, channel_id, live)
    shared = await files.attachments(svc, workspace_id, live)
    extras = await svc.store.extras.message_extras(workspace_id, [m.id for m in msgs])
    return [MessageView(m, tuple(by_message.get(m.id, ())), summaries.get(m.id), m.id in pinned,
                        tuple(shared.get(m.id, ())), extras.get(m.id)) for m in msgs]


async def history(svc: Services, ident: Identity, workspace_id: int, channel_id: int, *,
                  before: int | None, after: int | None, limit: int) -> list[Message]:
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    await readable_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.messages.history(workspace_id, channel_id, before=before, after=after,
                                            limit=limit)


async def channel_page(svc: Services, ident: Identity, workspace_id: int, channel_id: int, *,
                       after_seq: int, before_seq: int, limit: int,
                       newest_first: bool) -> list[Message]:
    """The channel's main view between two seqs (exclusive): top-level
    messages and replies also sent to the channel, newest first or in order."""
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    await readable_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.timeline.channel_page(workspace_id, channel_id, after_seq=after_seq,
                                                 before_seq=before_seq,
                                                 limit=max(1, min(limit, HISTORY_PAGE_MAX)),
                                                 newest_first=newest_first, top_level=True)


async def message_at(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                     second: int, seq_residue: int, modulus: int) -> Message | None:
    """The message of a channel the caller may read, addressed as the Web API
    does (creation second and seq residue; see docs/architecture.md)."""
    await readable_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.timeline.message_at(workspace_id, channel_id, second, seq_residue,
                                               modulus)


async def seq_at(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                 at: dt.datetime) -> int:
    """The first seq of a readable channel created at or after ``at``."""
    await readable_channel(svc, ident, workspace_id, channel_id)
    return await svc.store.timeline.seq_at(workspace_id, channel_id, at)


async def get_message(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                      message_id: int) -> MessageView:
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    await readable_channel(svc, ident, workspace_id, channel_id)
    msg = await _message_in(svc, workspace_id, channel_id, message_id)
    return (await enrich(svc, workspace_id, channel_id, [msg]))[0]


async def thread(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                 root_id: int, after_seq: int,
                 limit: int) -> tuple[MessageView, list[MessageView], bool]:
    """(root, a page of replies after ``after_seq`` in order, caller follows)."""
    member = await require_member(svc, ident, workspace_id)
    require(member, Perm.READ_HISTORY)
    await readable_channel(svc, ident, workspace_id, channel_id)
    root = await _message_in(svc, workspace_id, channel_id, root_id)
    if root.thread_root_id is not None:
        raise NotFound("thread_not_found", "that message is a reply, not a thread root")
    replies = await svc.store.threads.thread_replies(workspace_id, root_id, after_seq,
                                                     max(1, min(limit, THREAD_PAGE_MAX)))
    views = await enrich(svc, workspace_id, channel_id, [root, *replies])
    following = await svc.store.threads.is_following(workspace_id, root_id, ident.user_id)
    return views[0], views[1:], following


async def set_following(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                        root_id: int, follow: bool) -> None:
    """Follow or unfollow a thread; every device of the caller is told."""
    await member_channel(svc, ident, workspace_id, channel_id)
    root = await _message_in(svc, workspace_id, channel_id, root_id)
    if root.thread_root_id is not None:
        raise NotFound("thread_not_found", "that message is a reply, not a thread root")
    if follow:
        changed = bool(await svc.store.threads.follow_thread(workspace_id, channel_id, root_id,
                                                             [ident.user_id], override=True))
    else:
        changed = await svc.store.threads.unfollow_thread(workspace_id, channel_id, root_id,
                                                          ident.user_id)
    if changed:
        await svc.publish_many(follow_events(
            workspace_id, channel_id, root_id, [ident.user_id],
            events.THREAD_FOLLOWED if follow else events.THREAD_UNFOLLOWED))


async def messages_by_id(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                         message_ids: Sequence[int]) -> dict[int, Message]:
    """Messages of a channel the caller may read, by id (the missing left out):
    what the Web API needs to name the threads replies belong to."""
    await readable_channel(svc, ident, workspace_id, channel_id)
    out: dict[int, Message] = {}
    for mid in dict.fromkeys(message_ids):
        msg = await svc.store.messages.message(workspace_id, mid)
        if msg is not None and msg.channel_id == channel_id:
            out[mid] = msg
    return out


async def post_ephemeral(svc: Services, ident: Identity, workspace_id: int, channel_id: int,
                         user_id: int, text: str, *, extras: MessageExtras | None = None,
                         thread_root_id: int | None = None, ts: str) -> None:
    """A message only ``user_id`` sees, on their sockets, and only now: it is
    never stored, so it has no seq and is in no history (an app's
    ``chat.postEphemeral``).  Both the sender and the user must be in the
    channel (404 ``user_not_found`` / ``user_not_in_channel``)."""
    extras = _with_bot(ident, extras)
    rich.clean_text(text)
    if not (_has_content(extras) and text == ""):
        text = validate.message_text(text, svc.settings.max_message_chars)
    member, channel = await member_channel(svc, ident, workspace_id, channel_id)
    require(member, Perm.POST_MESSAGE)
    _writable(channel)
    target = await svc.store.members.member(workspace_id, user_id)
    if target is None or not target.active:
        raise NotFound("user_not_found", "no such member in this workspace")
    if not await svc.store.roster.is_channel_member(workspace_id, channel_id, user_id):
        raise Forbidden("user_not_in_channel", "that user is not in this channel")
    data: dict[str, Any] = {"workspace_id": workspace_id, "channel_id": channel_id,
                            "user_id": ident.user_id, "text": text, "ts": ts,
                            "thread_root_id": thread_root_id}
    if extras is not None:
        data.update(events.extras_data(extras))
    await svc.publish(events.user_topic(user_id), events.encode(events.MESSAGE_EPHEMERAL, data))
