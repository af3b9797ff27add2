"""Prometheus metrics of central: requests by route template, ingest, per-site sync, host.

One registry per app (not the library's global one), so the test suite's apps, and two
apps in one process, never count into each other. Per process: with ``--workers N`` or
several replicas each process is scraped on its own (docs/operations.md, "Monitoring");
counters are summed in PromQL, as Prometheus intends.

* Requests: a pure ASGI middleware (like ``request_id``) times every HTTP request and
  labels it with the route *template* (``/api/v1/items/{item_code:path}``), never the raw
  path: item codes in labels would grow the series without bound. Unmatched paths are
  ``<unmatched>``. It also writes one access line per request; its request id, like
  that of every line written while serving a request, comes from
  :func:`jxc.logs.add_log_context`.
* Ingest: the push route calls :func:`observe_push` with its outcome (events by verdict).
* Sync per site: read from ``site_sync_state`` at scrape time (the watermark and when the
  site last pushed), so every process reports the same, true figures.
* Host: CPU seconds and resident memory of the process (the library's process collector,
  from /proc), system memory available (/proc/meminfo), load, and disk free where the
  database file (SQLite) and the backups live. No psutil: /proc gives what is needed.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central_api.api.permissions import api_routes
from central_api.models.ledger import site_sync_state
from central_api.models.monitoring import site_devices, site_status
from central_api.services.backup import LAST_BACKUP
from central_api.services.monitoring import disk_paths

log = logging.getLogger("central_api.access")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Around the targets: 200 ms p50 and 2 s p99 for a user request (docs/performance.md)."""


class CentralMetrics:
    """The app's registry and the instruments the middleware and routes write to."""

    def __init__(self, state_of: Callable[[], Any]) -> None:
        """``state_of`` gives the app's current state (engine, settings): a test may point
        the app at another database after the metrics were made."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "jxc_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jxc_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingested = Counter(
            "jxc_ingest_events",
            "Events received in pushes, by verdict (accepted, duplicate, conflict, invalid).",
            ["status"],
            registry=self.registry,
        )
        self.pushes = Counter(
            "jxc_ingest_pushes", "Pushes ingested (batches answered 200).", registry=self.registry
        )
        self.busy_pushes = Counter(
            "jxc_ingest_pushes_busy",
            "Pushes answered 503 busy, nothing stored: not admitted within the write bound "
            "(admission), or not let at the write lock within it (write_lock, SQLite).",
            ["at"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(_StateCollector(state_of))

    def observe_push(self, outcome: Any) -> None:
        """Count a push's events by verdict (called by the push route with its outcome)."""
        self.pushes.inc()
        tally: dict[str, int] = {}
        for verdict in outcome.verdicts:
            status = getattr(verdict["status"], "value", str(verdict["status"]))
            tally[status] = tally.get(status, 0) + 1
        for status, count in tally.items():
            self.ingested.labels(status=status).inc(count)


