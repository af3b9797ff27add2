"""A site's configuration, read from one TOML file (see ``deploy/sites/``).

Relative paths in the file are taken relative to the file itself, so a site directory can
be moved or copied whole and still work.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from jxc.contract import Code, ExactDecimal, SiteId


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSection(_Section):
    id: SiteId
    name: str = ""


class CentralSection(_Section):
    url: HttpUrl | None = None
    """Where central is. Left out, the agent looks for central on the local network
    (zeroconf ``_jxc-central._tcp``) until one answers and then keeps the first it saw;
    a network with two centrals needs the URL (see docs/operations.md, "Discovery")."""
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    site_secret_file: Path | None = None
    """File holding the site's secret (``jxc central site add SITE --secret-file F``);
    kept out of the site file so that file can be copied and versioned freely. The
    environment variable ``JXC_SITE_SECRET`` overrides it."""
    ca_file: Path | None = None
    """The CA bundle (PEM) central's TLS certificate must chain to, for an ``https://``
    central signed by the chain's own CA; without it the public trust store is used.
    ``JXC_EDGE_CA_FILE`` overrides it. Used by every request to central
    (``edge_agent.transport``)."""
    client_cert_file: Path | None = None
    """The edge's own certificate (PEM), for a reverse proxy that asks clients for one;
    ``JXC_EDGE_CLIENT_CERT_FILE`` overrides it."""
    client_key_file: Path | None = None
    """The key of ``client_cert_file`` (mode 0600), unless that file holds it too;
    ``JXC_EDGE_CLIENT_KEY_FILE`` overrides it."""


class SyncSection(_Section):
    push_interval_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 500
    max_batch_bytes: Annotated[int, Field(ge=1024)] = 1_000_000
    max_backoff_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    lease_ttl_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    """Another agent on the same ledger may take over sending this long after we die."""
    pull_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """How often master data (items, barcodes) is fetched from central's change feed."""
    max_clock_skew_s: Annotated[float, Field(gt=0)] = 120.0
    """Beyond this difference from central's clock the status page raises an alert."""
    status_interval_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    """How often the agent reports its outbox depth and device states to central, which
    raises operations alerts from them (0: never; ``edge_agent/reporting.py``)."""


class LedgerSection(_Section):
    path: Path = Path("ledger.db")
    free_disk_reserve_mb: Annotated[int, Field(ge=0)] = 64
    idle_checkpoint_s: Annotated[float, Field(gt=0)] = 30.0


class BackupSection(_Section):
    """Backups of the ledger (``jxc edge backup`` and, with ``interval_h``, the agent)."""

    dir: Path | None = None
    """Where backups go; by default a ``backups`` folder beside the ledger. Put it on
    another disk (a USB stick, a network share) to survive the agent's own disk dying."""
    keep: Annotated[int, Field(ge=1, le=10_000)] = 7
    """How many backups are kept; older ones are deleted once a new one is verified."""
    interval_h: Annotated[float, Field(ge=0, le=24 * 366)] = 0.0
    """The running agent backs the ledger up this often (hours); 0: only on demand."""


class DiscoverySection(_Section):
    """Zeroconf on the site's network (``jxc.discovery``)."""

    advertise: bool = True
    """Announce the agent as ``_jxc-edge._tcp`` (its status page's port, the site id in
    the TXT record ``site``), where the status page listens: loopback only for the
    default ``[status] host``, the network for ``0.0.0.0``. ``JXC_DISCOVERY=off`` turns
    every announcement and search off."""


