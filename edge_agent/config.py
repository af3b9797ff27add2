"""A site's configuration, read from one TOML file (see ``deploy/sites/``).

Relative paths in the file are taken relative to the file itself, so a site directory can
be moved or copied whole and still work.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from jxc.contract import Code, SiteId


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSection(_Section):
    id: SiteId
    name: str = ""


class CentralSection(_Section):
    url: HttpUrl = HttpUrl("http://127.0.0.1:8700")
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    site_secret_file: Path | None = None
    """File holding the site's secret (``jxc central site add SITE --secret-file F``);
    kept out of the site file so that file can be copied and versioned freely. The
    environment variable ``JXC_SITE_SECRET`` overrides it."""


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


class LedgerSection(_Section):
    path: Path = Path("ledger.db")
    free_disk_reserve_mb: Annotated[int, Field(ge=0)] = 64
    idle_checkpoint_s: Annotated[float, Field(gt=0)] = 30.0


class StatusSection(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8701
    """0 picks a free port (it is printed at start and shown by /healthz)."""


class ReceivingSection(_Section):
    location: Code = "RECEIVING"
    uom: Annotated[str, Field(min_length=1, max_length=16)] = "EA"
    """Unit for codes booked under their own name (unknown at this site)."""
    unknown_barcodes: Literal["book", "refuse"] = "book"


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


class SiteConfig(_Section):
    site: SiteSection
    central: CentralSection = CentralSection()
    sync: SyncSection = SyncSection()
    ledger: LedgerSection = LedgerSection()
    status: StatusSection = StatusSection()
    receiving: ReceivingSection = ReceivingSection()
    devices: DevicesSection = DevicesSection()


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
    if config.central.site_secret_file is not None:
        config.central.site_secret_file = base / config.central.site_secret_file
    for device in config.devices.scanners:
        port = (device.model_extra or {}).get("port")
        if isinstance(port, str) and "/" in port and not Path(port).is_absolute():
            device.model_extra["port"] = str(base / port)  # type: ignore[index]
    return config
