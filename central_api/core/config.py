"""Settings of the central service, read once from the environment.

One pydantic-settings class, so a deployment (systemd unit, compose file) and the command
line set the same names: ``JXC_CENTRAL_DATABASE_URL`` and ``--database-url`` are one knob.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where central keeps its data and where it listens."""

    model_config = SettingsConfigDict(env_prefix="JXC_CENTRAL_", extra="ignore")

    database_url: str = "sqlite:///var/central.db"
    """SQLite for a single site needs nothing installed; a chain points this at
    ``postgresql+psycopg://...``. A relative SQLite path is relative to the working
    directory, and its parent directory is created on first use."""

    host: str = "127.0.0.1"
    """Loopback by default: exposing the ledger to the network is a deliberate choice."""

    port: int = 8700

    workers: int = Field(default=1, ge=1, le=64)
    """Server processes of ``jxc central serve``: more than one only on PostgreSQL."""

    token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    """How long a site token lasts. Short, so a leaked header is soon worthless; the edge
    fetches a new one a minute before expiry, and on any 401."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """The largest request body central reads, except a push's; a larger one is answered
    413 before it is read (see ``central_api.api.body_limit``)."""

    max_push_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    """The largest push (``POST /api/v1/sync/events``): a full batch of 5000 events is
    about 2 MB, several times that with every text field as long as the contract allows."""

    max_import_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    """The largest master-data file ``POST /api/v1/imports/...`` takes: 10,000 items with
    their barcodes are about 1.5 MB as CSV; a sheet of 100,000 rows fits."""

    user_token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    """How long a user's bearer token from ``POST /api/v1/auth/token`` lasts."""

    session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 86_400)
    """How long a web session (cookie) lasts: a working day."""

    secure_cookies: bool = False
    """Mark the session cookie ``Secure``; turn on whenever central is served over HTTPS."""

    write_wait_s: float = Field(default=2.0, gt=0, le=60)
    """The longest a write waits in line for the database's write lock (SQLite) or a row
    lock (PostgreSQL) before it is answered 503 with ``Retry-After`` instead of started.
    Well below the edge's request timeout (10 s by default), so a busy central says so
    rather than leaving the edge to time out; see ``central_api.core.db``."""

    busy_retry_after_s: int = Field(default=1, ge=1, le=300)
    """The ``Retry-After`` of a busy answer; the edge waits at least this long."""

    max_pushes_in_flight: int = Field(default=0, ge=0, le=1000)
    """Pushes one process works on at once; more wait on the event loop, in arrival order,
    at most ``write_wait_s``, then are answered 503 with ``Retry-After``. 0: automatic
    (``central_api.api.admission.automatic_limit``): on SQLite the connection pool's
    capacity (``pool_size`` plus ``pool_max_overflow``), at most 16, so waiting pushes
    hold neither worker threads nor connections and can be committed together; on
    PostgreSQL 3, which keeps one process's pushes in arrival order (raise it for a
    database across a network)."""

    group_commit: bool = True
    """SQLite: commit pushes that wait for the write lock together, one disk sync for the
    group (``central_api.services.push_group``); off, each push commits alone."""

    pool_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """The longest a request waits for a pooled database connection (then 503)."""

    pool_size: int = Field(default=5, ge=1, le=1000)
    """Database connections each central process keeps open (SQLAlchemy's default)."""

    pool_max_overflow: int = Field(default=10, ge=0, le=1000)
    """Connections a process may open beyond ``pool_size`` when busy, closed again when
    returned. ``pool_size`` plus this is a process's most connections at once (mind
    PostgreSQL's ``max_connections`` with several workers), and, at most 16, the
    automatic ``max_pushes_in_flight``."""

    purchase_order_sod: bool = True
    """Segregation of duties for purchase orders: who created a PO may not approve it."""

    requisition_sod: bool = True
    """Segregation of duties for requisitions: who created one may not approve it."""

    supplier_invoice_sod: bool = True
    """Segregation of duties for supplier invoices: who entered a held invoice may not
    approve it (accept its differences); they may still dispute it."""

    invoice_price_tolerance: Decimal = Field(default=Decimal(0), ge=0, le=100)
    """Percent an invoice's unit price may differ from the PO's and still match."""

    invoice_qty_tolerance: Decimal = Field(default=Decimal(0), ge=0, le=100)
    """Percent more than the accepted quantity that may be invoiced and still match."""

    write_off_approval_value: Decimal = Field(default=Decimal(1000), ge=0)
    """A write-off whose value at cost is above this waits for approval by someone other
    than its creator; at or below it, it is booked at once."""

    count_recount_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)
    """A counted line that differs from the system quantity by more than this percent of
    it is counted a second time before its variance may be approved (0: any difference)."""

    gc_gen0_threshold: int = Field(default=50_000, ge=700)
    """Net new container objects between the garbage collector's young-generation runs
    while serving (CPython's default is 700); see ``central_api.core.gc_tuning``."""

    guide_dir: Path = Path("var/guide")
    """The built user guide (``make docs``), one folder per language tag, served at
    ``/guide/``. Relative to the working directory, like the SQLite default."""

    backup_dir: Path | None = None
    """Where ``jxc central backup`` writes, and the running service too when
    ``backup_interval_h`` is set. Put it on another disk than the database."""

    backup_keep: int = Field(default=7, ge=1, le=10_000)
    """How many backups are kept; older ones are deleted once a new one is verified."""

    backup_interval_h: float = Field(default=0.0, ge=0, le=24 * 366)
    """The running service backs the database up this often (hours; 0: only on demand).
    With several processes or replicas on one backup directory, one of them at a time
    does it (a lock file in the directory)."""

    webhook_poll_s: float = Field(default=2.0, ge=0, le=3600)
    """How often the webhook worker looks for audit entries to fan out and deliveries
    that are due (seconds; 0: no worker in this process). See ``docs/integrations.md``."""

    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """The longest one delivery's HTTP request may take, connecting included."""

    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    """Attempts before a delivery is given up (``failed``); replay it by hand after."""

    webhook_backoff_s: float = Field(default=30.0, gt=0, le=3600)
    """The wait after the first failed attempt; it doubles with each further failure
    (at most an hour) and is drawn at random from its upper half (jitter)."""

    webhook_allow_private: bool = False
    """Let subscriptions target loopback, private and link-local addresses. Off: a
    webhook URL must not reach into central's own network (SSRF). Tests turn it on."""

    shop_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """Per online-shop channel, the secret its orders are signed with
    (``POST /api/v1/integrations/orders``, header ``Jxc-Shop-Signature``, the webhooks'
    scheme). A channel named here is refused (401) without a valid signature, on top of
    its API user's bearer token. As JSON: ``JXC_CENTRAL_SHOP_SECRETS='{"tmall": "..."}'``.
    A channel whose secret was rotated at central (``shop_channels``) signs with that one
    instead; this one is then accepted only during the first rotation's overlap."""

    shop_secret_overlap_s: int = Field(default=86400, ge=0, le=7 * 86400)
    """After a shop's secret is rotated, how long the old one is still accepted unless
    the rotation says otherwise: time for the shop to switch (a day; at most a week; 0:
    refused at once, for a leaked secret)."""

    monitor_interval_s: float = Field(default=60.0, ge=0, le=3600)
    """How often each central process checks the operations thresholds below and raises
    or clears their alerts in the inbox (seconds; 0: no check in this process). Several
    processes checking is harmless: an alert is raised once (``docs/integrations.md``)."""

    alert_sync_lag_min: int = Field(default=60, ge=1, le=7 * 24 * 60)
    """A site not heard for this many minutes (no push, and no status report saying its
    outbox is empty) gets a ``sync_lag`` alert."""

    alert_outbox_depth: int = Field(default=1000, ge=1)
    """An edge reporting more events than this waiting in its outbox gets an
    ``outbox_depth`` alert."""

    alert_device_down_min: int = Field(default=5, ge=0, le=7 * 24 * 60)
    """A device an edge reports ``disconnected`` for this many minutes gets a
    ``device_down`` alert (0: at the first report)."""

    alert_disk_free_percent: Decimal = Field(default=Decimal(10), ge=0, le=100)
    """Free space under this percent where central keeps files (the SQLite database's
    directory, the backup directory) raises ``disk_low`` (0: never)."""

    metrics_token: str | None = None
    """If set, ``GET /metrics`` wants ``Authorization: Bearer <this>``; unset, it is open
    (keep it off the public side at the reverse proxy, as deploy/ does). Prometheus has
    ``authorization.credentials_file`` for it."""

    advertise: bool = True
    """Announce central on the local network (zeroconf ``_jxc-central._tcp``) while
    ``jxc central serve`` runs, so edges without ``[central] url`` find it. Announced
    where central listens: loopback only for the default host, every interface for
    ``0.0.0.0``. ``JXC_DISCOVERY=off`` turns every announcement off (the tests do)."""

    advertise_name: str | None = None
    """The announced instance name; by default ``jxc central on <hostname>``."""

    advertise_port: int | None = Field(default=None, ge=1, le=65535)
    """The port edges should use, when it is not ``port``: a reverse proxy's (TLS)."""

    advertise_scheme: Literal["http", "https"] | None = None
    """``https`` when edges reach central through a TLS reverse proxy; by default
    ``https`` when central serves TLS itself (``ssl_certfile``), else ``http``."""

    ssl_certfile: Path | None = None
    """Serve HTTPS with this certificate (PEM, the chain after the leaf) instead of plain
    HTTP: for a site without a reverse proxy. ``ssl_keyfile`` is its key. With a proxy
    in front (``deploy/compose``) leave both unset and let the proxy hold the key."""

    ssl_keyfile: Path | None = None
    """The key of ``ssl_certfile`` (mode 0600; unless the certificate file holds it)."""

    @property
    def scheme(self) -> Literal["http", "https"]:
        """What edges use to reach this central: the announced scheme."""
        if self.advertise_scheme is not None:
            return self.advertise_scheme
        return "https" if self.ssl_certfile is not None else "http"

    @model_validator(mode="after")
    def _key_needs_certificate(self) -> Self:
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set but ssl_certfile is not")
        return self