class StatusSection(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8701
    """0 picks a free port (it is printed at start and shown by /healthz)."""


class ReceivingSection(_Section):
    location: Code = "RECEIVING"
    uom: Annotated[str, Field(min_length=1, max_length=16)] = "EA"
    """Unit for codes booked under their own name (unknown at this site)."""
    unknown_barcodes: Literal["book", "refuse"] = "book"
    scale: str | None = None
    """Id of the scale (``[[devices.scales]]``) that weighs goods kept by weight: a scan of
    an item whose unit is a weight (kg, g, lb, ...) books the scale's stable net weight."""
    weigh_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    """How long a weighing may take to settle before the scan is refused (nothing booked)."""
    printer: str | None = None
    """Id of the printer (``[[devices.printers]]``) that labels every booked carton."""
    purchase_orders: bool = False
    """Receive against the site's open PO lines (from the change feed): every carton names
    its line, and what does not fit goes to ``quarantine`` with a reason."""
    quarantine: Code = "QUARANTINE"
    """The site's quarantine location, where cartons that fail a receiving check go."""
    supplier: Code | None = None
    """The supplier whose delivery is received here, when a dock serves one; narrows the
    lines a carton matches."""


class PickingSection(_Section):
    """The picking station (``edge_agent.stations.picking``): which scanners drive it and
    the site's GS1 identity for the SSCCs of packed units."""

    scanners: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    """Ids of the scanners (``[[devices.scanners]]``) at the picking station; their scans go
    to picking, every other scanner's to receiving. Empty: no picking station."""
    printer: str | None = None
    """Id of the printer that prints the GS1 logistic (SSCC) labels; a ZPL printer."""
    extension_digit: Annotated[int, Field(ge=0, le=9)] = 0
    company_prefix: Annotated[str, Field(pattern=r"^[0-9]{6,12}$")] | None = None
    """The site's GS1 company prefix; required once ``scanners`` is set."""
    later_expiry: Literal["refuse", "warn"] = "refuse"
    """A lot expiring after the reserved one: refused (FEFO), or taken with a warning."""

    @model_validator(mode="after")
    def _prefix_when_used(self) -> Self:
        if self.scanners and self.company_prefix is None:
            raise ValueError("picking.company_prefix is needed for the SSCCs of packed units")
        return self


class CounterSection(_Section):
    """The store's counter (``edge_agent.stations.counter``): its scanners, where it sells
    from, and the store's prices (central's feed carries no prices: ``docs/sales.md``)."""

    scanners: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    """Ids of the scanners at the tills; their scans go to the counter. Empty: no counter."""
    location: Code = "SHOP"
    """The location the counter sells from and refunds back to."""
    prices: dict[Code, ExactDecimal] = {}
    """The store's price per base unit of each item it sells: what the customer pays.
    An item without a price is refused at the till."""

    @model_validator(mode="after")
    def _prices_not_negative(self) -> Self:
        for item, price in self.prices.items():
            if price < 0:
                raise ValueError(f"counter.prices.{item} must not be negative")
        return self


class TransfersSection(_Section):
    """The transfer station (``edge_agent.stations.transfers``): the scanners that ship
    and receive transfer orders between sites."""

    scanners: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    """Ids of the scanners at the transfer station. Empty: no transfer station."""
    later_expiry: Literal["refuse", "warn"] = "refuse"
    """A lot sent that expires after the first-expiring one held there: refused (FEFO), or
    taken with a warning."""


class ReturnsSection(_Section):
    """The returns station (``edge_agent.stations.returns``): the scanners that receive
    customer returns (退货) authorised at central."""

    scanners: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    """Ids of the scanners at the returns station. Empty: no returns station."""
    location: Code = "RETURNS"
    """Where returned goods are booked: a quarantine location of the site, so nothing
    comes back to the shelf before a person has looked (restock or scrap at central)."""
    over: Literal["refuse", "warn"] = "refuse"
    """More than a return line authorises: refused, or taken with a warning (central then
    raises an exception for a person)."""


class CountsSection(_Section):
    """The count station (``edge_agent.stations.counts``): the scanners counters use."""

    scanners: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    """Ids of the scanners that count stock. Empty: no count station (the CLI still
    enters counts, and the agent uploads them)."""


class DeviceSection(BaseModel):
    """One device: its id, the driver's name, and the driver's own options.

    The options are checked by the driver (see ``device_drivers.registry``), since only it
    knows them; a third-party driver brings its own.
    """

    model_config = ConfigDict(extra="allow")

    id: Annotated[str, Field(min_length=1, max_length=64)]
    driver: Annotated[str, Field(min_length=1)]

    @property
    def options(self) -> dict[str, object]:
        return dict(self.model_extra or {})


class DevicesSection(_Section):
    scanners: list[DeviceSection] = []
    scales: list[DeviceSection] = []
    printers: list[DeviceSection] = []

    def all(self) -> list[tuple[str, DeviceSection]]:
        """Every device with its class, in file order per class."""
        return [
            *(("scanner", d) for d in self.scanners),
            *(("scale", d) for d in self.scales),
            *(("printer", d) for d in self.printers),
        ]

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        ids = [device.id for _, device in self.all()]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"device ids must be unique; used twice: {', '.join(twice)}")
        return self


