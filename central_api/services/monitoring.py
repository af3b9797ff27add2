"""Operations thresholds that raise alerts into the console's inbox: a site whose sync
lags, an edge whose outbox grows, a device that stays down, central's disk filling up.

Where the figures come from
---------------------------
* **Sync lag** of a site: minutes since central last heard that the site is in step —
  its last push that moved its ledger (``site_sync_state.updated_at``), or its last
  status report saying nothing waits in its outbox, whichever is later. A shop that
  records nothing at night but reports an empty outbox does not lag; an edge that is
  off, or cannot reach central, does.
* **Outbox depth** and **device states**: the edge's own status report,
  ``POST /api/v1/sync/status`` (:class:`jxc.contract.SiteStatusReport`), kept in
  ``site_status`` and ``site_devices`` by :func:`record_status`. A device's ``since_at``
  is when central first heard it in its current state, so "down for 5 minutes" is
  measured on central's clock.
* **Disk free** where central keeps files: the SQLite database's directory and the
  backup directory (on PostgreSQL the database's disk is the database server's, watched
  there).

Raising and clearing
--------------------
:func:`evaluate` is given the moment to judge by (``now``), the thresholds and the disk
figures, so a test calls it with fixed values and no sleeping. It works out the set of
conditions that hold, compares it with the uncleared ``source = 'ops'`` alerts, and
raises what is new and clears what ended — nothing else: a condition that goes on is one
alert however often it is checked, and when it ends and comes back that is a new alert
(the history stays), as for the stock alerts (``docs/replenishment.md``). When nothing
changed, the check ends after its reads without taking a write lock.

Each raise and clear is recorded in the audit log (``alert.raise`` / ``alert.clear``, in
the transaction that makes it), which is how alerts reach the outbound webhooks: their
worker fans audit entries out (``docs/integrations.md``). Several central processes may
check at once: the write re-reads the alerts under a lock (SQLite's write lock, a
PostgreSQL advisory lock) and a partial unique index (``ix_alerts_active_ops``) refuses
a second uncleared alert for one key besides.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlalchemy.engine import make_url

from central_api.core.config import Settings
from central_api.core.db import write_transaction
from central_api.models.ledger import site_sync_state
from central_api.models.monitoring import site_devices, site_status
from central_api.models.replenishment import alerts
from central_api.models.stock import NO_LOT
from central_api.services import alerts as alert_service
from central_api.services.audit import AuditContext, record, system_context
from central_api.services.documents import now_utc, site_conditions, utc
from central_api.services.feed import read_snapshot
from jxc.contract import SiteStatusReport

log = logging.getLogger("central_api.monitoring")

OPS = "ops"
"""The ``alerts.source`` of the alerts raised here."""
CENTRAL = ""
"""The ``site_id`` of an alert about central itself (its disk): no site's user sees it."""
_LOCK_KEY = 0x6A78_6F70  # "jxop": the PostgreSQL advisory lock of the check's write
DISCONNECTED = "disconnected"


