"""Liveness and readiness, shared by the full API and by gateway-only
processes (``parley gateway`` serves just these on its health port)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from api import errors
from api.deps import Svc
from api.schemas import HealthOut
from parley.services import Services

router = APIRouter(tags=["ops"])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "Not ready"}})
async def readyz(s: Svc) -> Any:
    """Ready to serve: the databases answer and migrations are applied.
    ``checks.hub`` reports the hub; a hub outage degrades live delivery (the
    gateway backfills from PostgreSQL when it returns) but does not make the
    process unready."""
    db_ok = await s.store.health.ping()
    body = HealthOut(status="ok" if db_ok else "unavailable",
                     checks={"database": db_ok, "hub": s.hub.healthy})
    return JSONResponse(body.model_dump(), status_code=200 if db_ok else 503)


def create_health_app(svc: Services) -> FastAPI:
    app = FastAPI(title="Parley health", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.services = svc
    errors.install(app)
    app.include_router(router)
    return app