class _StateCollector(Collector):
    """Figures read at scrape time: per-site sync, host memory and disk, backups."""

    def __init__(self, state_of: Callable[[], Any]) -> None:
        self._state_of = state_of

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time; nothing to declare up front

    def collect(self) -> Iterator[Metric]:
        yield from self._sites()
        yield from _host(disk_paths(self._state_of().settings))
        if "at" in LAST_BACKUP:
            last = GaugeMetricFamily(
                "jxc_backup_last_success_timestamp_seconds",
                "When this process last made a verified scheduled backup.",
            )
            last.add_metric([], float(LAST_BACKUP["at"]))
            yield last
        failures = GaugeMetricFamily(
            "jxc_backup_failures", "Scheduled backups of this process that failed."
        )
        failures.add_metric([], float(LAST_BACKUP.get("failures", 0)))
        yield failures

    def _sites(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "jxc_database_up", "1 if the database answered the scrape's query, else 0."
        )
        watermark = GaugeMetricFamily(
            "jxc_site_acked_through_seq",
            "The highest seq up to which central holds each site's ledger.",
            labels=["site"],
        )
        last_push = GaugeMetricFamily(
            "jxc_site_last_push_timestamp_seconds",
            "When each site's ledger last advanced at central (its last push with news).",
            labels=["site"],
        )
        lag = GaugeMetricFamily(
            "jxc_site_sync_lag_seconds",
            "Seconds since each site's ledger last advanced at central.",
            labels=["site"],
        )
        outbox = GaugeMetricFamily(
            "jxc_site_outbox_depth",
            "Events each site's edge last reported waiting in its outbox (POST /sync/status).",
            labels=["site"],
        )
        devices = GaugeMetricFamily(
            "jxc_site_device_state",
            "1 for each device's state as its site's edge last reported it.",
            labels=["site", "kind", "device", "state"],
        )
        engine: Engine = self._state_of().engine
        now = datetime.now(UTC)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(
                        site_sync_state.c.site_id,
                        site_sync_state.c.acked_through_seq,
                        site_sync_state.c.updated_at,
                    )
                ).all()
                reported = connection.execute(
                    select(site_status.c.site_id, site_status.c.outbox_depth)
                ).all()
                states = connection.execute(
                    select(
                        site_devices.c.site_id,
                        site_devices.c.kind,
                        site_devices.c.device_id,
                        site_devices.c.state,
                    )
                ).all()
        except SQLAlchemyError:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        for site_id, acked, updated_at in rows:
            at = updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=UTC)
            watermark.add_metric([site_id], float(acked))
            last_push.add_metric([site_id], at.timestamp())
            lag.add_metric([site_id], max(0.0, (now - at).total_seconds()))
        for site_id, depth in reported:
            outbox.add_metric([site_id], float(depth))
        for site_id, kind, device_id, state in states:
            devices.add_metric([site_id, kind, device_id, state], 1.0)
        yield from (up, watermark, last_push, lag, outbox, devices)


def _host(paths: dict[str, Path]) -> Iterator[Metric]:
    memory = GaugeMetricFamily(
        "jxc_host_memory_bytes", "The host's memory (/proc/meminfo).", labels=["kind"]
    )
    for kind, value in _meminfo().items():
        memory.add_metric([kind], float(value))
    yield memory
    load = GaugeMetricFamily("jxc_host_load1", "The host's one-minute load average.")
    load.add_metric([], os.getloadavg()[0])
    yield load
    cpus = GaugeMetricFamily("jxc_host_cpus", "CPUs this process may run on.")
    cpus.add_metric([], float(len(os.sched_getaffinity(0))))
    yield cpus
    disk = GaugeMetricFamily(
        "jxc_disk_free_bytes", "Free disk space where central keeps files.", labels=["path"]
    )
    for name, path in paths.items():
        try:
            disk.add_metric([name], float(shutil.disk_usage(path).free))
        except OSError:
            continue  # a backup directory not made yet: nothing to say about it
    yield disk


def _meminfo() -> dict[str, int]:
    wanted = {"MemTotal": "total", "MemAvailable": "available"}
    found: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as source:
            for line in source:
                key, _, rest = line.partition(":")
                if key in wanted:
                    found[wanted[key]] = int(rest.split()[0]) * 1024
    except OSError:
        pass  # not Linux: the process collector's figures are all there is
    return found


class MetricsMiddleware:
    """Times every HTTP request, counts it by route template, and writes its access line."""

    def __init__(self, app: ASGIApp, metrics: CentralMetrics, fastapi_app: FastAPI) -> None:
        self.app = app
        self.metrics = metrics
        self.fastapi_app = fastapi_app
        self._templates: dict[int, str] | None = None

    def _template(self, scope: Scope) -> str:
        """The matched route's full template (``/api/v1/items/{item_code:path}``).

        FastAPI keeps included routers as branches and puts the route as its router
        declared it (``/items/...``) in the scope; the full path of each is looked up
        once, from the app's route contexts, by the route object.
        """
        route = scope.get("route")
        if route is None:
            return "<unmatched>"
        if self._templates is None:
            self._templates = {}
            for context in api_routes(self.fastapi_app):
                self._templates.setdefault(id(context.original_route), context.path)
        return self._templates.get(id(route)) or str(getattr(route, "path", "<unnamed>"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler is answered 500 by the server

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            elapsed = time.perf_counter() - started
            route = self._template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
