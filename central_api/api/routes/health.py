"""``/healthz``: is this process able to serve, for load balancers and deploy checks."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from central_api.api.deps import EngineDep
from central_api.api.permissions import PUBLIC
from central_api.errors import first_line
from central_api.schemas.health import HealthOut
from jxc import __version__
from jxc.contract import CONTRACT_VERSION
from jxc.paths import HEALTH

log = logging.getLogger("central_api.api.health")

router = APIRouter(tags=["health"])


@router.get(
    HEALTH,
    dependencies=[PUBLIC],
    response_model_exclude_none=True,
    responses={503: {"model": HealthOut, "description": "The database cannot be reached."}},
)
def healthz(engine: EngineDep, response: Response) -> HealthOut:
    """Answer ok only if the database answers too: central without it can do nothing."""
    health = HealthOut(
        status="ok",
        database=engine.dialect.name,
        version=__version__,
        contract_version=CONTRACT_VERSION,
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
        reason = first_line(exc)
        log.warning("health check failed", extra={"reason": reason})
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        health.status = "unavailable"
        health.message = f"database unreachable: {reason}"[:1000]
    return health
