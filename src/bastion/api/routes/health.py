"""Liveness and readiness. No authentication: they reveal nothing but up/down."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

import bastion
from bastion.api.deps import PlatformDep
from bastion.core.errors import BastionError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok", "version": bastion.__version__}


@router.get("/readyz", response_model=None)
def readyz(platform: PlatformDep) -> dict[str, str] | JSONResponse:
    """The database answers and its schema is current."""
    try:
        platform.database.check_current()
    except BastionError as error:
        return JSONResponse(
            {"status": "unavailable", "error": {"code": error.code, "message": error.message}},
            status_code=503,
        )
    return {"status": "ready"}
