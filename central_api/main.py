"""The central FastAPI application, made by a factory rather than at import.

A module-level app would open ``var/central.db`` the moment anything imported this
module; a factory lets the CLI, tests and ``uvicorn --factory central_api.main:create_app``
each say which database to use.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from central_api.api import route_index
from central_api.api.admission import Admission, automatic_limit
from central_api.api.body_limit import BodyLimit
from central_api.api.credential_first import CredentialFirst
from central_api.api.errors import install_error_handlers
from central_api.api.main import api_routers
from central_api.api.metrics import CentralMetrics, MetricsMiddleware
from central_api.api.permissions import guard_routes
from central_api.api.request_id import RequestIdMiddleware
from central_api.api.routes import health
from central_api.api.routes.imports import IMPORT_PATHS
from central_api.core.config import Settings
from central_api.core.db import check_schema_current, create_db_engine
from central_api.core.principal import PrincipalScope
from central_api.errors import first_line
from central_api.services.audit import current_request_id
from central_api.services.auth import TokenSigner
from central_api.services.projections import built_in_projections
from central_api.services.push_group import PushGroup
from central_api.web import mount_console
from central_api.web.transfer import UPLOAD_PATHS as CONSOLE_UPLOAD_PATHS
from jxc import __version__
from jxc.logs import add_log_context
from jxc.paths import API_ROOT, SYNC_EVENTS

log = logging.getLogger("central_api.main")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app on ``settings`` (the environment's if omitted).

    The engine is made here and disposed when the app shuts down. The schema is checked
    at start but never changed: ``jxc central serve`` runs the migrations before it starts
    the app, and tests call :func:`~central_api.core.db.upgrade_database` themselves.
    """
    settings = settings if settings is not None else Settings()
    add_log_context(current_request_id)
    app = FastAPI(title="jxc central", version=__version__, lifespan=_lifespan)
    attach_database(app, settings)
    install_error_handlers(app)
    app.add_middleware(CredentialFirst, fastapi_app=app)
    app.add_middleware(  # added last, so it runs first: a declared size costs nothing to check
        BodyLimit,
        default_limit=settings.max_body_bytes,
        path_limits={
            SYNC_EVENTS: settings.max_push_bytes,
            **dict.fromkeys(IMPORT_PATHS, settings.max_import_bytes),
            **dict.fromkeys(CONSOLE_UPLOAD_PATHS, settings.max_import_bytes),
        },
    )
    app.state.metrics = CentralMetrics(lambda: app.state)
    # Inside RequestIdMiddleware (added after it, so it runs before): the access line
    # has the request's id.
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, fastapi_app=app)
    app.add_middleware(RequestIdMiddleware)
    # Flat, not nested, and matched through an index: docs/performance.md, "Routing
    # once, through an index" (route_index).
    route_index.include_flat(app, health.router)
    for router in api_routers:
        route_index.include_flat(app, router, API_ROOT)
    mount_console(app)
    app.add_middleware(PrincipalScope)
    guard_routes(app)
    route_index.index_dispatch(app)
    return app


def attach_database(app: FastAPI, settings: Settings) -> None:
    """Give ``app`` everything it keeps per database: the one place that makes it.

    The engine (and through it SQLite's write gate), the push group and the pushes'
    admission, the token signer
    with its cached key, the projections registry and the settings the routes read all
    live in ``app.state`` and are made here, from nothing that outlives the call. The
    routes, middleware and guards that :func:`create_app` adds around them hold no data.

    So an app already built can be pointed at another database by calling this again
    (with the engine of the old one disposed first): the test suite does, to build the
    routes once per worker rather than once per test (FastAPI builds every route's
    dependencies anew for each app, some 0.25 s here; docs/performance.md, "One app per
    worker"). Settings that shape the middleware (the body limits) are read only by
    :func:`create_app`.
    """
    engine = create_db_engine(
        settings.database_url,
        write_wait_s=settings.write_wait_s,
        busy_retry_after_s=settings.busy_retry_after_s,
        pool_timeout=settings.pool_timeout_s,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.busy_retry_after_s = settings.busy_retry_after_s
    app.state.push_group = (
        PushGroup(engine, wait_s=settings.write_wait_s, retry_after_s=settings.busy_retry_after_s)
        if engine.dialect.name == "sqlite" and settings.group_commit
        else None
    )
    app.state.push_admission = Admission(
        limit=settings.max_pushes_in_flight
        or automatic_limit(
            pool_size=settings.pool_size,
            max_overflow=settings.pool_max_overflow,
            dialect=engine.dialect.name,
        ),
        wait_s=settings.write_wait_s,
        retry_after_s=settings.busy_retry_after_s,
    )
    app.state.token_signer = TokenSigner(engine, ttl_s=settings.token_ttl_s)
    app.state.projections = built_in_projections(
        write_off_approval_value=settings.write_off_approval_value
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Check the schema at start; dispose of the app's engine (whichever it holds) at the end."""
    settings: Settings = app.state.settings
    scheduler = None
    if settings.backup_interval_h > 0 and settings.backup_dir is not None:
        from central_api.services.backup import start_backup_scheduler  # noqa: PLC0415

        scheduler = start_backup_scheduler(
            settings.database_url,
            settings.backup_dir,
            keep=settings.backup_keep,
            interval_h=settings.backup_interval_h,
        )
    webhooks = None
    monitor = None
    try:
        _refuse_stale_schema(app.state.engine)
        if settings.webhook_poll_s > 0:
            from central_api.services.webhooks import WebhookWorker  # noqa: PLC0415

            webhooks = WebhookWorker(app.state.engine, lambda: app.state.settings)
            webhooks.start()
        if settings.monitor_interval_s > 0:
            from central_api.services.monitoring import MonitorWorker  # noqa: PLC0415

            monitor = MonitorWorker(app.state.engine, lambda: app.state.settings)
            monitor.start()
        yield
    finally:
        if monitor is not None:
            await monitor.stop()
        if webhooks is not None:
            await webhooks.stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        app.state.engine.dispose()


def create_worker_app() -> FastAPI:
    """The app of one worker process of ``jxc central serve --workers N``.

    uvicorn starts each worker as a fresh process and calls this there: the settings
    come from the environment (the command line put its options there), the migrations
    were run once by the command before any worker started, and each worker sets up its
    own JSON logging and garbage-collector tuning, as the single-process server does.
    """
    import os  # noqa: PLC0415

    from central_api.core.gc_tuning import tune_for_serving  # noqa: PLC0415
    from jxc.logs import configure_logging  # noqa: PLC0415

    configure_logging(os.environ.get("JXC_LOG_LEVEL", "INFO"))
    settings = Settings()
    app = create_app(settings)
    tune_for_serving(gen0_threshold=settings.gc_gen0_threshold)
    return app


def _refuse_stale_schema(engine: Engine) -> None:
    """Fail at start on an unmigrated database, but start anyway on an unreachable one.

    A database that is down may come back, and /healthz says 503 meanwhile; a schema that
    is missing or old will not fix itself, so it is better to stop with the remedy named.
    """
    try:
        check_schema_current(engine)
    except (OperationalError, InterfaceError) as exc:
        reason = first_line(exc)
        log.warning(
            "database unreachable at start; serving 503 until it is back", extra={"reason": reason}
        )
