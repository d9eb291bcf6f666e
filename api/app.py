"""The REST API: a thin adapter from HTTP to domain actions.

Every route parses input (pydantic), calls one action, and shapes the
result; no route touches a store or the hub directly.  Errors travel as
exceptions and become the one envelope in ``api.errors``.  Routes live in
``api/routes_*.py``, one module per area; shared dependencies (identity,
rate limits) in ``api.deps``.
"""

from __future__ import annotations

from fastapi import FastAPI

from api import errors, health, routes_auth, routes_channels, routes_messages, routes_workspaces
from api.deps import ERRORS
from parley.services import Services


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="Parley API", version="1", responses=ERRORS,
                  docs_url="/docs", redoc_url=None)
    app.state.services = svc
    errors.install(app)
    app.add_middleware(errors.BodyLimit)

    app.include_router(health.router)
    for module in (routes_auth, routes_workspaces, routes_channels, routes_messages):
        app.include_router(module.router)
    return app
