"""The REST API: a thin adapter from HTTP to domain actions.

Every route parses input (pydantic), calls one action, and shapes the
result; no route touches a store or the hub directly.  Errors travel as
exceptions and become the one envelope in ``api.errors``.  Routes live in
``api/routes_*.py``, one module per area; shared dependencies (identity,
rate limits) in ``api.deps``.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api import (
    errors,
    health,
    routes_apps,
    routes_auth,
    routes_channels,
    routes_commands,
    routes_files,
    routes_interactions,
    routes_messages,
    routes_workspaces,
)
from api.deps import ERRORS
from api.openapi import exact_openapi
from api.slack import routes as slack_routes
from parley.services import Services


class _BodyLimitExceptUploads:
    """``errors.BodyLimit`` for every request but the streamed uploads
    (``routes_files.STREAMED_PATHS``, and the Web API's upload URLs,
    ``slack_routes.STREAMED_POSTS``), which bound their bodies by the file's
    declared size while streaming."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limited = errors.BodyLimit(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope.get("method"), scope.get("path", "")
        if scope["type"] == "http" and (
                (method == "PUT" and routes_files.STREAMED_PATHS.match(path))
                or (method == "POST" and slack_routes.STREAMED_POSTS.match(path))):
            await self.app(scope, receive, send)
        else:
            await self.limited(scope, receive, send)


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="Parley API", version="1", responses=ERRORS,
                  docs_url="/docs", redoc_url=None)
    app.state.services = svc
    app.openapi = exact_openapi(app)  # type: ignore[method-assign]
    errors.install(app)
    app.add_middleware(_BodyLimitExceptUploads)

    app.include_router(health.router)
    for module in (routes_auth, routes_workspaces, routes_channels, routes_messages,
                   routes_files, routes_apps, routes_commands, routes_interactions):
        app.include_router(module.router)
    slack_routes.install(app)  # last: its catch-all answers unknown_method
    return app