class SiteConfig(_Section):
    site: SiteSection
    central: CentralSection = CentralSection()
    sync: SyncSection = SyncSection()
    ledger: LedgerSection = LedgerSection()
    status: StatusSection = StatusSection()
    discovery: DiscoverySection = DiscoverySection()
    backup: BackupSection = BackupSection()
    receiving: ReceivingSection = ReceivingSection()
    picking: PickingSection = PickingSection()
    counter: CounterSection = CounterSection()
    transfers: TransfersSection = TransfersSection()
    counts: CountsSection = CountsSection()
    returns: ReturnsSection = ReturnsSection()
    devices: DevicesSection = DevicesSection()

    @model_validator(mode="after")
    def _station_devices_exist(self) -> Self:
        for role, wanted, section in (
            ("scale", self.receiving.scale, self.devices.scales),
            ("printer", self.receiving.printer, self.devices.printers),
        ):
            if wanted is not None and wanted not in {device.id for device in section}:
                raise ValueError(
                    f"receiving.{role} is {wanted!r}, but no [[devices.{role}s]] has that id"
                )
        wanted_ids = [("picking", "printer", self.picking.printer, self.devices.printers)]
        wanted_ids += [
            (station, "scanner", scanner, self.devices.scanners)
            for station, scanners in (
                ("picking", self.picking.scanners),
                ("counter", self.counter.scanners),
                ("transfers", self.transfers.scanners),
                ("counts", self.counts.scanners),
                ("returns", self.returns.scanners),
            )
            for scanner in scanners
        ]
        for station, role, wanted, section in wanted_ids:
            if wanted is not None and wanted not in {device.id for device in section}:
                raise ValueError(
                    f"{station}.{role} is {wanted!r}, but no [[devices.{role}s]] has that id"
                )
        stations = {
            "picking": set(self.picking.scanners),
            "counter": set(self.counter.scanners),
            "transfers": set(self.transfers.scanners),
            "counts": set(self.counts.scanners),
            "returns": set(self.returns.scanners),
        }
        for first, second in itertools.combinations(stations, 2):
            both = stations[first] & stations[second]
            if both:
                raise ValueError(f"scanner(s) {sorted(both)} are in both [{first}] and [{second}]")
        return self


class ConfigError(Exception):
    """The site file is missing or wrong; the message says where."""


def load_site_config(path: Path) -> SiteConfig:
    """Read and validate a site file, resolving relative paths against its folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such site file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        config = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    base = path.resolve().parent
    config.ledger.path = base / config.ledger.path
    config.backup.dir = base / (
        config.backup.dir
        if config.backup.dir is not None
        else config.ledger.path.parent / "backups"
    )
    central = config.central
    if central.site_secret_file is not None:
        central.site_secret_file = base / central.site_secret_file
    if central.ca_file is not None:
        central.ca_file = base / central.ca_file
    if central.client_cert_file is not None:
        central.client_cert_file = base / central.client_cert_file
    if central.client_key_file is not None:
        central.client_key_file = base / central.client_key_file
    for _, device in config.devices.all():
        extra = device.model_extra or {}
        for option in (*_DEVICE_PATH_OPTIONS, *_FILE_OPTIONS):
            value = extra.get(option)
            if not isinstance(value, str) or Path(value).is_absolute() or "://" in value:
                continue
            if option in _FILE_OPTIONS or "/" in value or value.endswith(".toml"):
                extra[option] = str(base / value)
    return config


_DEVICE_PATH_OPTIONS = ("port", "address", "serial_port", "profile")
"""Options that may name a device node or a file, or something else: a relative path with a
``/`` in it is taken from the site file's folder; a URL (``tcp://...``), a number or a bare
name (a builtin register profile) is left as it is."""

_FILE_OPTIONS = ("journal_path", "password_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
"""Options that always name a file: relative ones are taken from the site file's folder."""
