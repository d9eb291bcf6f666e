"""Request and response bodies of the REST API (they generate /openapi.json).

Ids are decimal strings in JSON: snowflakes are 63-bit and JSON numbers lose
precision above 2**53 in most clients.  Path and query
numbers are bounded by the shared types of ``api.params``; ids in bodies
(``IdStr``) are positive 64-bit integers too, so a malformed id is a 4xx,
never a 500.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.params import INT64_MAX, Seq
from parley import events
from parley.actions import files, rich, validate
from parley.actions.messages import MessageView
from parley.model import (
    Channel,
    ChannelMember,
    ChannelView,
    FileRecord,
    Invite,
    Member,
    Message,
    MessageExtras,
    Pin,
    ReadState,
    User,
    Workspace,
)


def _positive_int64(value: str) -> str:
    # The pattern admits 19-digit numbers above 2**63 - 1; the database does not.
    if not 0 < int(value) <= INT64_MAX:
        raise ValueError("an id is a positive 64-bit integer")
    return value


IdStr = Annotated[str, Field(pattern=r"^[0-9]{1,19}$", description="A snowflake id"),
                  AfterValidator(_positive_int64)]


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code")
    message: str = Field(description="Human-readable explanation")
    retryable: bool = Field(description="Whether the same request may succeed later")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="For invalid_request: which fields are wrong")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class RegisterIn(Strict):
    email: str = Field(max_length=validate.EMAIL_MAX)
    password: str = Field(max_length=validate.PASSWORD_MAX)
    display_name: str = Field(max_length=validate.NAME_MAX * 2)


class LoginIn(Strict):
    email: str = Field(max_length=validate.EMAIL_MAX)
    password: str = Field(max_length=validate.PASSWORD_MAX)


class UserOut(BaseModel):
    id: IdStr
    email: str
    display_name: str

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(id=str(u.id), email=u.email, display_name=u.display_name)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_at: int = Field(description="Unix seconds")
    refresh_token: str | None = Field(
        default=None, description="Single use: POST it to /v1/auth/refresh for new tokens; "
        "using it twice revokes the session")
    user: UserOut | None = None


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=256)


class WorkspaceIn(Strict):
    name: str = Field(max_length=validate.NAME_MAX * 2)


class WorkspaceOut(BaseModel):
    id: IdStr
    name: str
    created_by: IdStr
    role: str | None = Field(default=None, description="The caller's role")

    @classmethod
    def of(cls, w: Workspace, role: str | None = None) -> WorkspaceOut:
        return cls(id=str(w.id), name=w.name, created_by=str(w.created_by), role=role)


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceOut]


class MemberIn(Strict):
    email: str = Field(max_length=validate.EMAIL_MAX)
    role: Literal["admin", "member", "guest"] = "member"


class MemberOut(BaseModel):
    workspace_id: IdStr
    user_id: IdStr
    role: str
    display_name: str

    @classmethod
    def of(cls, m: Member) -> MemberOut:
        return cls(workspace_id=str(m.workspace_id), user_id=str(m.user_id), role=m.role,
                   display_name=m.display_name)


class MemberList(BaseModel):
    members: list[MemberOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


class RoleIn(Strict):
    role: Literal["admin", "member", "guest"]


class InviteIn(Strict):
    role: Literal["admin", "member", "guest"] = "member"
    ttl_s: int | None = Field(default=None, ge=60, le=30 * 24 * 3600,
                              description="Lifetime in seconds (default: the server's)")
    max_uses: int | None = Field(default=None, ge=1, le=10_000,
                                 description="Uses before it stops working (default: unlimited)")


class InviteOut(BaseModel):
    id: IdStr
    workspace_id: IdStr
    role: str
    created_by: IdStr
    created_ts: int = Field(description="Unix milliseconds")
    expires_ts: int = Field(description="Unix milliseconds")
    max_uses: int | None
    uses: int
    revoked: bool

    @classmethod
    def of(cls, i: Invite) -> InviteOut:
        return cls(id=str(i.id), workspace_id=str(i.workspace_id), role=i.role,
                   created_by=str(i.created_by), created_ts=_ms(i.created_at),
                   expires_ts=_ms(i.expires_at), max_uses=i.max_uses, uses=i.uses,
                   revoked=i.revoked)


class InviteCreatedOut(BaseModel):
    invite: InviteOut
    token: str = Field(description="The secret of the link; shown once")


class InviteList(BaseModel):
    invites: list[InviteOut]
    next_cursor: str | None = None


class AcceptInviteIn(Strict):
    token: str = Field(min_length=1, max_length=200)


class ChannelIn(Strict):
    name: str = Field(max_length=validate.NAME_MAX * 2)
    kind: Literal["public", "private"] = "public"


class ChannelOut(BaseModel):
    id: IdStr
    workspace_id: IdStr
    kind: str
    name: str | None
    topic: str
    purpose: str
    archived: bool
    last_seq: int = Field(description="Highest message sequence number in the channel")
    is_member: bool | None = Field(default=None, description="Whether the caller is in it")
    last_read_seq: int | None = Field(default=None, description="Caller's read position")
    unread_count: int | None = Field(
        default=None, description="Others' messages after the read position shown in the "
        "channel (not deleted; thread replies only if also sent to the channel)")
    mention_count: int | None = Field(default=None,
                                      description="Mentions of the caller after the read position")

    @classmethod
    def of(cls, c: Channel, last_read: int | None = None) -> ChannelOut:
        return cls(id=str(c.id), workspace_id=str(c.workspace_id), kind=c.kind, name=c.name,
                   topic=c.topic, purpose=c.purpose, archived=c.archived, last_seq=c.last_seq,
                   last_read_seq=last_read)

    @classmethod
    def view(cls, v: ChannelView) -> ChannelOut:
        out = cls.of(v.channel, v.last_read_seq)
        out.is_member = v.is_member
        out.unread_count = v.unread_count
        out.mention_count = v.mention_count
        return out


class ChannelPatch(Strict):
    name: str | None = Field(default=None, max_length=validate.NAME_MAX * 2)
    topic: str | None = Field(default=None, max_length=1000)
    purpose: str | None = Field(default=None, max_length=1000)


class UserIdsIn(Strict):
    user_ids: list[IdStr] = Field(min_length=1, max_length=100)


class AddedOut(BaseModel):
    added: list[IdStr] = Field(description="Users newly added (the others were members)")


class DmIn(Strict):
    user_ids: list[IdStr] = Field(max_length=16, description="The others (you are implied)")


class ChannelMemberOut(BaseModel):
    user_id: IdStr
    display_name: str
    role: str

    @classmethod
    def of(cls, m: ChannelMember) -> ChannelMemberOut:
        return cls(user_id=str(m.user_id), display_name=m.display_name, role=m.role)


class ChannelMemberList(BaseModel):
    members: list[ChannelMemberOut]
    next_cursor: str | None = None


class ReadIn(Strict):
    seq: Seq | None = Field(default=None, description="Read up to this seq (default: the newest)")


class ReadStateOut(BaseModel):
    channel_id: IdStr
    last_read_seq: int
    unread_count: int
    mention_count: int

    @classmethod
    def of(cls, r: ReadState) -> ReadStateOut:
        return cls(channel_id=str(r.channel_id), last_read_seq=r.last_read_seq,
                   unread_count=r.unread_count, mention_count=r.mention_count)


class ChannelList(BaseModel):
    channels: list[ChannelOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


class MessageIn(Strict):
    text: str = Field(default="", max_length=1_000_000,
                      description="May be empty only when `file_ids` is not")
    client_msg_id: str | None = Field(default=None, min_length=1,
                                      max_length=validate.CLIENT_MSG_ID_MAX,
                                      description="Idempotency key chosen by the client")
    thread_root_id: IdStr | None = Field(default=None, description="Reply in this thread")
    also_in_channel: bool = Field(default=False,
                                  description="A reply also shown in the channel")
    file_ids: list[IdStr] = Field(
        default_factory=list, max_length=files.FILES_PER_MESSAGE,
        description="Ready files you uploaded to this workspace, shared with the message")
    blocks: list[dict[str, Any]] | None = Field(
        default=None, max_length=rich.MAX_BLOCKS,
        description="Slack Block Kit blocks, stored and returned as given (text may then be "
                    "empty)")
    attachments: list[dict[str, Any]] | None = Field(
        default=None, max_length=rich.MAX_ATTACHMENTS,
        description="Slack message attachments, stored and returned as given")

    def extras(self) -> MessageExtras | None:
        """The blocks and attachments, validated (``parley.actions.rich``)."""
        b, a = rich.blocks(self.blocks), rich.attachments(self.attachments)
        return None if b is None and a is None else MessageExtras(blocks=b, attachments=a)


class MessagePatch(Strict):
    text: str = Field(min_length=1, max_length=1_000_000)


class ReactionOut(BaseModel):
    emoji: str
    count: int
    user_ids: list[IdStr]


class FileOut(BaseModel):
    """A file (the same fields as in events).  A deleted one keeps only its
    ids, `created_ts` and `state` `deleted`: show it as removed."""

    id: IdStr
    workspace_id: IdStr
    user_id: IdStr = Field(description="The uploader")
    name: str = Field(description="As the uploader named it (display only)")
    size: int = Field(description="Bytes (declared while pending)")
    content_type: str | None = Field(
        description="Sniffed from the bytes when the upload completed; never the uploader's "
                    "claim (null while pending)")
    state: Literal["pending", "ready", "deleted"]
    created_ts: int = Field(description="Unix milliseconds")
    width: int | None = Field(default=None, description="Images: pixels")
    height: int | None = None
    has_thumbnail: bool = False
    url: str | None = Field(default=None, description="Download path (ready files)")
    thumbnail_url: str | None = None

    @classmethod
    def of(cls, f: FileRecord) -> FileOut:
        # One shape for REST and events: built from the event data.
        return cls.model_validate(events.jsonable(events.file_data(f)))


class UploadIn(Strict):
    name: str = Field(min_length=1, max_length=files.NAME_MAX * 4)
    size: int = Field(ge=1, le=INT64_MAX, description="Exact size in bytes")
    content_type: str = Field(default="application/octet-stream", max_length=255,
                              description="What you claim; checked against the allowed "
                                          "types now, and the sniffed type on completion")


class UploadTicketOut(BaseModel):
    method: Literal["POST", "PUT"] = Field(
        description="POST: a multipart form with `fields` first, then the file as `file`; "
                    "PUT: the raw bytes as the body, with `headers`")
    url: str
    fields: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    expires_ts: int = Field(description="Unix milliseconds")


class UploadOut(BaseModel):
    file: FileOut
    upload: UploadTicketOut = Field(description="Upload straight to storage, then complete")
    content_url: str = Field(description="Or PUT the raw bytes here (through the API, with "
                                         "your token); that completes the upload too")
    complete_url: str


class FileList(BaseModel):
    files: list[FileOut] = Field(description="Newest first")
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for older files")


class FileLimitsIn(Strict):
    max_file_bytes: int | None = Field(default=None, ge=1, le=INT64_MAX,
                                       description="null: the server's limit")
    allowed_types: list[str] | None = Field(
        default=None, max_length=files.ALLOWED_TYPES_MAX,
        description="MIME types or patterns (`image/*`, `*`); null: the server's list")


class FileLimitsOut(BaseModel):
    max_file_bytes: int = Field(description="The effective limit (the smaller of the two)")
    server_allowed_types: list[str]
    workspace_max_file_bytes: int | None
    workspace_allowed_types: list[str] | None = Field(
        description="A type must be allowed by both lists")

    @classmethod
    def of(cls, lim: files.EffectiveLimits) -> FileLimitsOut:
        ws = lim.workspace
        return cls(max_file_bytes=lim.max_file_bytes, server_allowed_types=list(lim.server_types),
                   workspace_max_file_bytes=ws.max_file_bytes,
                   workspace_allowed_types=None if ws.allowed_types is None
                   else list(ws.allowed_types))


class MessageOut(BaseModel):
    id: IdStr
    channel_id: IdStr
    seq: int
    user_id: IdStr
    text: str
    client_msg_id: str | None
    thread_root_id: IdStr | None
    ts: int = Field(description="Server time, unix milliseconds")
    edited_ts: int | None
    deleted: bool
    also_in_channel: bool = False
    reactions: list[ReactionOut] = Field(default_factory=list)
    reply_count: int = Field(default=0, description="Thread roots: non-deleted replies")
    latest_reply_ts: int | None = None
    replier_ids: list[IdStr] = Field(default_factory=list)
    pinned: bool = False
    files: list[FileOut] = Field(default_factory=list,
                                 description="Shared files in order; a deleted one has "
                                             "state `deleted`")
    blocks: list[dict[str, Any]] | None = Field(default=None,
                                                description="Slack blocks, as posted")
    attachments: list[dict[str, Any]] | None = Field(default=None,
                                                     description="Slack attachments, as posted")
    bot_id: IdStr | None = Field(default=None, description="The app's bot that posted it")
    app_id: IdStr | None = Field(default=None, description="The app that posted it")
    subtype: str | None = Field(default=None,
                                description="`bot_message` for incoming-webhook posts")

    @classmethod
    def of(cls, m: Message, shared: Sequence[FileRecord] = (),
           extras: MessageExtras | None = None) -> MessageOut:
        x = extras
        return cls(id=str(m.id), channel_id=str(m.channel_id), seq=m.seq, user_id=str(m.user_id),
                   text=m.text, client_msg_id=m.client_msg_id,
                   thread_root_id=None if m.thread_root_id is None else str(m.thread_root_id),
                   ts=int(m.created_at.timestamp() * 1000),
                   edited_ts=int(m.edited_at.timestamp() * 1000) if m.edited_at else None,
                   deleted=m.deleted, also_in_channel=m.also_in_channel,
                   files=[] if m.deleted else [FileOut.of(f) for f in shared],
                   blocks=rich.parsed(x.blocks) if x else None,
                   attachments=rich.parsed(x.attachments) if x else None,
                   bot_id=str(x.bot_id) if x and x.bot_id is not None else None,
                   app_id=str(x.app_id) if x and x.app_id is not None else None,
                   subtype=x.subtype if x else None)

    @classmethod
    def view(cls, v: MessageView) -> MessageOut:
        out = cls.of(v.message, v.files, v.extras)
        out.reactions = [ReactionOut(emoji=r.emoji, count=len(r.user_ids),
                                     user_ids=[str(u) for u in r.user_ids]) for r in v.reactions]
        if v.thread is not None:
            out.reply_count = v.thread.reply_count
            out.latest_reply_ts = (None if v.thread.latest_reply_at is None
                                   else _ms(v.thread.latest_reply_at))
            out.replier_ids = [str(u) for u in v.thread.replier_ids]
        out.pinned = v.pinned
        return out


class MessagePage(BaseModel):
    messages: list[MessageOut] = Field(description="Oldest first")
    has_more: bool = Field(description="More messages exist in the direction paged")


class ThreadOut(BaseModel):
    root: MessageOut
    replies: list[MessageOut] = Field(description="In seq order")
    has_more: bool
    following: bool = Field(description="Whether the caller follows the thread")


class PinOut(BaseModel):
    message: MessageOut
    pinned_by: IdStr
    pinned_ts: int

    @classmethod
    def of(cls, p: Pin) -> PinOut:
        return cls(message=MessageOut.of(p.message), pinned_by=str(p.pinned_by),
                   pinned_ts=_ms(p.pinned_at))


class PinList(BaseModel):
    pins: list[PinOut] = Field(description="Most recently pinned first")


class SearchOut(BaseModel):
    messages: list[MessageOut] = Field(description="Newest first")
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for older hits")


class TicketOut(BaseModel):
    ticket: str
    expires_in: float = Field(description="Seconds the ticket stays valid; it works once")
    url: str = Field(description="Gateway URL to connect to with this ticket")


class HealthOut(BaseModel):
    status: str
    checks: dict[str, bool] = Field(default_factory=dict)
