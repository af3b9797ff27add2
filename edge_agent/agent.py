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
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import ValidationError

from device_drivers.printers import LabelPrinter
from device_drivers.registry import open_printer, open_scale, open_scanner
from device_drivers.scales import Scale
from device_drivers.scanners import Scanner
from edge_agent.auth import SiteSecretError, SiteTokenAuth, read_secret
from edge_agent.catalog import Catalog, Puller
from edge_agent.config import SiteConfig
from edge_agent.ledger import Ledger, LedgerError
from edge_agent.stations.labels import LabelSpooler
from edge_agent.stations.receiving import ReceivingStation
from edge_agent.status_page import StatusServer
from edge_agent.sync import Pusher
from jxc import __version__

log = logging.getLogger("edge_agent")

SCAN_POLL_S = 0.25

SECRET_ENV = "JXC_SITE_SECRET"  # noqa: S105 (a variable name)


def site_auth(config: SiteConfig) -> SiteTokenAuth | None:
    """The site's token auth from ``JXC_SITE_SECRET`` or ``[central] site_secret_file``.

    Without either the agent still runs, records and serves its status page (a site must
    keep working while its credential is being sorted out); central then refuses its
    pushes, and the status page says so.
    """
    secret = os.environ.get(SECRET_ENV)
    secret_file = config.central.site_secret_file
    reload: Callable[[], str] | None = None
    if not secret and secret_file is not None:
        secret = read_secret(secret_file)
        reload = partial(read_secret, secret_file)
    if not secret:
        log.warning(
            "no site secret configured; central will refuse this site's sync",
            extra={"site": config.site.id, "remedy": "set [central] site_secret_file"},
        )
        return None
    try:
        return SiteTokenAuth(config.site.id, secret, reload=reload)
    except ValidationError:
        source = SECRET_ENV if os.environ.get(SECRET_ENV) else config.central.site_secret_file
        raise SiteSecretError(
            f"{source}: not a site secret (43+ URL-safe characters, as "
            "`jxc central site add` makes them)"
        ) from None


class EdgeAgent:
    """Everything one site runs, started and stopped as a unit."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.started_at = datetime.now(UTC)
        self.auth = site_auth(config)  # before anything is opened: a bad secret leaks nothing
        self.ledger = Ledger(
            config.ledger.path,
            site_id=config.site.id,
            free_disk_reserve=config.ledger.free_disk_reserve_mb * 1024 * 1024,
        )
        self.catalog = Catalog(self.ledger)
        self.station = ReceivingStation(
            self.ledger,
            self.catalog,
            location=config.receiving.location,
            uom=config.receiving.uom,
            unknown_barcodes=config.receiving.unknown_barcodes,
            weigh_timeout_s=config.receiving.weigh_timeout_s,
        )
        self.client = httpx.Client(
            base_url=str(config.central.url).rstrip("/"),
            timeout=config.central.timeout_s,
            auth=self.auth,
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
                self.ledger, printer, printer_id, may_print=lambda: self.pusher.state.is_sender
            )
            for printer_id, printer in self.printers.items()
        ]
        self.rejected_scans = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self.status_server = StatusServer(config.status.host, config.status.port, self.status)

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
        devices: list[Scanner | Scale | LabelPrinter] = [
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
        self._scheduler.add_job(
            self.pusher.run,
            "interval",
            seconds=self.config.sync.push_interval_s,
            id="push",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.config.sync.push_interval_s * 5)),
            next_run_time=datetime.now(UTC),
        )
        self._scheduler.add_job(
            self.puller.run,
            "interval",
            seconds=self.config.sync.pull_interval_s,
            id="pull",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.config.sync.pull_interval_s * 5)),
            next_run_time=datetime.now(UTC),
        )
        idle_s = self.config.ledger.idle_checkpoint_s
        self._scheduler.add_job(
            self.ledger.checkpoint_if_idle,
            "interval",
            args=(idle_s,),
            seconds=idle_s,
            id="checkpoint",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(idle_s)),
        )
        self._scheduler.start()
        self.status_server.start()
        log.info(
            "edge agent started",
            extra={
                "site": self.config.site.id,
                "ledger": str(self.ledger.path),
                "central": str(self.config.central.url),
                "status_url": self.status_server.url,
            },
        )

    def _read_scans(self, scanner: Scanner) -> None:
        while not self._stop.is_set():
            scan = scanner.read_scan(timeout=SCAN_POLL_S)
            if scan is None:
                continue
            try:
                self.station.on_scan(scan)
            except (ValidationError, LedgerError) as exc:
                # The scan was read fine but cannot be a movement (e.g. a code too long to
                # be an item, no stable weight): count it and tell the log, never record
                # half of it.
                self.rejected_scans += 1
                log.warning(
                    "scan refused by the receiving station",
                    extra={"device": scan.device_id, "data": scan.data[:80], "reason": str(exc)},
                )
            except Exception:
                # Anything else (the ledger locked by another process past its timeout, a
                # bug): the scan is not booked, and the scanner thread must live on.
                self.rejected_scans += 1
                log.exception(
                    "scan not booked", extra={"device": scan.device_id, "data": scan.data[:80]}
                )

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
        self.status_server.stop()
        self.client.close()
        self.ledger.close()
        log.info("edge agent stopped", extra={"site": self.config.site.id})

    def wait(self) -> None:
        self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    def status(self) -> dict[str, Any]:
        counts = self.ledger.counts()
        alerts = list(self.pusher.state.alerts)
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
            "central": str(self.config.central.url),
            "ledger": {
                "path": str(self.ledger.path),
                "last_seq": counts.last_seq,
                "pending": counts.pending,
                "synced_through": counts.synced_through,
                "dead_letters": counts.dead,
            },
            "sync": self.pusher.state.as_dict(),
            "master_data": self.puller.as_dict(),
            "scanners": [s.status().as_dict() for s in self.scanners],
            "scales": [scale.status().as_dict() for scale in self.scales.values()],
            "printers": [
                {
                    "id": spooler.printer_id,
                    "link": _link_health(spooler.printer),
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
            "unknown_scans": self.station.unknown_scans,
            "misread_scans": self.station.misread_scans,
            "alerts": alerts,
        }


def _link_health(printer: LabelPrinter) -> dict[str, Any] | None:
    """The driver's link state without asking the printer.

    ``status()`` queries the printer (up to its reply timeout); the status page must not
    wait on a printer, so it shows what the driver already knows, if the driver keeps it.
    """
    health = getattr(printer, "health", None)
    if not callable(health):
        return None
    known = health()
    return cast(dict[str, Any], known.as_dict()) if hasattr(known, "as_dict") else None
