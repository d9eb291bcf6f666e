"""The REST API: a thin adapter from HTTP to domain actions.

Every route parses input (pydantic), calls one action, and shapes the
result; no route touches a store or the hub directly.  Errors travel as
exceptions and become the one envelope in ``api.errors``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from api import errors
from api.schemas import (
    INT64_MAX,
    ChannelIn,
    ChannelList,
    ChannelOut,
    ErrorEnvelope,
    HealthOut,
    IdPath,
    LoginIn,
    MemberIn,
    MemberOut,
    MessageIn,
    MessageOut,
    MessagePage,
    RegisterIn,
    TicketOut,
    TokenOut,
    UserOut,
    WorkspaceIn,
    WorkspaceList,
    WorkspaceOut,
)
from parley.actions import accounts, channels, messages, workspaces
from parley.auth import Identity
from parley.errors import NotFound, Unauthenticated
from parley.services import Services

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": desc}
    for status, desc in [(400, "Invalid input"), (401, "Missing, invalid or expired token"),
                         (403, "Not allowed"), (404, "Not found (or not visible to you)"),
                         (409, "Conflict"), (413, "Too large"), (429, "Rate limited"),
                         (503, "A dependency is down; retry")]
}


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


async def identity(request: Request,
                   authorization: Annotated[str | None, Header()] = None) -> Identity:
    if not authorization:
        raise Unauthenticated("missing_token", "send Authorization: Bearer <access token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("invalid_token", "use the Bearer scheme")
    return await accounts.authenticate(services(request), token.strip())


Auth = Annotated[Identity, Depends(identity)]


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="Parley API", version="1", responses=_ERRORS,
                  docs_url="/docs", redoc_url=None)
    app.state.services = svc
    errors.install(app)
    app.add_middleware(errors.BodyLimit)

    @app.get("/healthz", response_model=HealthOut, tags=["ops"])
    async def healthz() -> HealthOut:
        """The process is up."""
        return HealthOut(status="ok")

    @app.get("/readyz", response_model=HealthOut, tags=["ops"],
             responses={503: {"model": HealthOut, "description": "Not ready"}})
    async def readyz(s: Svc) -> Any:
        """Ready to serve: the databases answer and migrations are applied.
        ``checks.hub`` reports the hub; a hub outage degrades live delivery
        but does not make the API unready."""
        db_ok = await s.store.ping()
        body = HealthOut(status="ok" if db_ok else "unavailable",
                         checks={"database": db_ok, "hub": s.hub.healthy})
        return JSONResponse(body.model_dump(), status_code=200 if db_ok else 503)

    # -- accounts ---------------------------------------------------------

    @app.post("/v1/auth/register", status_code=201, response_model=UserOut, tags=["auth"])
    async def register(body: RegisterIn, s: Svc) -> UserOut:
        """Create an account."""
        return UserOut.of(await accounts.register(s, body.email, body.password, body.display_name))

    @app.post("/v1/auth/login", response_model=TokenOut, tags=["auth"])
    async def login(body: LoginIn, s: Svc) -> TokenOut:
        """Exchange e-mail and password for an access token."""
        token, exp, user = await accounts.login(s, body.email, body.password)
        return TokenOut(access_token=token, expires_at=int(exp), user=UserOut.of(user))

    @app.post("/v1/auth/logout", status_code=204, tags=["auth"])
    async def logout(me: Auth, s: Svc) -> Response:
        """End this session: its tokens stop working and its sockets close."""
        await accounts.logout(s, me)
        return Response(status_code=204)

    @app.get("/v1/me", response_model=UserOut, tags=["auth"])
    async def me_(me: Auth, s: Svc) -> UserOut:
        user = await s.store.user(me.user_id)
        if user is None:
            raise NotFound("user_not_found", "no such user")
        return UserOut.of(user)

    # -- workspaces -------------------------------------------------------

    @app.post("/v1/workspaces", status_code=201, response_model=WorkspaceOut, tags=["workspaces"])
    async def create_workspace(body: WorkspaceIn, me: Auth, s: Svc) -> WorkspaceOut:
        """Create a workspace; the caller becomes its owner and joins #general."""
        return WorkspaceOut.of(await workspaces.create_workspace(s, me, body.name))

    @app.get("/v1/workspaces", response_model=WorkspaceList, tags=["workspaces"])
    async def list_workspaces(me: Auth, s: Svc) -> WorkspaceList:
        return WorkspaceList(workspaces=[WorkspaceOut.of(w)
                                         for w in await workspaces.list_workspaces(s, me)])

    @app.post("/v1/workspaces/{workspace_id}/members", status_code=201, response_model=MemberOut,
              tags=["workspaces"])
    async def add_member(workspace_id: IdPath, body: MemberIn, me: Auth, s: Svc) -> MemberOut:
        """Add an existing account to the workspace (owners and admins)."""
        return MemberOut.of(await workspaces.add_member(s, me, workspace_id, body.email,
                                                        body.role))

    @app.post("/v1/workspaces/{workspace_id}/connect-ticket", response_model=TicketOut,
              tags=["gateway"])
    async def connect_ticket(workspace_id: IdPath, me: Auth, s: Svc) -> TicketOut:
        """A single-use ticket for a browser's WebSocket upgrade."""
        ticket, ttl = await accounts.issue_connect_ticket(s, me, workspace_id)
        url = f"ws://{s.settings.host}:{s.settings.gateway_port}/v1/connect?ticket={ticket}"
        return TicketOut(ticket=ticket, expires_in=ttl, url=url)

    # -- channels ---------------------------------------------------------

    @app.post("/v1/workspaces/{workspace_id}/channels", status_code=201,
              response_model=ChannelOut, tags=["channels"])
    async def create_channel(workspace_id: IdPath, body: ChannelIn, me: Auth,
                             s: Svc) -> ChannelOut:
        return ChannelOut.of(await channels.create_channel(s, me, workspace_id, body.name,
                                                           body.kind), 0)

    @app.get("/v1/workspaces/{workspace_id}/channels", response_model=ChannelList,
             tags=["channels"])
    async def my_channels(workspace_id: IdPath, me: Auth, s: Svc) -> ChannelList:
        """The channels the caller is in, with read positions and unread counts."""
        rows = await channels.my_channels(s, me, workspace_id)
        return ChannelList(channels=[ChannelOut.of(c, read) for c, read in rows])

    @app.get("/v1/workspaces/{workspace_id}/channels/public", response_model=ChannelList,
             tags=["channels"])
    async def public_channels(
        workspace_id: IdPath, me: Auth, s: Svc,
        cursor: Annotated[int, Query(ge=0, le=INT64_MAX, description="From next_cursor")] = 0,
        limit: Annotated[int, Query(ge=1, le=channels.LIST_PAGE_MAX)] = 100,
    ) -> ChannelList:
        """Browse the workspace's public channels, by id."""
        rows = await channels.list_public_channels(s, me, workspace_id, cursor, limit)
        nxt = str(rows[-1].id) if len(rows) == limit else None
        return ChannelList(channels=[ChannelOut.of(c) for c in rows], next_cursor=nxt)

    @app.post("/v1/workspaces/{workspace_id}/channels/{channel_id}/join",
              response_model=ChannelOut, tags=["channels"])
    async def join_channel(workspace_id: IdPath, channel_id: IdPath, me: Auth,
                           s: Svc) -> ChannelOut:
        return ChannelOut.of(await channels.join_channel(s, me, workspace_id, channel_id))

    # -- messages ---------------------------------------------------------

    @app.post("/v1/workspaces/{workspace_id}/channels/{channel_id}/messages", status_code=201,
              response_model=MessageOut, tags=["messages"])
    async def post_message(workspace_id: IdPath, channel_id: IdPath, body: MessageIn, me: Auth,
                           s: Svc) -> MessageOut:
        """Post a message; answered once it is durable.  Retrying with the same
        ``client_msg_id`` returns the same message."""
        return MessageOut.of(await messages.post_message(s, me, workspace_id, channel_id,
                                                         body.text, body.client_msg_id))

    @app.get("/v1/workspaces/{workspace_id}/channels/{channel_id}/messages",
             response_model=MessagePage, tags=["messages"])
    async def history(
        workspace_id: IdPath, channel_id: IdPath, me: Auth, s: Svc,
        before: Annotated[int | None, Query(ge=1, le=INT64_MAX,
                                            description="Messages with seq < before")] = None,
        after: Annotated[int | None, Query(ge=0, le=INT64_MAX,
                                           description="Messages with seq > after")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> MessagePage:
        """A page of history in sequence order (oldest first).  Without
        ``before``/``after``: the newest page."""
        if before is not None and after is not None:
            from parley.errors import InvalidInput

            raise InvalidInput("invalid_request", "give before or after, not both")
        page = await messages.history(s, me, workspace_id, channel_id, before=before,
                                      after=after, limit=limit + 1)
        has_more = len(page) > limit
        if has_more:
            page = page[:limit] if after is not None else page[1:]
        return MessagePage(messages=[MessageOut.of(m) for m in page], has_more=has_more)

    return app