class OpsKind(StrEnum):
    SYNC_LAG = "sync_lag"
    OUTBOX_DEPTH = "outbox_depth"
    DEVICE_DOWN = "device_down"
    DISK_LOW = "disk_low"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The limits the check compares with; from the settings (``JXC_CENTRAL_ALERT_*``)."""

    sync_lag_min: int = 60
    outbox_depth: int = 1000
    device_down_min: int = 5
    disk_free_percent: Decimal = Decimal(10)

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        return cls(
            sync_lag_min=settings.alert_sync_lag_min,
            outbox_depth=settings.alert_outbox_depth,
            device_down_min=settings.alert_device_down_min,
            disk_free_percent=settings.alert_disk_free_percent,
        )


# --- what the edges report --------------------------------------------------------------


def record_status(
    connection: Connection, report: SiteStatusReport, *, received_at: datetime
) -> bool:
    """Keep ``report`` as the site's latest, unless a later one arrived first (a report
    delayed on the network must not bring back a state that is over). A device whose
    state changed starts its ``since_at`` now; one the report no longer names is
    forgotten (taken out of the site file). True if the report was kept."""
    site_id = report.site_id
    with write_transaction(connection):
        held = connection.execute(
            select(site_status.c.reported_at)
            .where(site_status.c.site_id == site_id)
            .with_for_update()
        ).scalar_one_or_none()
        if held is not None and (utc(held) or held) > report.reported_at:
            return False
        values = {
            "reported_at": report.reported_at,
            "received_at": received_at,
            "outbox_depth": report.outbox_depth,
            "dead_letters": report.dead_letters,
        }
        if held is None:
            connection.execute(insert(site_status).values(site_id=site_id, **values))
        else:
            connection.execute(
                update(site_status).where(site_status.c.site_id == site_id).values(**values)
            )
        known = {
            row.device_id: row.state
            for row in connection.execute(
                select(site_devices.c.device_id, site_devices.c.state).where(
                    site_devices.c.site_id == site_id
                )
            )
        }
        for device in report.devices:
            common = {
                "kind": device.kind,
                "state": device.state,
                "last_error": device.last_error,
                "reported_at": report.reported_at,
            }
            if device.device_id not in known:
                connection.execute(
                    insert(site_devices).values(
                        site_id=site_id,
                        device_id=device.device_id,
                        since_at=received_at,
                        **common,
                    )
                )
                continue
            if known[device.device_id] != device.state:
                common["since_at"] = received_at
            connection.execute(
                update(site_devices)
                .where(
                    site_devices.c.site_id == site_id,
                    site_devices.c.device_id == device.device_id,
                )
                .values(**common)
            )
        gone = set(known) - {device.device_id for device in report.devices}
        if gone:
            connection.execute(
                delete(site_devices).where(
                    site_devices.c.site_id == site_id, site_devices.c.device_id.in_(sorted(gone))
                )
            )
    return True


# --- the figures ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    site_id: str
    device_id: str
    kind: str
    state: str
    since_at: datetime
    last_error: str | None
    minutes: int
    """How long it has been in this state (central's clock)."""


@dataclass(frozen=True, slots=True)
class SiteHealth:
    site_id: str
    last_push_at: datetime | None
    reported_at: datetime | None
    """When central received the site's latest status report (None: it never sent one)."""
    outbox_depth: int | None
    dead_letters: int | None
    heard_at: datetime
    """The later of the last push and the last report of an empty outbox."""
    lag_minutes: int
    devices: list[DeviceHealth] = field(default_factory=list)

    @property
    def devices_down(self) -> list[DeviceHealth]:
        return [device for device in self.devices if device.state == DISCONNECTED]


def _minutes(now: datetime, since: datetime) -> int:
    return max(int((now - since).total_seconds() // 60), 0)


def site_health(
    connection: Connection, *, now: datetime, visible: frozenset[str] | None = None
) -> list[SiteHealth]:
    """Every site with an edge (it pushed or reported), the longest silent first."""
    with read_snapshot(connection):
        pushed = {
            row.site_id: utc(row.updated_at)
            for row in connection.execute(
                select(site_sync_state.c.site_id, site_sync_state.c.updated_at).where(
                    *site_conditions(site_sync_state.c.site_id, None, visible)
                )
            )
        }
        reports = {
            row.site_id: row
            for row in connection.execute(
                select(site_status).where(*site_conditions(site_status.c.site_id, None, visible))
            )
        }
        devices: dict[str, list[DeviceHealth]] = {}
        for row in connection.execute(
            select(site_devices)
            .where(*site_conditions(site_devices.c.site_id, None, visible))
            .order_by(site_devices.c.site_id, site_devices.c.device_id)
        ):
            since = utc(row.since_at) or row.since_at
            devices.setdefault(row.site_id, []).append(
                DeviceHealth(
                    site_id=row.site_id,
                    device_id=row.device_id,
                    kind=row.kind,
                    state=row.state,
                    since_at=since,
                    last_error=row.last_error,
                    minutes=_minutes(now, since),
                )
            )
    found: list[SiteHealth] = []
    for site_id in sorted(set(pushed) | set(reports)):
        report = reports.get(site_id)
        received = None if report is None else utc(report.received_at)
        empty_at = received if report is not None and report.outbox_depth == 0 else None
        in_step = [moment for moment in (pushed.get(site_id), empty_at) if moment is not None]
        # A site that reports a backlog but never pushed: measured from its report.
        heard = max(in_step) if in_step else received or now
        found.append(
            SiteHealth(
                site_id=site_id,
                last_push_at=pushed.get(site_id),
                reported_at=received,
                outbox_depth=None if report is None else int(report.outbox_depth),
                dead_letters=None if report is None else int(report.dead_letters),
                heard_at=heard,
                lag_minutes=_minutes(now, heard),
                devices=devices.get(site_id, []),
            )
        )
    found.sort(key=lambda site: (-site.lag_minutes, site.site_id))
    return found


def disk_paths(settings: Settings) -> dict[str, Path]:
    """Where central keeps files on its own disks (as ``/metrics`` reports them)."""
    paths: dict[str, Path] = {}
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        paths["database"] = Path(url.database).resolve().parent
    if settings.backup_dir is not None:
        paths["backups"] = Path(settings.backup_dir)
    return paths


def disk_free_percent(paths: Mapping[str, Path]) -> dict[str, Decimal]:
    """Free space of each path's file system in percent (one decimal); a path that does
    not exist yet (a backup directory not made) is left out."""
    found: dict[str, Decimal] = {}
    for name, path in paths.items():
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        if usage.total > 0:
            found[name] = (Decimal(usage.free) * 100 / Decimal(usage.total)).quantize(
                Decimal("0.1")
            )
    return found


# --- the check --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """One threshold crossed: what the alert row will say."""

    kind: str
    site_id: str
    subject: str
    """The device id, or ``database``/``backups`` for the disk; empty for a site."""
    value: Decimal
    threshold: Decimal
    detail: str
    since_at: datetime | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.site_id, self.subject)


def conditions(
    health: list[SiteHealth], disk: Mapping[str, Decimal], thresholds: Thresholds
) -> dict[tuple[str, str, str], Condition]:
    """The conditions that hold for these figures."""
    found: list[Condition] = []
    for site in health:
        if site.lag_minutes >= thresholds.sync_lag_min:
            found.append(
                Condition(
                    OpsKind.SYNC_LAG.value,
                    site.site_id,
                    "",
                    Decimal(site.lag_minutes),
                    Decimal(thresholds.sync_lag_min),
                    f"not heard for {site.lag_minutes} minutes (limit {thresholds.sync_lag_min})",
                    site.heard_at,
                )
            )
        if site.outbox_depth is not None and site.outbox_depth > thresholds.outbox_depth:
            found.append(
                Condition(
                    OpsKind.OUTBOX_DEPTH.value,
                    site.site_id,
                    "",
                    Decimal(site.outbox_depth),
                    Decimal(thresholds.outbox_depth),
                    f"{site.outbox_depth} events wait in the edge's outbox "
                    f"(limit {thresholds.outbox_depth})",
                    site.reported_at,
                )
            )
        for device in site.devices_down:
            if device.minutes >= thresholds.device_down_min:
                found.append(
                    Condition(
                        OpsKind.DEVICE_DOWN.value,
                        site.site_id,
                        device.device_id,
                        Decimal(device.minutes),
                        Decimal(thresholds.device_down_min),
                        f"{device.kind} {device.device_id} disconnected for {device.minutes} "
                        f"minutes" + (f": {device.last_error}" if device.last_error else ""),
                        device.since_at,
                    )
                )
    if thresholds.disk_free_percent > 0:
        for name, free in sorted(disk.items()):
            if free < thresholds.disk_free_percent:
                found.append(
                    Condition(
                        OpsKind.DISK_LOW.value,
                        CENTRAL,
                        name,
                        free,
                        thresholds.disk_free_percent,
                        f"{free} % free where central keeps its {name} "
                        f"(limit {thresholds.disk_free_percent} %)",
                        None,
                    )
                )
    return {condition.key: condition for condition in found}


def _held(connection: Connection) -> dict[tuple[str, str, str], int]:
    return {
        (row.kind, row.site_id, row.location): row.alert_id
        for row in connection.execute(
            select(alerts.c.alert_id, alerts.c.kind, alerts.c.site_id, alerts.c.location).where(
                alerts.c.source == OPS, alerts.c.cleared_at.is_(None)
            )
        )
    }


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    raised: list[int]
    cleared: list[int]


def evaluate(
    connection: Connection,
    *,
    now: datetime,
    thresholds: Thresholds,
    disk: Mapping[str, Decimal],
    audit: AuditContext | None = None,
) -> CheckOutcome:
    """Raise the alerts of the conditions that hold at ``now`` and are not raised yet,
    clear those whose condition ended; the ids of each. Idempotent: called again with
    the same figures it changes nothing (and writes nothing)."""
    wanted = conditions(site_health(connection, now=now), disk, thresholds)
    with read_snapshot(connection):
        held = _held(connection)
    if set(held) == set(wanted):
        return CheckOutcome([], [])
    audit = audit or system_context("monitor")
    raised: list[int] = []
    with write_transaction(connection):
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        held = _held(connection)  # again, under the lock: another process may have been first
        cleared = sorted(alert_id for key, alert_id in held.items() if key not in wanted)
        if cleared:
            connection.execute(
                update(alerts)
                .where(alerts.c.alert_id.in_(cleared), alerts.c.cleared_at.is_(None))
                .values(
                    cleared_at=now,
                    status=func.coalesce(func.nullif(alerts.c.status, "open"), "cleared"),
                    version=alerts.c.version + 1,
                    updated_at=now,
                )
            )
        for key in sorted(set(wanted) - set(held)):
            condition = wanted[key]
            alert_id = connection.execute(
                insert(alerts)
                .values(
                    kind=condition.kind,
                    source=OPS,
                    source_id="/".join(part for part in key[1:] if part) or condition.kind,
                    site_id=condition.site_id,
                    item_code="",
                    location=condition.subject,
                    lot=NO_LOT,
                    qty=condition.value,
                    threshold=condition.threshold,
                    detail=condition.detail[:1000],
                    since_at=condition.since_at,
                    raised_at=now,
                    status="open",
                    version=1,
                    updated_at=now,
                )
                .returning(alerts.c.alert_id)
            ).scalar_one()
            raised.append(int(alert_id))
            record(
                connection,
                audit,
                action="alert.raise",
                resource="alert",
                resource_id=str(alert_id),
                site_id=condition.site_id or None,
                after=_event(condition),
            )
        for key, alert_id in sorted(held.items(), key=lambda pair: pair[1]):
            if alert_id in cleared:
                record(
                    connection,
                    audit,
                    action="alert.clear",
                    resource="alert",
                    resource_id=str(alert_id),
                    site_id=key[1] or None,
                    after={"kind": key[0], "subject": key[2] or None, "status": "cleared"},
                )
    return CheckOutcome(raised, cleared)


def _event(condition: Condition) -> dict[str, Any]:
    """What the audit entry (and so a webhook's payload) says of a raised alert."""
    return {
        "kind": condition.kind,
        "site_id": condition.site_id or None,
        "subject": condition.subject or None,
        "measured": condition.value,
        "limit": condition.threshold,
        "detail": condition.detail,
        "since_at": condition.since_at,
        "status": "open",
    }


def run_check(engine: Engine, settings: Settings, *, now: datetime | None = None) -> CheckOutcome:
    """One check with the settings' thresholds and this host's disks."""
    with engine.connect() as connection:
        return evaluate(
            connection,
            now=now or now_utc(),
            thresholds=Thresholds.of(settings),
            disk=disk_free_percent(disk_paths(settings)),
        )


def run_pending_settling(engine: Engine) -> list[str]:
    """Valuation's re-valuations a crash left pending (a lagging (site, item), a
    transfer's cost to carry), settled: the sites. Normally none: the push that recorded
    them settles them right after it answers (``docs/valuation.md``, "A long tail")."""
    from central_api.services import valuation  # noqa: PLC0415 - valuation imports much

    return valuation.settle_pending(engine)


def run_daily_expiry(engine: Engine, *, today: date) -> alert_service.ExpiryOutcome:
    """The day's expiry evaluation (30/60/90-day bands move with the calendar, not with
    events), as the ``alert.evaluate_expiry`` command run by central itself: audited as
    the system, no idempotency key (a second run the same day raises and clears nothing)."""
    with engine.connect() as connection:
        return alert_service.run_expiry_evaluation(
            connection,
            today=today,
            site_id=None,
            visible=None,
            audit=system_context("daily-expiry-evaluation"),
        )


def run_daily_snapshots(engine: Engine) -> int:
    """The stock snapshots of the month start just due at every site that has not had
    them (``services.snapshots``): rows written, none but on a month's first day or so.
    Each site's in a transaction holding its lock, as a push does; several processes
    running it write each month once (the second finds the run recorded)."""
    from central_api.services import snapshots  # noqa: PLC0415

    return snapshots.write_due(engine)


T = TypeVar("T")


class MonitorWorker:
    """Runs :func:`run_check` every ``monitor_interval_s`` in a worker thread, as the
    webhooks' worker runs its passes (an asyncio task of the app's lifespan, so no
    request waits on it), the stock snapshots due (:func:`run_daily_snapshots`) and the
    expiry evaluation once per UTC day (at the first check
    of the day, and so at start). It keeps nothing between checks but that day: every
    figure is read anew."""

    def __init__(self, engine: Engine, settings: Callable[[], Settings]) -> None:
        self.engine = engine
        self.settings = settings
        self._task: asyncio.Task[None] | None = None
        self._ran_on: dict[str, date] = {}
        """The UTC day each daily job (by its name) last ran in this process."""

    def due(self, job: str, today: date) -> bool:
        """Whether ``job`` is still to run today in this process (and from now on, that it
        ran): once a day each; several processes each run it, harmlessly."""
        if self._ran_on.get(job) == today:
            return False
        self._ran_on[job] = today
        return True

    def expiry_due(self, today: date) -> bool:
        """Whether today's expiry evaluation is still to run in this process."""
        return self.due("expiry evaluation", today)

    async def _daily(self, job: str, today: date, work: Callable[[], T]) -> T | None:
        """``work`` in a worker thread at the first check of each UTC day; a failure is
        logged and tried again at the next check (None then, and when not due)."""
        if not self.due(job, today):
            return None
        try:
            return await anyio.to_thread.run_sync(work)
        except asyncio.CancelledError:
            raise
        except Exception:
            del self._ran_on[job]  # try again at the next interval
            log.exception("%s failed; trying again at the next interval", job)
            return None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="jxc-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            interval = self.settings().monitor_interval_s
            await asyncio.sleep(interval or 1.0)
            settings = self.settings()
            if settings.monitor_interval_s <= 0:
                continue
            try:
                outcome = await anyio.to_thread.run_sync(run_check, self.engine, settings)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the checks for good
                log.exception("operations check failed; trying again at the next interval")
                continue
            if outcome.raised or outcome.cleared:
                log.info(
                    "operations alerts changed",
                    extra={"raised": outcome.raised, "cleared": outcome.cleared},
                )
            try:
                settled = await anyio.to_thread.run_sync(run_pending_settling, self.engine)
            except Exception:
                log.exception("valuation settling failed; trying again at the next interval")
            else:
                if settled:
                    log.warning("valuation left pending was settled", extra={"sites": settled})
            today = now_utc().date()
            written = await self._daily(
                "stock snapshots", today, functools.partial(run_daily_snapshots, self.engine)
            )
            if written:
                log.info("stock snapshots written", extra={"rows": written})
            expiry = await self._daily(
                "expiry evaluation",
                today,
                functools.partial(run_daily_expiry, self.engine, today=today),
            )
            if expiry is not None:
                log.info(
                    "expiry alerts evaluated",
                    extra={
                        "day": today.isoformat(),
                        "raised": expiry.raised,
                        "cleared": expiry.cleared,
                    },
                )


__all__ = [
    "CENTRAL",
    "OPS",
    "CheckOutcome",
    "Condition",
    "DeviceHealth",
    "MonitorWorker",
    "OpsKind",
    "SiteHealth",
    "Thresholds",
    "conditions",
    "disk_free_percent",
    "disk_paths",
    "evaluate",
    "record_status",
    "run_check",
    "run_daily_expiry",
    "run_daily_snapshots",
    "site_health",
]
