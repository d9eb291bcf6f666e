"""Messages: post, history, edit, delete, pins, reactions, threads, search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import Auth, Mutator, Svc
from api.params import Id, IdPath, PageSize, Seq, Timestamp
from api.schemas import (
    MessageIn,
    MessageOut,
    MessagePage,
    MessagePatch,
    PinList,
    PinOut,
    SearchOut,
    ThreadOut,
)
from parley.actions import files, messages, reactions, search
from parley.actions.validate import SEARCH_QUERY_MAX
from parley.errors import InvalidInput

router = APIRouter(tags=["messages"])
CHANNEL = "/v1/workspaces/{workspace_id}/channels/{channel_id}"
MESSAGE = CHANNEL + "/messages/{message_id}"
Emoji = Annotated[str, Path(pattern=r"^[a-z0-9_+\-]{1,64}$",
                            description="An emoji short name, e.g. `thumbsup`")]


@router.post(CHANNEL + "/messages", status_code=201, response_model=MessageOut)
async def post_message(workspace_id: IdPath, channel_id: IdPath, body: MessageIn, me: Mutator,
                       s: Svc) -> MessageOut:
    """Post a message or thread reply; answered once it is durable.  Retrying
    with the same `client_msg_id` returns the same message.  Mentions:
    `<@user_id>`, `@channel`, `@here`.  `file_ids` shares ready files you
    uploaded (then `text` may be empty); `blocks` and `attachments` are
    Slack's, kept as given (then too)."""
    root = None if body.thread_root_id is None else int(body.thread_root_id)
    file_ids = [int(f) for f in body.file_ids]
    extras = body.extras()
    msg = await messages.post_message(
        s, me, workspace_id, channel_id, body.text, body.client_msg_id, root,
        also_in_channel=body.also_in_channel, file_ids=file_ids, extras=extras)
    shared = ((await files.attachments(s, workspace_id, [msg.id])).get(msg.id, [])
              if file_ids else [])
    return MessageOut.of(msg, shared, extras)


