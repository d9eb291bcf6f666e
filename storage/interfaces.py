"""Contracts between Parley's domain code and its infrastructure backends.

Rules for this file:

* It imports nothing of ours (the dependency rule in docs/architecture.md).
* Each interface is a small ``typing.Protocol``; its docstring is the contract
  that every implementation meets and that one conformance suite per
  interface (``tests/storage/test_*_conformance.py``) checks against every
  implementation with real services.
* Only the composition root (``parley/composition.py``) names a concrete
  implementation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# ---------------------------------------------------------------------------
# Records.  Plain frozen dataclasses: what the stores return.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    display_name: str
    password_hash: str
    deactivated: bool
    is_bot: bool = False  # an app's bot account (cannot log in)


@dataclass(frozen=True, slots=True)
class Member:
    workspace_id: int
    user_id: int
    role: str  # 'owner' | 'admin' | 'member' | 'guest'
    display_name: str
    active: bool
    is_bot: bool = False  # an app's bot (see storage/interfaces_apps.py)


@dataclass(frozen=True, slots=True)
class Workspace:
    id: int
    name: str
    created_by: int
    shard: str


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    workspace_id: int
    kind: str  # 'public' | 'private' | 'dm' | 'group_dm'
    name: str | None
    topic: str
    purpose: str
    created_by: int
    archived: bool
    last_seq: int


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    channel_id: int
    seq: int
    workspace_id: int
    user_id: int
    text: str
    client_msg_id: str | None
    thread_root_id: int | None
    created_at: dt.datetime
    edited_at: dt.datetime | None
    deleted: bool
    # A thread reply also shown in the channel ("also send to channel").
    also_in_channel: bool = False


@dataclass(frozen=True, slots=True)
class MessageExtras:
    """What a Slack-style message carries beyond Parley's own fields; a
    message has these only when one of them is set (plain messages have
    none, so the writer's hot path never sees them).

    ``blocks`` and ``attachments`` are JSON arrays, kept as the text they
    were received as (``parley.actions.rich`` validates them); ``bot_id`` /
    ``app_id`` name the app's bot that posted; ``subtype`` is
    ``'bot_message'`` for posts through an incoming webhook."""

    blocks: str | None = None
    attachments: str | None = None
    bot_id: int | None = None
    app_id: int | None = None
    subtype: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel as one user sees it in a list: membership and read state
    (the read fields are None when the user is not a member)."""

    channel: Channel
    is_member: bool
    last_read_seq: int | None
    unread_count: int | None  # others' non-deleted channel messages after last_read_seq
    mention_count: int | None  # the user's mentions after last_read_seq


@dataclass(frozen=True, slots=True)
class ReadState:
    channel_id: int
    last_read_seq: int
    unread_count: int
    mention_count: int


@dataclass(frozen=True, slots=True)
class ChannelMember:
    user_id: int
    display_name: str
    role: str  # the workspace role


@dataclass(frozen=True, slots=True)
class Invite:
    id: int
    workspace_id: int
    role: str
    created_by: int
    created_at: dt.datetime
    expires_at: dt.datetime
    max_uses: int | None
    uses: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class InviteOutcome:
    """``status``: 'joined' | 'already_member' | 'invalid' (unknown, expired,
    revoked or used up) | 'deactivated' (an admin ended this membership)."""

    status: str
    member: Member | None


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """``status``: 'rotated' | 'reused' (the session is now revoked) |
    'invalid' (unknown, expired, or its session ended)."""

    status: str
    user_id: int | None = None
    session_id: int | None = None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    root_id: int
    reply_count: int  # non-deleted replies
    latest_reply_at: dt.datetime | None
    replier_ids: tuple[int, ...]  # distinct authors of non-deleted replies, by id


@dataclass(frozen=True, slots=True)
class Reaction:
    message_id: int
    emoji: str
    user_ids: tuple[int, ...]  # in the order they reacted


@dataclass(frozen=True, slots=True)
class Pin:
    message: Message
    pinned_by: int
    pinned_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MentionChange:
    """Users whose mention of a message appeared or disappeared."""

    added: tuple[int, ...]
    removed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append; id and created_at are assigned by the caller
    (snowflake), seq by the store inside the write transaction."""

    id: int
    channel_id: int
    workspace_id: int
    user_id: int
    text: str
    client_msg_id: str | None
    thread_root_id: int | None
    created_at: dt.datetime
    also_in_channel: bool = False  # a thread reply also shown in the channel


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An uploaded file.  ``state``: 'pending' (created, bytes not checked yet)
    | 'ready' (size checked, type sniffed; attachable) | 'deleted'."""

    id: int
    workspace_id: int
    uploader_id: int
    key: str  # the blob key, under the workspace's prefix; never from the name
    name: str  # declared by the uploader; display only
    size: int  # declared while pending, the stored size once ready
    declared_type: str  # the uploader's claim: never served
    content_type: str | None  # sniffed from the bytes (None while pending)
    state: str
    created_at: dt.datetime
    thumbnail_key: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class FileShare:
    """A channel in which a live (not deleted) message shares a file, and
    whether a given user is a member of it."""

    channel_id: int
    kind: str
    is_member: bool


@dataclass(frozen=True, slots=True)
class FileLimits:
    """A workspace's own limits; None means the server's setting."""

    max_file_bytes: int | None = None
    allowed_types: tuple[str, ...] | None = None


class AppendRejected(Exception):
    """One message of a batch was refused; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StoreUnavailable(Exception):
    """The database cannot be reached; the operation may be retried later.
    Nothing was written."""


class HubHandler(Protocol):
    """What a hub calls when something arrives.  Called on the event loop."""

    def on_message(self, topic: str, payload: bytes) -> None:
        """A payload published to ``topic`` arrived.

        Must not block: it runs on the hub's reader task.  Payloads of one
        topic arrive in the order one publisher published them; payloads from
        two publishers may interleave in any order.
        """

    def on_reset(self) -> None:
        """Delivery may have lost payloads (a connection dropped and came back).

        Every subscription is active again by the time this is called, so a
        consumer that now backfills from the database (PostgreSQL is the source
        of truth) and deduplicates by sequence number misses nothing.
        """


class Hub(Protocol):
    """Moves events between the processes of a Parley deployment.

    Contract, for every implementation:

    * Delivery is **at most once** and best-effort: a payload may be lost
      (for example while Redis restarts), never duplicated by the hub, and
      never altered.  Consumers restore order and fill gaps from PostgreSQL;
      the hub only makes the common case fast.
    * ``subscribe`` is **reference-counted** per topic within one hub
      instance: after n subscribes, n unsubscribes remove the subscription,
      and the backend is subscribed to the topic at most once.  When
      ``subscribe`` returns, every payload published to the topic afterwards
      (by any process) is delivered unless lost as above.
    * ``publish`` returns once the payload is handed to the backend; a
      process receives its own publishes to topics it is subscribed to.
    * ``publish_many`` behaves like calling ``publish`` for each item in
      order, but batches the round trips (one pipeline per call).
    * Payloads are opaque bytes; topics are short ASCII strings
      (``c:<channel id>`` for channels, ``u:<user id>`` for per-user events).
    * ``healthy`` is False while the backend is unreachable; the hub keeps
      retrying on its own and calls ``HubHandler.on_reset`` once it is back.
    """

    @property
    def healthy(self) -> bool: ...

    async def start(self, handler: HubHandler) -> None:
        """Connect and start delivering to ``handler``.  Called once."""

    async def subscribe(self, topic: str) -> None: ...

    async def unsubscribe(self, topic: str) -> None: ...

    async def publish(self, topic: str, payload: bytes) -> None: ...

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None: ...

    async def close(self) -> None:
        """Stop delivery and release connections.  Idempotent."""


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


class AccountStore(Protocol):
    """Accounts, auth sessions and connect tickets (the directory database).

    Contract: e-mail addresses are unique case-insensitively (``create_user``
    returns None for a taken one); ``consume_ticket`` is atomic and works at
    most once per ticket; a revoked session or deactivated user is never
    ``session_active``.  Connection failures raise ``StoreUnavailable``.
    """

    async def create_user(self, user_id: int, email: str, display_name: str,
                          password_hash: str) -> User | None: ...

    async def user_by_email(self, email: str) -> User | None: ...

    async def user(self, user_id: int) -> User | None: ...

    async def update_password_hash(self, user_id: int, password_hash: str) -> None: ...

    async def create_session(self, session_id: int, user_id: int) -> None: ...

    async def session_active(self, session_id: int, user_id: int) -> bool: ...

    async def revoke_session(self, session_id: int, user_id: int) -> bool: ...

    async def create_ticket(self, ticket: str, user_id: int, session_id: int, workspace_id: int,
                            ttl_s: float) -> None: ...

    async def consume_ticket(self, ticket: str) -> tuple[int, int, int] | None: ...

    async def create_refresh_token(self, token_hash: str, session_id: int, user_id: int,
                                   ttl_s: float) -> None: ...

    async def rotate_refresh_token(self, old_hash: str, new_hash: str,
                                   ttl_s: float) -> RefreshOutcome:
        """Atomically: a fresh, unused token of a live session is marked used
        and ``new_hash`` issued in its place ('rotated'); a used one revokes
        its session ('reused'); anything else is 'invalid'."""


class WorkspaceStore(Protocol):
    """Workspaces, members and channels, each on its workspace's shard.

    Contract: every method takes the workspace id and never returns data of
    another workspace (a channel id of workspace B looked up under workspace
    A is None); a channel's ``last_seq`` is the highest committed seq.
    """

    async def create_workspace(self, workspace_id: int, name: str, owner: User,
                               general_channel_id: int) -> Workspace: ...

    async def workspace(self, workspace_id: int) -> Workspace | None: ...

    async def workspaces_of(self, user_id: int) -> list[Workspace]: ...

    async def shard_of(self, workspace_id: int) -> str | None:
        """The shard holding the workspace (None: no such workspace).  May
        read the directory; a found answer is cached for ``cached_shard``."""

    def cached_shard(self, workspace_id: int) -> str | None:
        """The workspace's shard if this store already knows it, else None.

        Synchronous and cache-only: never does I/O, never raises
        ``StoreUnavailable``.  The cache is filled by ``shard_of`` and
        ``create_workspace``.  Placement never changes for a workspace, so a
        cached answer is never stale; None only means "not known yet" (call
        ``shard_of``), not "no such workspace"."""

    async def member(self, workspace_id: int, user_id: int) -> Member | None: ...

    async def add_member(self, workspace_id: int, user: User, role: str) -> Member: ...

    async def create_channel(self, channel_id: int, workspace_id: int, kind: str, name: str,
                             creator: int) -> Channel | None: ...

    async def channel(self, workspace_id: int, channel_id: int) -> Channel | None: ...

    async def is_channel_member(self, workspace_id: int, channel_id: int,
                                user_id: int) -> bool: ...

    async def join_channel(self, workspace_id: int, channel_id: int, user_id: int) -> bool: ...

    async def user_channels(self, workspace_id: int,
                            user_id: int) -> list[tuple[Channel, int]]: ...

    async def list_public_channels(self, workspace_id: int, after_id: int,
                                   limit: int) -> list[Channel]: ...

    async def history(self, workspace_id: int, channel_id: int, *, before: int | None = None,
                      after: int | None = None, limit: int = 50) -> list[Message]: ...

    # -- members and invites ------------------------------------------------

    async def members_page(self, workspace_id: int, after_user_id: int,
                           limit: int) -> list[Member]:
        """Active members by user id, keyset-paged."""

    async def set_role(self, workspace_id: int, user_id: int, role: str) -> Member | None: ...

    async def active_members_among(self, workspace_id: int,
                                   user_ids: list[int]) -> set[int]:
        """The ids in ``user_ids`` that are active members of the workspace."""

    async def end_membership(self, workspace_id: int, user_id: int,
                             reason: str) -> list[int] | None:
        """Deactivate an active membership ('left' | 'deactivated') and remove
        the user from every channel of the workspace, atomically; the removed
        channel ids, or None when the user was not an active member."""

    async def create_invite(self, invite_id: int, workspace_id: int, token_hash: str,
                            role: str, created_by: int, ttl_s: float,
                            max_uses: int | None) -> Invite: ...

    async def invites(self, workspace_id: int, after_id: int, limit: int) -> list[Invite]:
        """Usable invites (not revoked, expired or used up), by id."""

    async def invite(self, workspace_id: int, invite_id: int) -> Invite | None: ...

    async def revoke_invite(self, workspace_id: int, invite_id: int) -> bool: ...

    async def accept_invite(self, workspace_id: int, token_hash: str,
                            user: User) -> InviteOutcome:
        """Join (or rejoin after leaving) through a usable invite, atomically
        with counting the use and joining #general.  A membership an admin
        deactivated is not revived ('deactivated')."""

    # -- channel settings and membership ------------------------------------

    async def update_channel(self, workspace_id: int, channel_id: int, *,
                             name: str | None = None, topic: str | None = None,
                             purpose: str | None = None, kind: str | None = None,
                             archived: bool | None = None) -> Channel | None:
        """Apply the non-None changes; None when ``name`` is taken."""

    async def default_channel(self, workspace_id: int) -> Channel | None: ...

    async def add_channel_members(self, workspace_id: int, channel_id: int,
                                  user_ids: Sequence[int]) -> list[int]:
        """Add the active workspace members among ``user_ids``; the newly added."""

    async def remove_channel_member(self, workspace_id: int, channel_id: int,
                                    user_id: int) -> bool:
        """Remove the membership (and the user's follows and mentions there)."""

    async def channel_members_page(self, workspace_id: int, channel_id: int,
                                   after_user_id: int, limit: int) -> list[ChannelMember]: ...

    async def channel_member_ids(self, workspace_id: int, channel_id: int) -> list[int]: ...

    async def channel_member_count(self, workspace_id: int, channel_id: int) -> int: ...

    async def channel_views(self, workspace_id: int, user_id: int, *, include_public: bool,
                            after_id: int, limit: int) -> list[ChannelView]:
        """The user's channels (plus public ones with ``include_public``) by
        id, with membership, unread and mention counts."""

    async def read_state(self, workspace_id: int, channel_id: int,
                         user_id: int) -> ReadState | None: ...

    async def mark_read(self, workspace_id: int, channel_id: int, user_id: int,
                        seq: int) -> ReadState | None:
        """Set the read position (clamped to the channel's last seq); None
        when the user is not a member."""

    async def get_or_create_dm(self, channel_id: int, workspace_id: int, kind: str,
                               dm_key: str, creator: int,
                               members: Sequence[int]) -> tuple[Channel, list[int]]:
        """The one DM channel for ``dm_key`` (race-free), and the members
        newly added to it."""

    # -- messages beyond the append path ----------------------------------------

    async def message(self, workspace_id: int, message_id: int) -> Message | None: ...

    async def edit_message(self, workspace_id: int, message_id: int, text: str,
                           edited_at: dt.datetime,
                           extras: MessageExtras | None = None) -> Message | None:
        """None when missing or deleted.  With ``extras``, the message's extras
        become those (their blocks and attachments replace the old ones) in
        the same transaction."""

    async def delete_message(self, workspace_id: int,
                             message_id: int) -> tuple[Message, tuple[int, ...]] | None:
        """Tombstone (keeps the seq; empties the text; drops reactions, pin,
        mentions and the extras' blocks and attachments) atomically; the
        tombstone and the users whose mention went away, or None when missing
        or already deleted."""

    async def put_message_extras(self, workspace_id: int, channel_id: int, message_id: int,
                                 extras: MessageExtras) -> None:
        """Store a message's extras, before the message itself is appended
        (keyed by the id the caller assigned), so no reader sees the message
        without them.  Idempotent."""

    async def drop_message_extras(self, workspace_id: int, message_id: int) -> None:
        """Remove the extras stored for an append that did not happen (a
        refusal, or a retry that found the first attempt's message)."""

    async def message_extras(self, workspace_id: int,
                             message_ids: Sequence[int]) -> dict[int, MessageExtras]:
        """The extras of those messages that have any."""

    # -- Slack-compatible addressing (the Web API's ts and time bounds) -------

    async def message_at(self, workspace_id: int, channel_id: int, second: int,
                         seq_residue: int, modulus: int) -> Message | None:
        """The message of the channel with ``seq % modulus == seq_residue``
        created in the unix second ``second``: one primary-key probe per
        candidate seq (``residue + k * modulus`` up to the channel's last
        seq; one for channels of fewer than ``modulus`` messages)."""

    async def seq_at(self, workspace_id: int, channel_id: int, at: dt.datetime) -> int:
        """The first seq of the channel created at or after ``at`` (last seq
        + 1 when none): bisection over the primary key (see
        ``parley_seq_at``, migration shard/0007)."""

    async def channel_page(self, workspace_id: int, channel_id: int, *, after_seq: int,
                           before_seq: int, limit: int, newest_first: bool,
                           top_level: bool) -> list[Message]:
        """Messages with ``after_seq < seq < before_seq``, in seq order or
        newest first; with ``top_level`` only what the channel's main view
        shows (not thread replies, except those also sent to the channel).
        One index scan on the primary key."""

    async def thread_summaries(self, workspace_id: int,
                               root_ids: Sequence[int]) -> dict[int, ThreadSummary]: ...

    async def thread_replies(self, workspace_id: int, root_id: int, after_seq: int,
                             limit: int) -> list[Message]: ...

    async def follow_thread(self, workspace_id: int, channel_id: int, root_id: int,
                            user_ids: Sequence[int], *, override: bool) -> list[int]:
        """Those of ``user_ids`` newly following; ``override=False`` keeps an
        explicit unfollow."""

    async def unfollow_thread(self, workspace_id: int, channel_id: int, root_id: int,
                              user_id: int) -> bool: ...

    async def is_following(self, workspace_id: int, root_id: int, user_id: int) -> bool: ...

    async def set_mentions(self, message: Message, user_ids: Sequence[int],
                           everyone: bool) -> MentionChange:
        """Make the message's mentions the channel members among ``user_ids``
        (all members with ``everyone``), never its author; what changed."""

    async def add_reaction(self, workspace_id: int, channel_id: int, message_id: int,
                           user_id: int, emoji: str, max_distinct: int) -> str:
        """'added' | 'exists' | 'too_many' | 'gone'."""

    async def remove_reaction(self, workspace_id: int, message_id: int, user_id: int,
                              emoji: str) -> bool: ...

    async def reactions_of(self, workspace_id: int,
                           message_ids: Sequence[int]) -> list[Reaction]: ...

    async def pin(self, workspace_id: int, channel_id: int, message_id: int, user_id: int,
                  max_pins: int) -> str:
        """'pinned' | 'exists' | 'too_many' | 'gone'."""

    async def unpin(self, workspace_id: int, channel_id: int, message_id: int) -> bool: ...

    async def pins(self, workspace_id: int, channel_id: int) -> list[Pin]: ...

    async def pinned_ids(self, workspace_id: int, channel_id: int,
                         message_ids: Sequence[int]) -> set[int]: ...

    async def search(self, workspace_id: int, user_id: int, query: str, *,
                     include_public: bool, channel_id: int | None, author_id: int | None,
                     since: dt.datetime | None, until: dt.datetime | None,
                     before_id: int | None, limit: int) -> list[Message]:
        """Non-deleted messages matching ``query`` in the channels the user
        is in (plus public ones with ``include_public``), newest first."""


class FileStore(Protocol):
    """Files and their attachment to messages, on the workspace's shard.

    Contract: every method is workspace-scoped like ``WorkspaceStore``; state
    changes are atomic compare-and-set (``pending`` -> ``ready`` happens once;
    ``deleted`` is final); a deleted file keeps its ``message_files`` rows so
    its messages can show it as removed.
    """

    async def create_file(self, file: FileRecord) -> FileRecord:
        """Insert a new pending file (its ``state`` is ignored)."""

    async def file(self, workspace_id: int, file_id: int) -> FileRecord | None: ...

    async def files_by_id(self, workspace_id: int,
                          file_ids: Sequence[int]) -> list[FileRecord]: ...

    async def mark_file_ready(self, workspace_id: int, file_id: int, *, key: str, size: int,
                              content_type: str, thumbnail_key: str | None,
                              width: int | None, height: int | None) -> FileRecord | None:
        """pending -> ready with the key holding the checked bytes, their size
        and sniffed type; None when the file is not pending (completed or
        deleted meanwhile)."""

    async def mark_file_deleted(self, workspace_id: int, file_id: int, *,
                                only_pending: bool = False
                                ) -> tuple[FileRecord, list[tuple[int, int]]] | None:
        """-> deleted (only from pending with ``only_pending``); the record and
        the (channel id, message id) of live messages sharing it, or None when
        there was nothing to change."""

    async def attach_files(self, workspace_id: int, channel_id: int, message_id: int,
                           file_ids: Sequence[int], uploader_id: int) -> list[FileRecord]:
        """Attach those of ``file_ids`` that are ready and uploaded by
        ``uploader_id``, in order; idempotent.  The files attached."""

    async def message_files(self, workspace_id: int,
                            message_ids: Sequence[int]) -> dict[int, list[FileRecord]]:
        """Files of each message (deleted ones included, to show as removed)."""

    async def file_shares(self, workspace_id: int, file_id: int, user_id: int,
                          limit: int) -> list[FileShare]:
        """Channels where a live message shares the file, members' ones first."""

    async def channel_files(self, workspace_id: int, channel_id: int, before_id: int | None,
                            limit: int) -> list[FileRecord]:
        """Ready files shared by live messages of the channel, newest first."""

    async def stale_uploads(self, created_before: dt.datetime,
                            limit: int) -> list[FileRecord]:
        """Pending files created before the given time, on every shard (the
        cleanup task's scan; the only query that is not workspace-scoped)."""

    async def file_limits(self, workspace_id: int) -> FileLimits: ...

    async def set_file_limits(self, workspace_id: int, limits: FileLimits) -> FileLimits: ...


class LeaseStore(Protocol):
    """Snowflake worker-id leases: at most one live holder per id."""

    async def lease_worker_id(self, holder: str, ttl_s: float) -> int | None: ...

    async def renew_worker_id(self, worker_id: int, holder: str, ttl_s: float) -> bool: ...

    async def release_worker_id(self, worker_id: int, holder: str) -> None: ...


class Store(AccountStore, WorkspaceStore, FileStore, LeaseStore, Protocol):
    """Everything the domain reads and writes outside the message writer."""

    async def ping(self) -> bool:
        """True when every database answers and no migration is pending."""
