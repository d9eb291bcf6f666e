"""The REST API: a thin adapter from HTTP to domain actions.

Every route parses input (pydantic), calls one action, and shapes the
result; no route touches a store or the hub directly.  Errors travel as
exceptions and become the one envelope in ``api.errors``.  Routes live in
``api/routes_*.py``, one module per area; shared dependencies (identity,
rate limits) in ``api.deps``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api import errors, routes_auth, routes_channels, routes_messages, routes_workspaces
from api.deps import ERRORS, Svc
from api.schemas import HealthOut
from parley.services import Services


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(title="Parley API", version="1", responses=ERRORS,
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

    for module in (routes_auth, routes_workspaces, routes_channels, routes_messages):
        app.include_router(module.router)
    return app
