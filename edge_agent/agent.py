"""The edge agent process: devices feed stations, stations write the ledger, jobs sync it.

Device I/O runs in one thread per device, the push job in APScheduler's thread, and the
status page in its own: the ledger's single writer connection (guarded by its lock) is the
only thing they share. A failing device or an unreachable central never stops the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import ValidationError

from device_drivers.printers import LabelPrinter
from device_drivers.registry import open_printer, open_scale, open_scanner
from device_drivers.scales import Scale
from device_drivers.scanners import Scan, Scanner
from device_drivers.status import Device
from edge_agent.auth import SiteTokenAuth, check_secret, read_secret
from edge_agent.backup import backup_ledger
from edge_agent.catalog import Catalog, Puller
from edge_agent.config import SiteConfig
from edge_agent.jobs import JobHealth, describe_error, job_alerts
from edge_agent.ledger import SCHEMA_VERSION, DiskSpaceError, Ledger, LedgerError
from edge_agent.metrics import EdgeMetrics
from edge_agent.reporting import StatusReporter, build_report
from edge_agent.stations.counter import CounterStation
from edge_agent.stations.counts import CountStation, CountUploader
from edge_agent.stations.errors import ChoiceNeededError, StationError
from edge_agent.stations.labels import LabelSpooler
from edge_agent.stations.picking import PickingStation
from edge_agent.stations.receiving import ReceivingStation
from edge_agent.stations.returns import ReturnsStation
from edge_agent.stations.sscc import SsccConfig
from edge_agent.stations.transfers import TransferStation
from edge_agent.status_page import StatusServer
from edge_agent.stock_alerts import StockAlerts
from edge_agent.sync import Pusher
from edge_agent.transport import central_client, central_tls
from jxc import __version__
from jxc.contract import SiteStatusReport
from jxc.discovery import (
    CENTRAL_TYPE,
    EDGE_TYPE,
    Advertisement,
    CentralFinder,
    discovery_enabled,
)

log = logging.getLogger("edge_agent")

SCAN_POLL_S = 0.25

SECRET_ENV = "JXC_SITE_SECRET"  # noqa: S105 (a variable name)


def site_auth(config: SiteConfig) -> SiteTokenAuth | None:
    """The site's token auth from ``JXC_SITE_SECRET`` or ``[central] site_secret_file``.

    Without either the agent still runs, records and serves its status page (a site must
    keep working while its credential is being sorted out); central then refuses its
    pushes, and the status page says so. A secret that is there but cannot be used, for
    whatever reason, is a :class:`SiteSecretError` saying why, without the secret.
    """
    from_env = os.environ.get(SECRET_ENV, "").strip()
    secret_file = config.central.site_secret_file
    if from_env:
        return SiteTokenAuth(config.site.id, check_secret(from_env, SECRET_ENV))
    if secret_file is not None:
        return SiteTokenAuth(
            config.site.id, read_secret(secret_file), reload=partial(read_secret, secret_file)
        )
    log.warning(
        "no site secret configured; central will refuse this site's sync",
        extra={"site": config.site.id, "remedy": "set [central] site_secret_file"},
    )
    return None


class UnbookedScans:
    """Scans the ledger refused for lack of disk space, until each is scanned again.

    Such a scan is gone (nothing of it was written), so the operator must scan the carton
    again once space is freed. A later booking of the same code settles one of them; the
    ones still owed keep the status page's alert up.
    """

    def __init__(self, *, remember: int = 1000) -> None:
        self.refused = 0
        self.last_refused_at: datetime | None = None
        self._owed: Counter[str] = Counter()
        self._remember = remember
        self._lock = threading.Lock()

    def refuse(self, code: str) -> None:
        with self._lock:
            self.refused += 1
            self.last_refused_at = datetime.now(UTC)
            if code in self._owed or len(self._owed) < self._remember:
                self._owed[code] += 1

    def booked(self, code: str) -> None:
        with self._lock:
            if self._owed[code] > 1:
                self._owed[code] -= 1
            else:
                self._owed.pop(code, None)

    def as_dict(self) -> dict[str, Any]:
        """Counts and the codes refused and not booked since (one entry per refused scan)."""
        with self._lock:
            owed = sorted(self._owed.elements())
            last = self.last_refused_at
            return {
                "refused": self.refused,
                "last_refused_at": last.isoformat() if last else None,
                "to_scan_again": owed[:50],
                "to_scan_again_count": len(owed),
            }


class EdgeAgent:
    """Everything one site runs, started and stopped as a unit."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.started_at = datetime.now(UTC)
        self.auth = site_auth(config)  # before anything is opened: a bad secret leaks nothing
        tls = central_tls(config)  # likewise a CA bundle or client key that cannot be used
        self.ledger = Ledger(
            config.ledger.path,
            site_id=config.site.id,
            free_disk_reserve=config.ledger.free_disk_reserve_mb * 1024 * 1024,
        )
        # When an agent last worked this ledger: what the scanners sent since was not read.
        self.previous_agent_seen_at = self.ledger.agent_seen_at()
        self.jobs = JobHealth()
        self.catalog = Catalog(self.ledger)
        self.stock_alerts = StockAlerts(self.ledger)
        self.station = ReceivingStation(
            self.ledger,
            self.catalog,
            location=config.receiving.location,
            uom=config.receiving.uom,
            unknown_barcodes=config.receiving.unknown_barcodes,
            weigh_timeout_s=config.receiving.weigh_timeout_s,
            purchase_orders=config.receiving.purchase_orders,
            quarantine_location=config.receiving.quarantine,
            supplier=config.receiving.supplier,
        )
        # One picking station per picking scanner: each is one picker with a pick list
        # and a location of their own; they share the ledger, so they see each other's
        # picks, and the SSCC counter, whose serials the ledger's transactions hand out.
        self.pickers: dict[str, PickingStation] = {}
        if config.picking.company_prefix is not None:
            identity = SsccConfig(config.picking.extension_digit, config.picking.company_prefix)
            self.pickers = {
                scanner_id: PickingStation(
                    self.ledger,
                    self.catalog,
                    identity,
                    label_printer=config.picking.printer,
                    later_expiry=config.picking.later_expiry,
                )
                for scanner_id in config.picking.scanners
            }
        # Without [central] url the client gets its base URL when discovery finds central
        # (``_use_central``); until then push and pull wait (``_when_central_known``).
        self.central_url: str | None = (
            None if config.central.url is None else str(config.central.url).rstrip("/")
        )
        self.finder: CentralFinder | None = None
        self.announcement: Advertisement | None = None
        # One counter station per till scanner (its own basket); they share the ledger and
        # so the site's gapless receipt counter.
        self.tills: dict[str, CounterStation] = {
            scanner_id: CounterStation(
                self.ledger,
                self.catalog,
                location=config.counter.location,
                prices=config.counter.prices,
            )
            for scanner_id in config.counter.scanners
        }
        # One transfer station per transfer scanner (its own transfer and location).
        self.transfer_stations: dict[str, TransferStation] = {
            scanner_id: TransferStation(
                self.ledger, self.catalog, later_expiry=config.transfers.later_expiry
            )
            for scanner_id in config.transfers.scanners
        }
        # One returns station per returns scanner (its own return and QTY).
        self.return_stations: dict[str, ReturnsStation] = {
            scanner_id: ReturnsStation(
                self.ledger,
                self.catalog,
                location=config.returns.location,
                over=config.returns.over,
            )
            for scanner_id in config.returns.scanners
        }
        # One count station per count scanner (its own session, location and counter).
        self.count_stations: dict[str, CountStation] = {
            scanner_id: CountStation(self.ledger, self.catalog)
            for scanner_id in config.counts.scanners
        }
        # Every request to central goes through this one client: HTTPS with the site's CA
        # bundle here is HTTPS with it for push, pull, tokens and a discovered central.
        self.client = central_client(
            config, base_url=self.central_url or "", auth=self.auth, verify=tls
        )
        self.pusher = Pusher(
            self.ledger,
            self.client,
            batch_size=config.sync.batch_size,
            max_batch_bytes=config.sync.max_batch_bytes,
            max_backoff_s=config.sync.max_backoff_s,
            lease_ttl_s=config.sync.lease_ttl_s,
            max_clock_skew_s=config.sync.max_clock_skew_s,
        )
        self.puller = Puller(
            self.catalog,
            self.client,
            site_id=config.site.id,
            max_backoff_s=config.sync.max_backoff_s,
        )
        self.reporter = StatusReporter(self.client, self._status_report)
        self.count_uploader = CountUploader(self.ledger, self.client)
        self.scanners: list[Scanner] = []
        self.scales: dict[str, Scale] = {}
        self.printers: dict[str, LabelPrinter] = {}
        try:
            self._open_devices(config)
        except Exception:
            self._close_devices()  # a later device's bad config must not leak earlier ports
            self.client.close()
            self.ledger.close()
            raise
        self.station.scale = self.scales[config.receiving.scale] if config.receiving.scale else None
        self.station.label_printer = config.receiving.printer
        # Only the agent holding the sender lease prints: a standby agent on the same
        # ledger would otherwise print every owed label a second time.
        self.spoolers = [
            LabelSpooler(
                self.ledger,
                printer,
                printer_id,
                may_print=lambda: self.pusher.state.is_sender,
                jobs=self.jobs,
            )
            for printer_id, printer in self.printers.items()
        ]
        self.rejected_scans = 0
        self.unbooked = UnbookedScans()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self.metrics = EdgeMetrics(self.status)
        self.status_server = StatusServer(
            config.status.host,
            config.status.port,
            self.status,
            ready=self.ready,
            metrics=self.metrics.render,
        )

    def _open_devices(self, config: SiteConfig) -> None:
        for device in config.devices.scanners:
            self.scanners.append(open_scanner(device.driver, device.id, device.options))
        for device in config.devices.scales:
            self.scales[device.id] = open_scale(device.driver, device.id, device.options)
        for device in config.devices.printers:
            options = dict(device.options)
            if device.driver == "zpl":
                # Print-once across restarts needs the driver's journal on disk: next to
                # the ledger unless the site file says where.
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device.id)
                default = config.ledger.path.with_name(f"printer-{safe}.journal")
                options.setdefault("journal_path", str(default))
            self.printers[device.id] = open_printer(device.driver, device.id, options)

    def _close_devices(self) -> None:
        devices: list[Device] = [
            *self.scanners,
            *self.scales.values(),
            *self.printers.values(),
        ]
        for device in devices:
            try:
                device.close()
            except Exception:  # closing one must not keep the others open
                log.exception("device failed to close")

    def start(self) -> None:
        for scanner in self.scanners:
            thread = threading.Thread(
                target=self._read_scans, args=(scanner,), name=f"scanner-{id(scanner)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for spooler in self.spoolers:
            thread = threading.Thread(
                target=spooler.run,
                args=(self._stop,),
                name=f"labels-{spooler.printer_id}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        # Every scheduled job goes through the same guard: a crash is an alert, not a
        # traceback in the scheduler's log.
        self._scheduler.add_job(
            self.jobs.guard("push", self._when_central_known(self.pusher.run)),
            "interval",
            seconds=self.config.sync.push_interval_s,
            id="push",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.config.sync.push_interval_s * 5)),
            next_run_time=datetime.now(UTC),
        )
        self._scheduler.add_job(
            self.jobs.guard("pull", self._when_central_known(self.puller.run)),
            "interval",
            seconds=self.config.sync.pull_interval_s,
            id="pull",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.config.sync.pull_interval_s * 5)),
            next_run_time=datetime.now(UTC),
        )
        # Count entries are not events: their own upload, as often as the push.
        self._scheduler.add_job(
            self.jobs.guard("counts", self._when_central_known(self.count_uploader.run)),
            "interval",
            seconds=self.config.sync.push_interval_s,
            id="counts",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.config.sync.push_interval_s * 5)),
            next_run_time=datetime.now(UTC),
        )
        report_s = self.config.sync.status_interval_s
        if report_s > 0:
            self._scheduler.add_job(
                self.jobs.guard("report", self._when_central_known(self.reporter.run)),
                "interval",
                seconds=report_s,
                id="report",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(report_s)),
                next_run_time=datetime.now(UTC),
            )
        idle_s = self.config.ledger.idle_checkpoint_s
        self._scheduler.add_job(
            self.jobs.guard("checkpoint", partial(self.ledger.checkpoint_if_idle, idle_s)),
            "interval",
            seconds=idle_s,
            id="checkpoint",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(idle_s)),
        )
        if self.config.backup.interval_h > 0:
            interval_s = self.config.backup.interval_h * 3600
            self._scheduler.add_job(
                self.jobs.guard("backup", partial(backup_ledger, self.config)),
                "interval",
                seconds=interval_s,
                id="backup",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval_s / 2)),
            )
        self._scheduler.start()
        self.status_server.start()
        self._start_discovery()
        log.info(
            "edge agent started",
            extra={
                "site": self.config.site.id,
                "ledger": str(self.ledger.path),
                "central": self.central_url or f"looking for {CENTRAL_TYPE}",
                "status_url": self.status_server.url,
                **self._previous_run(),
            },
        )

    def _start_discovery(self) -> None:
        """Announce the agent and, without a configured URL, look for central.

        Both are best-effort: an agent on a box without multicast still records and
        serves its status page; it then syncs only once ``[central] url`` is set.
        """
        if not discovery_enabled():
            if self.central_url is None:
                log.warning(
                    "no [central] url and discovery is off: nothing is sent to central",
                    extra={"site": self.config.site.id, "remedy": "set [central] url"},
                )
            return
        if self.config.discovery.advertise:
            self.announcement = Advertisement(
                EDGE_TYPE,
                f"jxc edge {self.config.site.id}",
                self.status_server.port,
                bind_host=self.config.status.host,
                properties={
                    "site": self.config.site.id,
                    "name": self.config.site.name,
                    "path": "/healthz",
                    "version": __version__,
                },
            ).start()
        if self.central_url is None:
            try:
                self.finder = CentralFinder(on_found=self._use_central)
            except OSError as exc:
                log.warning(
                    "cannot look for central on the network",
                    extra={"error": str(exc), "remedy": "set [central] url"},
                )

    def _use_central(self, url: str) -> None:
        """Point the sync at the central discovery found (its first, see CentralFinder)."""
        self.client.base_url = httpx.URL(url)
        self.central_url = url

    def _central_from(self) -> str:
        if self.config.central.url is not None:
            return "site file"
        return "discovery" if self.central_url is not None else "not found yet"

    def _when_central_known(self, job: Callable[[], object]) -> Callable[[], None]:
        """``job``, skipped while no central is known (discovery still looking)."""

        def run() -> None:
            if self.central_url is not None:
                job()

        return run

    def _previous_run(self) -> dict[str, Any]:
        """When an agent last worked this ledger, and how long before this start that was.

        Scans sent in that gap were not read by any agent; what the scanner's port still
        held at open is counted by the driver (``stale_input``), the rest is lost on the
        wire, so the gap is what the operator can check against the dock's work.
        """
        seen = self.previous_agent_seen_at
        if seen is None:
            return {"previous_agent_seen_at": None, "gap_s": None}
        gap = (self.started_at - seen).total_seconds()
        return {"previous_agent_seen_at": seen.isoformat(), "gap_s": round(max(gap, 0.0), 1)}

    def _station_for(self, device_id: str) -> Callable[[Scan], object]:
        """The station a scanner belongs to (picking, till, transfers, counts, returns),
        else the receiving station."""
        stations: Mapping[str, Any]
        for stations in (
            self.pickers,
            self.tills,
            self.transfer_stations,
            self.count_stations,
            self.return_stations,
        ):
            station = stations.get(device_id)
            if station is not None:
                return station.on_scan
        return self.station.on_scan

    def _read_scans(self, scanner: Scanner) -> None:
        job = f"scanner {scanner.status().device_id}"
        while not self._stop.is_set():
            # A driver must not raise from read_scan; if one does, the loop must not die
            # with it (nothing would read that scanner again): count it, wait, go on.
            try:
                scan = scanner.read_scan(timeout=SCAN_POLL_S)
            except Exception as exc:
                self.jobs.failed(job, exc)
                self._stop.wait(1.0)
                continue
            self.jobs.succeeded(job)
            if scan is None:
                continue
            try:
                self._station_for(scan.device_id)(scan)
            except DiskSpaceError as exc:
                # Nothing of the scan was written and the scanner will not send it again:
                # the carton must be scanned again once space is freed. Say so, count it,
                # and keep it on the status page until that code is booked.
                self.rejected_scans += 1
                self.unbooked.refuse(scan.data)
                log.error(
                    "scan NOT booked: the agent's disk is below its free-space reserve; "
                    "free space, then scan this carton again",
                    extra={
                        "event": "scan_refused_disk",
                        "device": scan.device_id,
                        "data": scan.data[:80],
                        "reason": str(exc),
                        "refused_for_disk": self.unbooked.refused,
                    },
                )
            except ChoiceNeededError as exc:
                # Not a refusal: the carton waits for the operator's pick (the next scan).
                log.info(
                    "several open PO lines match: waiting for the operator's pick",
                    extra={"device": scan.device_id, "choices": str(exc)},
                )
            except (ValidationError, StationError, LedgerError) as exc:
                # The scan was read fine but cannot be a movement (e.g. a code too long to
                # be an item, no stable weight): count it and tell the log, never record
                # half of it.
                self.rejected_scans += 1
                log.warning(
                    "scan refused by the receiving station",
                    extra={
                        "device": scan.device_id,
                        "data": scan.data[:80],
                        "reason": describe_error(exc),
                    },
                )
            except Exception:
                # Anything else (the ledger locked by another process past its timeout, a
                # bug): the scan is not booked, and the scanner thread must live on.
                self.rejected_scans += 1
                log.exception(
                    "scan not booked", extra={"device": scan.device_id, "data": scan.data[:80]}
                )
            else:
                self.unbooked.booked(scan.data)

    def stop(self) -> None:
        self._stop.set()
        self._scheduler.shutdown(wait=True)
        with contextlib.suppress(LedgerError, sqlite3.Error):
            self.pusher.release()
        # Devices first: closing them wakes threads blocked in a weighing or a print job,
        # so those finish before the ledger they write to is closed.
        self._close_devices()
        for thread in self._threads:
            thread.join(timeout=35)
        if self.finder is not None:
            self.finder.close()
        if self.announcement is not None:
            self.announcement.close()
        self.status_server.stop()
        self.client.close()
        self.ledger.close()
        log.info("edge agent stopped", extra={"site": self.config.site.id})

    def wait(self) -> None:
        self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    def _status_report(self, now: datetime) -> SiteStatusReport:
        """What central is told every ``status_interval_s``: the outbox and the devices."""
        counts = self.ledger.counts()
        devices = [("scanner", s.status().as_dict()) for s in self.scanners]
        devices += [("scale", scale.status().as_dict()) for scale in self.scales.values()]
        devices += [("printer", p.status().as_dict()) for p in self.printers.values()]
        return build_report(
            self.config.site.id,
            outbox_depth=counts.pending,
            dead_letters=counts.dead,
            devices=devices,
            now=now,
        )

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready: the ledger answers a read and is at this agent's schema version.

        Central being unreachable does not make the agent unready: it records and queues
        regardless, which is the point of the edge.
        """
        try:
            with self.ledger.reading() as conn:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            return False, {"status": "unavailable", "detail": f"ledger unreadable: {exc}"}
        if version != SCHEMA_VERSION:
            return False, {
                "status": "unavailable",
                "detail": f"ledger schema {version}, this agent needs {SCHEMA_VERSION}",
            }
        return True, {"status": "ok", "site_id": self.config.site.id, "schema": version}

    def status(self) -> dict[str, Any]:
        counts = self.ledger.counts()
        alerts = list(self.pusher.state.alerts)
        if self.auth is not None and self.auth.secret_problem:
            alerts.append(
                f"the site secret file cannot be used: {self.auth.secret_problem}; central "
                "refuses the secret this agent holds, so nothing is sent until the file holds "
                "the site's current secret (every event is kept)"
            )
        jobs = self.jobs.as_dict()
        alerts.extend(job_alerts(jobs))
        refusals = self.unbooked.as_dict()  # one snapshot for the alert and the counts
        if owed := refusals["to_scan_again_count"]:
            codes = refusals["to_scan_again"]
            alerts.append(
                f"{owed} scan(s) NOT booked because the agent's disk is below its "
                "free-space reserve: free space, then scan these cartons again: "
                + ", ".join(codes[:10])
                + (" ..." if owed > 10 else "")
            )
        if counts.dead:
            alerts.append(
                f"{counts.dead} event(s) refused by central wait as dead letters: "
                "see `jxc edge outbox dead`, fix the cause, then `jxc edge outbox requeue`"
            )
        return {
            "status": "ok",
            "version": __version__,
            "site_id": self.config.site.id,
            "started_at": self.started_at.isoformat(),
            "central": self.central_url,
            "central_from": self._central_from(),
            "ledger": {
                "path": str(self.ledger.path),
                "last_seq": counts.last_seq,
                "pending": counts.pending,
                "synced_through": counts.synced_through,
                "dead_letters": counts.dead,
            },
            "previous_run": self._previous_run(),
            "sync": self.pusher.state.as_dict(),
            "credential": self.auth.as_dict() if self.auth is not None else None,
            "master_data": self.puller.as_dict(),
            "count_entries": self.count_uploader.as_dict(),
            "scanners": [s.status().as_dict() for s in self.scanners],
            "scales": [scale.status().as_dict() for scale in self.scales.values()],
            "printers": [
                {
                    "id": spooler.printer_id,
                    "link": spooler.printer.status().as_dict(),
                    # By state in the ledger (pending = owed), and since this start.
                    "labels": self.ledger.label_counts(spooler.printer_id),
                    "spooler": spooler.state.as_dict(),
                }
                for spooler in self.spoolers
            ],
            "weighings": {
                "stable": self.station.weighings,
                "failed": self.station.failed_weighings,
            },
            "rejected_scans": self.rejected_scans,
            "disk": {
                "free_mb": shutil.disk_usage(self.ledger.path.parent).free // 1_048_576,
                "reserve_mb": self.config.ledger.free_disk_reserve_mb,
                "scans_refused": refusals,
            },
            "jobs": jobs,
            "receiving": self.station.receiving_report()
            if self.config.receiving.purchase_orders
            else None,
            "picking": {scanner: picker.report() for scanner, picker in self.pickers.items()}
            or None,
            "counter": {scanner: till.report() for scanner, till in self.tills.items()} or None,
            "transfers": {
                scanner: station.report() for scanner, station in self.transfer_stations.items()
            }
            or None,
            "counts": {
                scanner: station.report() for scanner, station in self.count_stations.items()
            }
            or None,
            "returns": {
                scanner: station.report() for scanner, station in self.return_stations.items()
            }
            or None,
            "unknown_scans": self.station.unknown_scans,
            "misread_scans": self.station.misread_scans,
            "alerts": alerts,
            "stock_alerts": self._stock_alerts(),
        }

    def _stock_alerts(self) -> dict[str, Any]:
        """The site's stock alerts from its own ledger and feed cache (no central needed);
        a failure here is shown, never a reason for the rest of the page not to answer."""
        try:
            return self.stock_alerts.report()
        except Exception as exc:
            log.exception("stock alerts failed")
            return {"error": describe_error(exc), "count": None, "by_kind": {}, "alerts": []}