@router.get(CHANNEL + "/messages", response_model=MessagePage)
async def history(
    workspace_id: IdPath, channel_id: IdPath, me: Auth, s: Svc,
    before: Annotated[Seq | None, Query(ge=1, description="Messages with seq < before")] = None,
    after: Annotated[Seq | None, Query(description="Messages with seq > after")] = None,
    around: Annotated[Seq | None, Query(ge=1, description="A page centred on this seq (a jump "
                                                          "to a message): up to limit/2 older "
                                                          "messages, then this seq and newer "
                                                          "ones")] = None,
    limit: Annotated[PageSize, Query(le=messages.HISTORY_PAGE_MAX,
                                     description="Page size")] = 50,
) -> MessagePage:
    """A page of history in sequence order (oldest first), thread replies
    included (they carry `thread_root_id`).  Without `before`/`after`/`around`:
    the newest page.  `has_more` says whether more messages exist in the
    direction paged (older ones for `before`, the newest page and `around`;
    newer ones for `after`).  Each page is one index scan per direction."""
    if sum(x is not None for x in (before, after, around)) > 1:
        raise InvalidInput("invalid_request", "give one of before, after or around")
    if around is not None:
        older = await messages.history(s, me, workspace_id, channel_id, before=around,
                                       after=None, limit=limit // 2 + 1)
        has_more = len(older) > limit // 2
        older = older[1:] if has_more else older
        newer = await messages.history(s, me, workspace_id, channel_id, before=None,
                                       after=around - 1, limit=limit - len(older))
        page = older + newer
    else:
        page = await messages.history(s, me, workspace_id, channel_id, before=before,
                                      after=after, limit=limit + 1)
        has_more = len(page) > limit
        if has_more:
            page = page[:limit] if after is not None else page[1:]
    views = await messages.enrich(s, workspace_id, channel_id, page)
    return MessagePage(messages=[MessageOut.view(v) for v in views], has_more=has_more)


@router.get(MESSAGE, response_model=MessageOut)
async def get_message(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath, me: Auth,
                      s: Svc) -> MessageOut:
    """One message, with its reactions, thread summary and pin."""
    return MessageOut.view(await messages.get_message(s, me, workspace_id, channel_id,
                                                      message_id))


@router.patch(MESSAGE, response_model=MessageOut)
async def edit_message(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath,
                       body: MessagePatch, me: Mutator, s: Svc) -> MessageOut:
    """Edit your message; it gets an `edited_ts`."""
    return MessageOut.of(await messages.edit_message(s, me, workspace_id, channel_id,
                                                     message_id, body.text))


@router.delete(MESSAGE, status_code=204)
async def delete_message(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath,
                         me: Mutator, s: Svc) -> Response:
    """Delete your message (staff: anyone's).  It stays as a tombstone that
    keeps its seq; deleting twice is fine."""
    await messages.delete_message(s, me, workspace_id, channel_id, message_id)
    return Response(status_code=204)


@router.put(MESSAGE + "/pin", status_code=204)
async def pin(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath, me: Mutator,
              s: Svc) -> Response:
    """Pin a message (idempotent)."""
    await messages.set_pinned(s, me, workspace_id, channel_id, message_id, True)
    return Response(status_code=204)


@router.delete(MESSAGE + "/pin", status_code=204)
async def unpin(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath, me: Mutator,
                s: Svc) -> Response:
    """Unpin a message (idempotent)."""
    await messages.set_pinned(s, me, workspace_id, channel_id, message_id, False)
    return Response(status_code=204)


@router.get(CHANNEL + "/pins", response_model=PinList)
async def list_pins(workspace_id: IdPath, channel_id: IdPath, me: Auth, s: Svc) -> PinList:
    """The channel's pinned messages."""
    return PinList(pins=[PinOut.of(p) for p in
                         await messages.list_pins(s, me, workspace_id, channel_id)])


@router.put(MESSAGE + "/reactions/{emoji}", status_code=204)
async def add_reaction(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath,
                       emoji: Emoji, me: Mutator, s: Svc) -> Response:
    """React (idempotent per user, message and emoji)."""
    await reactions.set_reaction(s, me, workspace_id, channel_id, message_id, emoji, True)
    return Response(status_code=204)


@router.delete(MESSAGE + "/reactions/{emoji}", status_code=204)
async def remove_reaction(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath,
                          emoji: Emoji, me: Mutator, s: Svc) -> Response:
    """Take your reaction back (idempotent)."""
    await reactions.set_reaction(s, me, workspace_id, channel_id, message_id, emoji, False)
    return Response(status_code=204)


@router.get(MESSAGE + "/thread", response_model=ThreadOut)
async def thread(
    workspace_id: IdPath, channel_id: IdPath, message_id: IdPath, me: Auth, s: Svc,
    after: Annotated[Seq, Query(description="Replies with seq > after")] = 0,
    limit: Annotated[PageSize, Query(le=messages.THREAD_PAGE_MAX,
                                     description="Page size")] = 50,
) -> ThreadOut:
    """A thread: its root (with reply count, latest reply and repliers) and a
    page of replies in order."""
    root, replies, following = await messages.thread(s, me, workspace_id, channel_id,
                                                     message_id, after, limit + 1)
    return ThreadOut(root=MessageOut.view(root),
                     replies=[MessageOut.view(v) for v in replies[:limit]],
                     has_more=len(replies) > limit, following=following)


@router.put(MESSAGE + "/follow", status_code=204)
async def follow(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath, me: Mutator,
                 s: Svc) -> Response:
    """Follow a thread (by its root)."""
    await messages.set_following(s, me, workspace_id, channel_id, message_id, True)
    return Response(status_code=204)


@router.delete(MESSAGE + "/follow", status_code=204)
async def unfollow(workspace_id: IdPath, channel_id: IdPath, message_id: IdPath, me: Mutator,
                   s: Svc) -> Response:
    """Unfollow a thread; replying or being mentioned in it follows it again."""
    await messages.set_following(s, me, workspace_id, channel_id, message_id, False)
    return Response(status_code=204)


@router.get("/v1/workspaces/{workspace_id}/search", response_model=SearchOut, tags=["search"])
async def search_messages(
    workspace_id: IdPath, me: Auth, s: Svc,
    q: Annotated[str, Query(min_length=1, max_length=SEARCH_QUERY_MAX,
                            description="Words; \"quoted phrases\", `or`, `-excluded`")],
    channel_id: Annotated[Id | None, Query(description="Only this channel")] = None,
    user_id: Annotated[Id | None, Query(description="Author")] = None,
    since: Annotated[Timestamp | None, Query(
        description="ISO 8601 with a time zone, inclusive (years 1 to 9999 in UTC)")] = None,
    until: Annotated[Timestamp | None, Query(
        description="ISO 8601 with a time zone, exclusive (years 1 to 9999 in UTC)")] = None,
    cursor: Annotated[Id | None, Query(description="From next_cursor")] = None,
    limit: Annotated[PageSize, Query(le=search.PAGE_MAX, description="Page size")] = 20,
) -> SearchOut:
    """Full-text search over the messages you can read, newest first."""
    hits = await search.search(s, me, workspace_id, q, channel_id=channel_id, author_id=user_id,
                               since=since, until=until, before_id=cursor, limit=limit)
    nxt = str(hits[-1].id) if len(hits) == limit else None
    return SearchOut(messages=[MessageOut.of(m) for m in hits], next_cursor=nxt)
