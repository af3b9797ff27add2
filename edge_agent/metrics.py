"""Prometheus metrics of the edge agent, served on its status page at ``/metrics``.

Everything is read at scrape time from the same snapshot the status page shows
(:meth:`edge_agent.agent.EdgeAgent.status`), so ``/healthz`` and ``/metrics`` never tell
two stories: outbox depth and sync lag, dead letters, each device's state and error
counts, label jobs by state, the background jobs' failures, disk free, the site's stock
alerts by kind (:mod:`edge_agent.stock_alerts`). The process's CPU
and memory come from prometheus-client's process collector (/proc). One registry per
agent, never the library's global one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

_DEVICE_STATES = ("connected", "degraded", "disconnected")


class EdgeMetrics:
    """The agent's registry; :meth:`render` is the ``/metrics`` answer."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(_StatusCollector(status))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _gauge(
    name: str, doc: str, value: float | None, labels: dict[str, str] | None = None
) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    if value is not None:
        family.add_metric(list((labels or {}).values()), float(value))
    return family


class _StatusCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        site = {"site": str(status["site_id"])}
        ledger, sync = status["ledger"], status["sync"]
        yield _gauge(
            "jxc_edge_ledger_last_seq", "The ledger's newest seq.", ledger["last_seq"], site
        )
        yield _gauge(
            "jxc_edge_outbox_depth",
            "Events recorded here that central does not hold yet.",
            ledger["pending"],
            site,
        )
        yield _gauge(
            "jxc_edge_synced_through_seq",
            "Every seq up to here is settled with central.",
            ledger["synced_through"],
            site,
        )
        yield _gauge(
            "jxc_edge_dead_letters",
            "Events central refused, waiting for a person (jxc edge outbox dead).",
            ledger["dead_letters"],
            site,
        )
        last = sync.get("last_success_at")
        yield _gauge(
            "jxc_edge_last_push_timestamp_seconds",
            "When a push was last acknowledged by central.",
            datetime.fromisoformat(last).timestamp() if last else None,
            site,
        )
        # Lag: how long the oldest unsent event has waited is not kept; the age of the
        # last acknowledged push is, and is what matters while the outbox is not empty.
        lag = (time.time() - datetime.fromisoformat(last).timestamp()) if last else None
        yield _gauge(
            "jxc_edge_sync_lag_seconds",
            "Seconds since central last acknowledged a push (absent before the first).",
            lag if ledger["pending"] else (0.0 if last else None),
            site,
        )
        yield _gauge(
            "jxc_edge_push_failures",
            "Pushes failed in a row (0 after a success).",
            sync["consecutive_failures"],
            site,
        )
        yield _gauge(
            "jxc_edge_events_pushed",
            "Events central acknowledged since the agent started.",
            sync["events_pushed"],
            site,
        )
        yield _gauge(
            "jxc_edge_clock_skew_seconds",
            "This agent's clock minus central's, at the last push.",
            sync.get("clock_skew_s"),
            site,
        )
        yield _gauge(
            "jxc_edge_alerts", "Alerts on the status page now.", len(status["alerts"]), site
        )
        yield from _stock_alerts(status)
        yield from _devices(status)
        yield from _labels(status)
        jobs = GaugeMetricFamily(
            "jxc_edge_job_failures", "Failures of each background job since start.", labels=["job"]
        )
        for name, record in status["jobs"].items():
            jobs.add_metric([name], float(record["failures"]))
        yield jobs
        yield _gauge(
            "jxc_edge_disk_free_bytes",
            "Free space on the ledger's disk.",
            status["disk"]["free_mb"] * 1_048_576,
            site,
        )


def _devices(status: dict[str, Any]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "jxc_edge_device_state",
        "1 for each device's current state (connected, degraded, disconnected).",
        labels=["kind", "device", "state"],
    )
    errors = GaugeMetricFamily(
        "jxc_edge_device_errors",
        "Errors counted by each device's driver since start, by kind of error.",
        labels=["kind", "device", "error"],
    )
    reconnects = GaugeMetricFamily(
        "jxc_edge_device_reconnects",
        "Times each device's link was opened again since start.",
        labels=["kind", "device"],
    )
    devices = [("scanner", each) for each in status["scanners"]]
    devices += [("scale", each) for each in status["scales"]]
    devices += [("printer", each["link"]) for each in status["printers"]]
    for kind, device in devices:
        name = str(device["device_id"])
        for each in _DEVICE_STATES:
            state.add_metric([kind, name, each], 1.0 if device["state"] == each else 0.0)
        for error, count in dict(device.get("errors") or {}).items():
            errors.add_metric([kind, name, str(error)], float(count))
        reconnects.add_metric([kind, name], float(device.get("reconnects", 0)))
    yield from (state, errors, reconnects)


def _stock_alerts(status: dict[str, Any]) -> Iterator[Metric]:
    """Per kind, the stock alerts the status page shows (none while they cannot be
    computed: its ``stock_alerts.error`` says why)."""
    family = GaugeMetricFamily(
        "jxc_edge_stock_alerts",
        "Stock alerts that hold now at the site, by kind (below_safety, below_reorder,"
        " negative_stock, expiry).",
        labels=["site", "kind"],
    )
    stock = status.get("stock_alerts") or {}
    for kind, count in dict(stock.get("by_kind") or {}).items():
        family.add_metric([str(status["site_id"]), str(kind)], float(count))
    yield family
    expired = stock.get("expired_lots")
    yield _gauge(
        "jxc_edge_expired_lots",
        "Lots on hand at the site past their expiry.",
        None if expired is None else float(expired),
        {"site": str(status["site_id"])},
    )


def _labels(status: dict[str, Any]) -> Iterator[Metric]:
    labels = GaugeMetricFamily(
        "jxc_edge_label_jobs",
        "Label jobs in the ledger by printer and state (pending = owed).",
        labels=["printer", "state"],
    )
    for printer in status["printers"]:
        for state in ("pending", "printed", "delivered", "failed"):
            labels.add_metric([str(printer["id"]), state], float(printer["labels"].get(state, 0)))
    yield labels
