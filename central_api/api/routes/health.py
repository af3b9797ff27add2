"""``/healthz``, ``/readyz`` and ``/metrics``: for load balancers, deploy checks, Prometheus.

``/healthz`` says whether the process can serve at all (the database answers); ``/readyz``
also wants the schema at this central's newest migration, so a replica started during a
rollout before ``jxc central migrate`` ran is kept out of the pool rather than answering
500s. ``/metrics`` is the Prometheus text of :mod:`central_api.api.metrics`.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from central_api.api.deps import EngineDep
from central_api.api.errors import problem
from central_api.api.permissions import PUBLIC
from central_api.core.db import SchemaNotCurrentError, check_schema_current, schema_ahead
from central_api.errors import first_line
from central_api.schemas.health import HealthOut
from jxc import __version__
from jxc.contract import CONTRACT_VERSION
from jxc.paths import HEALTH, METRICS, READY

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


@router.get(
    READY,
    dependencies=[PUBLIC],
    response_model_exclude_none=True,
    responses={
        503: {
            "model": HealthOut,
            "description": "The database cannot be reached or its schema is not current.",
        }
    },
)
def readyz(engine: EngineDep, response: Response) -> HealthOut:
    """Ready for traffic: the database answers and its schema is this central's newest."""
    health = healthz(engine, response)
    if health.status != "ok":
        return health
    try:
        ahead = schema_ahead(engine)
        if ahead:
            # A newer central migrated during a rollout: this one keeps serving (releases
            # only add to the schema, docs/operations.md "Upgrade") and says so.
            health.message = f"schema is newer than this central ({', '.join(ahead)}): upgrade it"
        else:
            check_schema_current(engine)
    except (SchemaNotCurrentError, OperationalError, InterfaceError, PoolTimeoutError) as exc:
        reason = first_line(exc)
        log.warning("readiness check failed", extra={"reason": reason})
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        health.status = "unavailable"
        health.message = reason[:1000]
    return health


@router.get(
    METRICS,
    dependencies=[PUBLIC],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        401: {"description": "A metrics token is configured and was not given."},
    },
)
def metrics(request: Request) -> Response:
    """The process's metrics in Prometheus' text format.

    Behind ``JXC_CENTRAL_METRICS_TOKEN`` when it is set (a bearer token compared in
    constant time); the figures name sites and routes, not people or amounts.
    """
    wanted = request.app.state.settings.metrics_token
    if wanted:
        offered = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), wanted.encode()):
            return problem(
                status.HTTP_401_UNAUTHORIZED,
                "metrics token missing or wrong (JXC_CENTRAL_METRICS_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
