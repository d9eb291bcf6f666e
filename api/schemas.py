"""Request and response bodies of the REST API (they generate /openapi.json).

Ids are decimal strings in JSON: snowflakes are 63-bit and JSON numbers lose
precision above 2**53 in most clients.  Path ids are validated as positive
64-bit integers, so a malformed id is a 4xx, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from parley.actions import validate
from storage.interfaces import Channel, Member, Message, User, Workspace

INT64_MAX = 2**63 - 1
IdPath = Annotated[int, Path(ge=1, le=INT64_MAX, description="A snowflake id")]
IdStr = Annotated[str, Field(pattern=r"^[0-9]{1,19}$", description="A snowflake id")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code")
    message: str = Field(description="Human-readable explanation")
    retryable: bool = Field(description="Whether the same request may succeed later")


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
    user: UserOut


class WorkspaceIn(Strict):
    name: str = Field(max_length=validate.NAME_MAX * 2)


class WorkspaceOut(BaseModel):
    id: IdStr
    name: str
    created_by: IdStr

    @classmethod
    def of(cls, w: Workspace) -> WorkspaceOut:
        return cls(id=str(w.id), name=w.name, created_by=str(w.created_by))


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
    last_read_seq: int | None = Field(default=None, description="Caller's read position")
    unread_count: int | None = None

    @classmethod
    def of(cls, c: Channel, last_read: int | None = None) -> ChannelOut:
        return cls(id=str(c.id), workspace_id=str(c.workspace_id), kind=c.kind, name=c.name,
                   topic=c.topic, purpose=c.purpose, archived=c.archived, last_seq=c.last_seq,
                   last_read_seq=last_read,
                   unread_count=None if last_read is None else max(0, c.last_seq - last_read))


class ChannelList(BaseModel):
    channels: list[ChannelOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


class MessageIn(Strict):
    text: str = Field(min_length=1, max_length=1_000_000)
    client_msg_id: str | None = Field(default=None, min_length=1,
                                      max_length=validate.CLIENT_MSG_ID_MAX,
                                      description="Idempotency key chosen by the client")


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

    @classmethod
    def of(cls, m: Message) -> MessageOut:
        return cls(id=str(m.id), channel_id=str(m.channel_id), seq=m.seq, user_id=str(m.user_id),
                   text=m.text, client_msg_id=m.client_msg_id,
                   thread_root_id=None if m.thread_root_id is None else str(m.thread_root_id),
                   ts=int(m.created_at.timestamp() * 1000),
                   edited_ts=int(m.edited_at.timestamp() * 1000) if m.edited_at else None,
                   deleted=m.deleted)


class MessagePage(BaseModel):
    messages: list[MessageOut] = Field(description="Oldest first")
    has_more: bool = Field(description="More messages exist in the direction paged")


class TicketOut(BaseModel):
    ticket: str
    expires_in: float = Field(description="Seconds the ticket stays valid; it works once")
    url: str = Field(description="Gateway URL to connect to with this ticket")


class HealthOut(BaseModel):
    status: str
    checks: dict[str, bool] = Field(default_factory=dict)
