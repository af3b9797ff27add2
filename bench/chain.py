"""A chain of 200 sites pushing their day into central on PostgreSQL (issue 18).

Each site is what an edge is: a real ledger file (``edge_agent.ledger.Ledger``) holding
its day of movements (``--events`` per site, drawn like ``bench/sync.py``'s: receipts with
their cost, sales, issues, returns, transfers, counts), and the agent's own pusher
(``edge_agent.sync.Pusher``) with its token auth, sending ``--batch`` events a push. The
ledgers are written before the clock starts. Then, for each ``--workers`` value, on a fresh
PostgreSQL database: ``jxc central serve --workers N``, and ``--concurrency`` sites at a
time drain their outbox into it (a thread each, one connection each; a site that is done
makes room for the next), until central holds all 200 days. Measured:

* **events/s** over the whole run, and **per push** p50 / p99 (request sent to answer read);
* **sync lag**: for each site, from the start of the run until central held its whole day
  (p50 and max): how long a site at the back of the queue waits;
* **central's CPU**: user + system seconds of the server process and its workers (from
  ``/proc``), per 1,000 events; the bench's own CPU beside it (both share the 2 cores);
* the **floor** in the same database right after: the same rows, in the same batches, with
  the same concurrency, by binary ``COPY`` with psycopg into a table identical to
  ``ledger_events`` (``bench/sync.py``'s raw table), one transaction per batch. Nothing
  else: no HTTP, no token, no validation, no balances, no valuation, no audit entry.

Then central is checked: every event held once, every site's watermark at its last seq.

**Live** (``--seconds S``): the chain at work for S seconds on a fresh database
(``--database postgresql`` with each ``--workers`` value, or ``sqlite``: one process, as
``jxc central serve`` insists). Central holds the sites' credentials, the 300 items the
sites record (what their pull fetches), a user. Each site is an edge: a real ledger
(``synchronous=FULL``), the agent's own ``Pusher`` every ``--push-interval`` s and
``Puller`` (``edge_agent.catalog``, the master-data feed) every ``--pull-interval`` s (the
agent's defaults, 2 and 10), a thread each job as the agent's scheduler gives it; events
are appended at ``--rate`` a second per site at random moments (four appender threads),
drawn within the site's own stock (``--mix stocked``: receive first, then sell what is
held, so balances stay at or above zero; ``--mix sync`` is ``bench/sync.py``'s draw,
which sells more than it receives). Meanwhile ``--users`` users, signed in, go round:
one item's stock at a site, a site's stock page, an other receipt, an other issue of
part of it (each ``Idempotency-Key``'d), pausing ``--think`` s between requests.
Measured: the **sync round trip** (an event appended at the edge until the push that
acknowledged it returned) p50/p99, events/s acknowledged, every request's latency by kind
(p50/p99 against the aims: under 200 ms p50 and 2 s p99 for a user's), **errors** (any
answer but a 2xx by kind and status, and every failure the edge's pusher and puller log,
transport errors included), central's CPU and peak RSS (the server process and its
workers, from ``/proc``), PostgreSQL's CPU. After the clock what is still pending is
pushed (untimed) and central is checked as above.

Run ``.venv/bin/python bench/chain.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import psycopg
import typer
from common import (
    ROOT,
    central_server,
    cli,
    console,
    finish,
    machine_info,
    postgres_database,
    process_tree_cpu_s,
    table,
)
from psycopg import sql
from sqlalchemy import func, select
from sync import (
    RAW_TABLE,
    Catalog,
    driver_rows_maker,
    make_catalog,
    random_draft,
    raw_table,
)

from central_api.core.db import create_db_engine, upgrade_database
from central_api.models import ledger_events, site_sync_state
from central_api.services.audit import system_context
from central_api.services.auth import add_site
from central_api.services.items import upsert_item
from central_api.services.people import create_user, sign_in
from edge_agent.auth import SiteTokenAuth
from edge_agent.catalog import Catalog as EdgeCatalog
from edge_agent.catalog import Puller
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.sync import Pusher
from jxc.contract import EventKind, LedgerEvent
from jxc.feed import ItemData
from jxc.ids import uuid7
from jxc.paths import (
    OTHER_ISSUES,
    OTHER_RECEIPTS,
    REASON_CODES,
    SITES,
    STOCK,
    SYNC_CHANGES,
    SYNC_EVENTS,
)

app = cli(__doc__)


@dataclass
class Site:
    site_id: str
    ledger: Ledger
    events: list[LedgerEvent] = field(default_factory=list, repr=False)


@dataclass
class Side:
    """One side's run (central with N workers, or the floor)."""

    name: str
    events: int = 0
    seconds: float = 0.0
    pushes: int = 0
    busy: int = 0
    """Answers 503 (central busy; the edge waits ``Retry-After`` and sends again)."""
    push_ms: list[float] = field(default_factory=list, repr=False)
    lag_s: list[float] = field(default_factory=list, repr=False)
    server_cpu_s: float | None = None
    database_cpu_s: float = 0.0
    """CPU seconds of the PostgreSQL backends serving this side's database."""
    bench_cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

        return {
            "name": self.name,
            "events": self.events,
            "seconds": round(self.seconds, 2),
            "events_per_s": round(self.events / self.seconds) if self.seconds else 0,
            "pushes": self.pushes,
            "busy_503": self.busy,
            "push_p50_ms": round(statistics.median(self.push_ms), 1) if self.push_ms else 0,
            "push_p99_ms": round(pct(self.push_ms, 0.99), 1),
            "lag_p50_s": round(pct(self.lag_s, 0.5), 2),
            "lag_max_s": round(max(self.lag_s), 2) if self.lag_s else 0,
            "server_cpu_s": None if self.server_cpu_s is None else round(self.server_cpu_s, 2),
            "server_cpu_ms_per_1000_events": (
                None
                if self.server_cpu_s is None or not self.events
                else round(1000 * self.server_cpu_s / self.events * 1000, 1)
            ),
            "database_cpu_s": round(self.database_cpu_s, 2),
            "bench_cpu_s": round(self.bench_cpu_s, 2),
        }


@dataclass
class ChainReport:
    sites: int
    events_per_site: int
    batch: int
    concurrency: int
    machine: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- the day


def write_days(root: Path, sites: int, events: int, seed: int) -> list[Site]:
    """Each site's ledger with its day, one transaction per site (before the clock)."""
    rng = random.Random(seed)
    catalog = make_catalog(rng)
    day = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    step = timedelta(hours=12) / max(events, 1)
    made = []
    for number in range(1, sites + 1):
        site = Site(f"S{number:03d}", Ledger(root / f"S{number:03d}.db", site_id=f"S{number:03d}"))
        with site.ledger.transaction() as conn:
            for n in range(events):
                draft = random_draft(rng, catalog, n)
                site.ledger.append_in(conn, draft, occurred_at=day - timedelta(days=1) + n * step)
        site.events = site.ledger.events()
        made.append(site)
    return made


# --------------------------------------------------------------------------- central


class DatabaseCpu:
    """CPU seconds the PostgreSQL backends of one database spent during a block.

    Backends come and go (central's pool closes its overflow connections when they are
    given back), so a thread reads ``pg_stat_activity`` and each backend's ``/proc``
    entry every 50 ms; what a backend spent after its last reading is missed, so the
    figure is a lower bound. The server runs on this host.
    """

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _read(self, pg: psycopg.Connection[Any], *, at_start: bool) -> None:
        pids = [
            row[0]
            for row in pg.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        for pid in pids:
            spent = process_tree_cpu_s(pid, children=False)
            if spent:
                self.first.setdefault(pid, spent if at_start else 0.0)
                self.last[pid] = spent

    def _watch(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as pg:
            self._read(pg, at_start=True)
            self._started.set()
            while not self._stop.wait(0.05):
                self._read(pg, at_start=False)
            self._read(pg, at_start=False)

    def __enter__(self) -> DatabaseCpu:
        self._started = threading.Event()
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(last - self.first[pid] for pid, last in self.last.items())


class PushClock:
    """Times every push (request sent to answer read) through httpx's event hooks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms: list[float] = []
        self.busy = 0

    def request(self, request: httpx.Request) -> None:
        request.extensions["bench_sent"] = time.perf_counter()

    def response(self, response: httpx.Response) -> None:
        if response.request.url.path != SYNC_EVENTS:
            return
        response.read()
        spent = (time.perf_counter() - response.request.extensions["bench_sent"]) * 1000
        with self.lock:
            if response.status_code == 200:
                self.ms.append(spent)
            elif response.status_code == 503:
                self.busy += 1


def run_central(
    url: str, workers: int, sites: Sequence[Site], *, batch: int, concurrency: int, log: Path
) -> Side:
    upgrade_database(url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            secrets = {site.site_id: add_site(connection, site.site_id) for site in sites}
    finally:
        engine.dispose()
    for site in sites:
        site.ledger.rewind(0)  # the day is pending again (a no-op on the first run)
    clock = PushClock()
    side = Side(f"jxc --workers {workers}")
    with central_server(url, workers, log) as running:
        clients = {
            site.site_id: httpx.Client(
                base_url=running.base,
                auth=SiteTokenAuth(site.site_id, secrets[site.site_id]),
                timeout=60,
                event_hooks={"request": [clock.request], "response": [clock.response]},
            )
            for site in sites
        }
        start = 0.0

        def drain(site: Site) -> float:
            pusher = Pusher(
                site.ledger,
                clients[site.site_id],
                batch_size=batch,
                max_batches_per_run=1_000_000,
                max_backoff_s=2,
            )
            while site.ledger.counts().pending:
                pusher.run()
                if pusher.state.last_error is not None and not pusher.backoff.ready():
                    time.sleep(0.01)  # a busy central said when to come back
            return time.perf_counter() - start

        try:
            with DatabaseCpu(url) as database:
                cpu0, bench0 = process_tree_cpu_s(running.pid), time.process_time()
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    side.lag_s = list(pool.map(drain, sites))
                side.seconds = time.perf_counter() - start
                side.server_cpu_s = process_tree_cpu_s(running.pid) - cpu0
                side.bench_cpu_s = time.process_time() - bench0
            side.database_cpu_s = database.seconds
        finally:
            for client in clients.values():
                client.close()
    side.events = sum(len(site.events) for site in sites)
    side.push_ms, side.pushes, side.busy = clock.ms, len(clock.ms), clock.busy
    verify(url, sites)
    return side


def verify(url: str, sites: Sequence[Site]) -> None:
    """Central holds every event once, and every site's watermark is its last seq."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            held = connection.execute(select(func.count()).select_from(ledger_events)).scalar_one()
            marks = dict(
                connection.execute(
                    select(site_sync_state.c.site_id, site_sync_state.c.acked_through_seq)
                ).all()
            )
    finally:
        engine.dispose()
    expected = sum(len(site.events) for site in sites)
    if held != expected:
        raise RuntimeError(f"central holds {held} events, the sites sent {expected}")
    wrong = [s.site_id for s in sites if marks.get(s.site_id) != len(s.events)]
    if wrong:
        raise RuntimeError(f"watermarks wrong for {wrong[:5]}")


# --------------------------------------------------------------------------- floor


def run_floor(url: str, sites: Sequence[Site], *, batch: int, concurrency: int) -> Side:
    """The same rows in the same batches by binary COPY, ``concurrency`` sites at a time."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            raw_table().create(connection)
        make_rows = driver_rows_maker(engine)
        batches = {
            site.site_id: [
                make_rows(site.events[at : at + batch]) for at in range(0, len(site.events), batch)
            ]
            for site in sites
        }
    finally:
        engine.dispose()
    columns = [column.name for column in ledger_events.c]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(RAW_TABLE), names
    )
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    local = threading.local()
    connections: list[psycopg.Connection[Any]] = []
    lock = threading.Lock()
    side = Side("floor (COPY)")

    def connection() -> tuple[psycopg.Connection[Any], list[int]]:
        if not hasattr(local, "pg"):
            local.pg = psycopg.connect(plain)
            with local.pg.cursor() as cursor:
                cursor.execute(
                    sql.SQL("SELECT {} FROM {} LIMIT 0").format(names, sql.Identifier(RAW_TABLE))
                )
                local.types = [column.type_code for column in cursor.description or ()]
            local.pg.commit()
            with lock:
                connections.append(local.pg)
        return local.pg, local.types

    start = 0.0

    def drain(site: Site) -> float:
        pg, types = connection()
        for rows in batches[site.site_id]:
            began = time.perf_counter()
            with pg.cursor() as cursor, cursor.copy(copy_sql) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
            pg.commit()
            with lock:
                side.push_ms.append((time.perf_counter() - began) * 1000)
        return time.perf_counter() - start

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            ready = threading.Barrier(concurrency)
            # Every thread connects before the clock starts (each waits for the others).
            list(pool.map(lambda _: (connection(), ready.wait()), range(concurrency)))
            with DatabaseCpu(url) as database:
                bench0 = time.process_time()
                start = time.perf_counter()
                side.lag_s = list(pool.map(drain, sites))
        side.seconds = time.perf_counter() - start
        side.bench_cpu_s = time.process_time() - bench0
        side.database_cpu_s = database.seconds
    finally:
        for pg in connections:
            pg.close()
    side.events = sum(len(site.events) for site in sites)
    side.pushes = len(side.push_ms)
    return side


# --------------------------------------------------------------------------- live


class Mix(StrEnum):
    STOCKED = "stocked"
    """Receive first, then sell, issue, move and scrap only what the site holds."""
    SYNC = "sync"
    """``bench/sync.py``'s draw: sells more than it receives, so balances go negative."""


@dataclass
class StockedDraw:
    """One site's movements drawn within its own stock: what a station would record.

    A site keeps what it holds per (item, location, lot); an outbound movement takes at
    most that, so central's balances stay at or above zero and its negative-stock alerts
    (what dominated the drained day: see docs/performance.md) stay what they are in a
    shop, rare. A receipt comes whenever the site holds little.
    """

    rng: random.Random
    catalog: Catalog
    held: dict[tuple[int, str, str | None], Decimal] = field(default_factory=dict)
    number: int = 0

    def next(self) -> EventDraft:
        self.number += 1
        rng, number = self.rng, self.number
        if len(self.held) < 30 or rng.random() < 0.3:
            index = rng.randrange(len(self.catalog.items))
            item = self.catalog.items[index]
            lot, expiry = rng.choice(item.lots) if item.lots else (None, None)
            qty = self._magnitude(item.uom, big=True)
            key = (index, rng.choice(item.homes), lot)
            self.held[key] = self.held.get(key, Decimal(0)) + qty
            return EventDraft(
                kind=EventKind.RECEIPT,
                item=item.code,
                location=key[1],
                qty=qty,
                uom=item.uom,
                lot=lot,
                expiry=expiry,
                unit_cost=item.unit_cost,
                ref=f"PO-2026-{number // 40:06d}:{number % 40 + 1}",
                device_id=rng.choice(self.catalog.devices),
                actor=rng.choice(self.catalog.actors),
            )
        key = rng.choice(list(self.held))
        index, location, lot = key
        item = self.catalog.items[index]
        kind = rng.choices(
            (EventKind.SALE, EventKind.ISSUE, EventKind.TRANSFER_OUT, EventKind.SCRAP),
            weights=(75, 12, 10, 3),
        )[0]
        qty = min(self._magnitude(item.uom, big=False), self.held[key])
        left = self.held[key] - qty
        if left:
            self.held[key] = left
        else:
            del self.held[key]
        expiry = dict(item.lots).get(lot) if lot else None
        return EventDraft(
            kind=kind,
            item=item.code,
            location=location,
            qty=-qty,
            uom=item.uom,
            lot=lot,
            expiry=expiry,
            ref=f"SO-2026-{number // 5:07d}:{number % 5 + 1}",
            device_id=rng.choice(self.catalog.devices),
            actor=rng.choice(self.catalog.actors),
        )

    def _magnitude(self, uom: str, *, big: bool) -> Decimal:
        if uom in ("kg", "l", "m"):
            return Decimal(self.rng.randint(1, 250_000 if big else 5_000)).scaleb(-3)
        return Decimal(self.rng.randint(12, 96) if big else self.rng.randint(1, 6))


class SyncDraw:
    """The old mix (``--mix sync``): ``bench/sync.py``'s ``random_draft``."""

    def __init__(self, rng: random.Random, catalog: Catalog) -> None:
        self.rng, self.catalog, self.number = rng, catalog, 0

    def next(self) -> EventDraft:
        self.number += 1
        return random_draft(self.rng, self.catalog, self.number)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class LiveSite:
    """One edge: its ledger, the agent's own pusher and puller, and what it appended when."""

    site_id: str
    ledger: Ledger
    draw: StockedDraw | SyncDraw
    client: httpx.Client | None = None
    pusher: Pusher | None = None
    puller: Puller | None = None
    appended: list[tuple[int, float]] = field(default_factory=list)
    """(seq, perf_counter at append) not yet acknowledged, in seq order."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Requests:
    """Latencies and failures of one kind of request."""

    ms: list[float] = field(default_factory=list, repr=False)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, spent_ms: float, error: str | None) -> None:
        self.ms.append(spent_ms)
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1

    def summary(self) -> dict[str, Any]:
        return {
            "requests": len(self.ms),
            "p50_ms": round(percentile(self.ms, 0.5), 1),
            "p99_ms": round(percentile(self.ms, 0.99), 1),
            "max_ms": round(max(self.ms), 1) if self.ms else 0,
            "errors": dict(self.errors),
        }


class RequestClock:
    """Every request of the sites and users (sent to answer read), by kind, from httpx's
    event hooks; anything but a 2xx is an error, counted by kind and status."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: dict[str, Requests] = {}

    def request(self, request: httpx.Request) -> None:
        request.extensions["bench_sent"] = time.perf_counter()

    def response(self, response: httpx.Response) -> None:
        response.read()
        spent = (time.perf_counter() - response.request.extensions["bench_sent"]) * 1000
        kind = request_kind(response.request)
        error = None if response.is_success else f"{response.status_code}"
        with self.lock:
            self.kinds.setdefault(kind, Requests()).add(spent, error)

    def failed(self, kind: str, exc: Exception) -> None:
        with self.lock:
            self.kinds.setdefault(kind, Requests()).add(0.0, type(exc).__name__)


def request_kind(request: httpx.Request) -> str:
    path = request.url.path
    if path == SYNC_EVENTS:
        return "push"
    if path == SYNC_CHANGES:
        return "pull"
    if path == STOCK:
        return "stock of 1 item" if request.url.params.get("item") else "site's stock"
    if path in (OTHER_RECEIPTS, OTHER_ISSUES):
        return "post a document"
    return path.rsplit("/", 1)[-1] or path


class Memory:
    """Peak resident memory (MB) of central's process tree, sampled every 200 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def now_mb(self) -> float:
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(stat.parent.name) == self.pid or int(fields[1]) == self.pid:
                    total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return total / 1024 / 1024

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            used = self.now_mb()
            self.samples.append(used)
            self.peak_mb = max(self.peak_mb, used)

    def __enter__(self) -> Memory:
        self.start_mb = self.now_mb()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class EdgeFailures(logging.Handler):
    """Counts what the edge's own pusher and puller log as failed ("push failed", "pull
    failed"), by the start of their reason: a transport error never reaches httpx's
    response hook, so this is where it is seen."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.kinds: dict[str, int] = {}
        self.first: list[str] = []
        self.counting = threading.Lock()
        """Not ``self.lock``: that is the handler's own, held around ``emit``."""

    def emit(self, record: logging.LogRecord) -> None:
        reason = str(getattr(record, "reason", ""))
        kind = f"{record.getMessage()}: {reason[:60]}"
        with self.counting:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if len(self.first) < 5:
                self.first.append(f"{record.getMessage()}: {reason[:300]}")


NO_ANSWER = ("unreachable", "Timeout", "ConnectError", "RemoteProtocolError", "ReadError")
"""What the edge logs for a request that got no answer at all."""

DOC_LOCATION = "DOC-1"
"""A location only central's documents use, so the users' receipts and issues never meet
the sites' own movements (an issue then never finds less than its receipt left)."""


def prepare_central(
    url: str, sites: Sequence[LiveSite], catalog: Catalog
) -> tuple[dict[str, str], str]:
    """Schema, every site's credential, the catalog as central's items (what the sites
    pull), and a user who posts documents. Returns the secrets and the user's token."""
    upgrade_database(url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            secrets = {site.site_id: add_site(connection, site.site_id) for site in sites}
            for item in catalog.items:
                upsert_item(
                    connection=connection,
                    item=ItemData(
                        item_code=item.code,
                        name=f"Item {item.code}",
                        uom=item.uom,
                        lot_tracked=bool(item.lots),
                        expiry_tracked=any(expiry for _, expiry in item.lots),
                    ),
                    barcodes=[],
                    audit=system_context("bench"),
                )
            create_user(connection, username="clerk", password=PASSWORD, role_names=["admin"])
            token = sign_in(
                connection,
                username="clerk",
                password=PASSWORD,
                address="bench",
                kind="bearer",
                ttl_s=3 * 3600,
            ).token
    finally:
        engine.dispose()
    return secrets, token


PASSWORD = "chain-bench-password-1"


def prepare_documents(client: httpx.Client, sites: Sequence[str]) -> None:
    """What a document needs at central: the sites, a location, the reason codes."""
    for site_id in sites:
        client.put(f"{SITES}/{site_id}", json={"kind": "store", "name": site_id}).raise_for_status()
        client.post(
            f"{SITES}/{site_id}/locations",
            json={"code": DOC_LOCATION, "level": "zone", "kind": "storage"},
        ).raise_for_status()
    for code, applies in (("FOUND", ["other_receipt"]), ("USE", ["other_issue"])):
        client.put(
            f"{REASON_CODES}/{code}", json={"name": code, "applies_to": applies}
        ).raise_for_status()


@dataclass
class LiveSide:
    name: str
    database: str
    seconds: float = 0.0
    appended: int = 0
    acked: int = 0
    append_behind_s: float = 0.0
    """How far the appender fell behind its schedule at worst (the bench's own limit)."""
    round_trip_s: list[float] = field(default_factory=list, repr=False)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: int = 0
    edge_failures: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    database_cpu_s: float | None = None
    bench_cpu_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    left_pending: int = 0

    def summary(self) -> dict[str, Any]:
        errors = sum(sum(kind["errors"].values()) for kind in self.requests.values())
        # The edge's failures with no answer (an answer but a 2xx is counted above already).
        errors += sum(
            count
            for kind, count in self.edge_failures.items()
            if any(word in kind for word in NO_ANSWER)
        )
        users = [kind for name, kind in self.requests.items() if name not in ("push", "pull")]
        return {
            "name": self.name,
            "database": self.database,
            "seconds": round(self.seconds, 1),
            "appended": self.appended,
            "acked": self.acked,
            "events_per_s": round(self.acked / self.seconds, 1) if self.seconds else 0,
            "round_trip_p50_s": round(percentile(self.round_trip_s, 0.5), 3),
            "round_trip_p99_s": round(percentile(self.round_trip_s, 0.99), 3),
            "round_trip_max_s": round(max(self.round_trip_s), 3) if self.round_trip_s else 0,
            "append_behind_s": round(self.append_behind_s, 2),
            "requests": self.requests,
            "errors": errors,
            "refused_events": self.refused,
            "edge_failures": self.edge_failures,
            "users_within_aim": all(
                kind["p99_ms"] < 2000 and kind["p50_ms"] < 200 for kind in users
            ),
            "server_cpu_s": round(self.server_cpu_s, 1),
            "server_cpu_share": round(self.server_cpu_s / self.seconds, 2) if self.seconds else 0,
            "database_cpu_s": None
            if self.database_cpu_s is None
            else round(self.database_cpu_s, 1),
            "bench_cpu_s": round(self.bench_cpu_s, 1),
            "rss_start_mb": round(self.rss_start_mb),
            "rss_peak_mb": round(self.rss_peak_mb),
            "left_pending": self.left_pending,
        }


def make_live_sites(root: Path, sites: int, seed: int, mix: Mix) -> tuple[list[LiveSite], Catalog]:
    catalog = make_catalog(random.Random(seed))
    made = []
    for number in range(1, sites + 1):
        site_id = f"S{number:03d}"
        rng = random.Random(seed * 100_003 + number)
        draw: StockedDraw | SyncDraw = (
            StockedDraw(rng, catalog) if mix is Mix.STOCKED else SyncDraw(rng, catalog)
        )
        made.append(LiveSite(site_id, Ledger(root / f"{site_id}.db", site_id=site_id), draw))
    return made, catalog


APPENDERS = 4
"""Threads appending the sites' events."""


class Live:
    """The chain at work for ``seconds``: sites append at ``rate`` events a second each
    (at random moments, one appender thread), push every ``push_s`` and pull every
    ``pull_s`` on ``concurrency`` threads (the agent's own jobs on its schedule), while
    ``users`` users query stock and post documents."""

    def __init__(
        self,
        sites: list[LiveSite],
        catalog: Catalog,
        *,
        seconds: float,
        rate: float,
        push_s: float,
        pull_s: float,
        batch: int,
        concurrency: int,
        users: int,
        think_s: float,
        seed: int,
    ) -> None:
        self.sites, self.catalog = sites, catalog
        self.seconds, self.rate, self.push_s, self.pull_s = seconds, rate, push_s, pull_s
        self.batch, self.concurrency, self.users, self.think_s = batch, concurrency, users, think_s
        self.seed = seed
        self.clock = RequestClock()
        self.round_trips: list[float] = []
        self.rt_lock = threading.Lock()
        self.behind_s = 0.0
        self.appended = 0
        self.stop = threading.Event()
        self.failures: list[str] = []

    # the edges

    def connect(self, base: str, secrets: dict[str, str]) -> None:
        hooks = {"request": [self.clock.request], "response": [self.clock.response]}
        for site in self.sites:
            site.client = httpx.Client(
                base_url=base,
                auth=SiteTokenAuth(site.site_id, secrets[site.site_id]),
                timeout=60,
                event_hooks=hooks,
            )
            site.pusher = Pusher(site.ledger, site.client, batch_size=self.batch)
            site.puller = Puller(EdgeCatalog(site.ledger), site.client, site_id=site.site_id)

    def append_loop(self, end: float, part: int, parts: int) -> None:
        """Each site's next event at exponential gaps (a Poisson stream of ``rate``), for
        the sites ``part`` of ``parts``: an append waits on its ledger's fsync
        (``synchronous=FULL``, as on the edge), so several threads share the chain."""
        rng = random.Random(self.seed * 31 + part)
        start = time.perf_counter()
        due = [(start + rng.expovariate(self.rate), n) for n in range(part, len(self.sites), parts)]
        heapq.heapify(due)
        while due and not self.stop.is_set():
            at, n = heapq.heappop(due)
            if at >= end:
                break
            wait = at - time.perf_counter()
            if wait > 0:
                if self.stop.wait(wait):
                    break
            else:
                self.behind_s = max(self.behind_s, -wait)
            site = self.sites[n]
            event = site.ledger.append(site.draw.next())
            with site.lock:
                site.appended.append((event.seq, time.perf_counter()))
            with self.rt_lock:
                self.appended += 1
            heapq.heappush(due, (at + rng.expovariate(self.rate), n))

    def push(self, site: LiveSite) -> None:
        assert site.pusher is not None
        site.pusher.run()
        first = site.ledger.pending_bodies(1)
        through = first[0].event.seq - 1 if first else None
        now = time.perf_counter()
        with site.lock:
            done = 0
            for seq, _at in site.appended:
                if through is not None and seq > through:
                    break
                done += 1
            settled, site.appended = site.appended[:done], site.appended[done:]
        with self.rt_lock:
            self.round_trips.extend(now - at for _, at in settled)

    def pull(self, site: LiveSite) -> None:
        assert site.puller is not None
        site.puller.run()

    def schedule_loop(self, end: float) -> None:
        """The agents' interval jobs: each site's push every ``push_s`` and pull every
        ``pull_s``, first ones spread over one interval; a job that is late runs once."""
        rng = random.Random(self.seed + 1)
        start = time.perf_counter()
        heap: list[tuple[float, int, str]] = []
        for n in range(len(self.sites)):
            heap.append((start + rng.uniform(0, self.push_s), n, "push"))
            heap.append((start + rng.uniform(0, self.pull_s), n, "pull"))
        heapq.heapify(heap)
        done: list[tuple[float, int, str]] = []
        done_lock = threading.Lock()

        def job(due: float, n: int, kind: str) -> None:
            try:
                (self.push if kind == "push" else self.pull)(self.sites[n])
            except Exception as exc:  # a bench counts failures, it does not stop
                self.failures.append(f"{kind} {self.sites[n].site_id}: {exc!r}")
            interval = self.push_s if kind == "push" else self.pull_s
            with done_lock:
                done.append((max(due + interval, time.perf_counter()), n, kind))

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            while not self.stop.is_set():
                with done_lock:
                    for again in done:
                        heapq.heappush(heap, again)
                    done.clear()
                if not heap:
                    self.stop.wait(0.01)
                    continue
                due, n, kind = heap[0]
                if due >= end:
                    if time.perf_counter() >= end:
                        break
                    self.stop.wait(min(0.01, end - time.perf_counter()))
                    continue
                wait = due - time.perf_counter()
                if wait > 0:
                    self.stop.wait(min(wait, 0.01))
                    continue
                heapq.heappop(heap)
                pool.submit(job, due, n, kind)

    # the users

    def user_loop(self, number: int, base: str, token: str, end: float) -> None:
        """Round and round: one item's stock, the site's stock page, an other receipt,
        then an other issue of part of it (each with its Idempotency-Key)."""
        rng = random.Random(self.seed * 7 + number)
        hooks = {"request": [self.clock.request], "response": [self.clock.response]}
        plain = [item for item in self.catalog.items if not item.lots]
        with httpx.Client(
            base_url=base,
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
            event_hooks=hooks,
        ) as client:
            turn = 0
            while time.perf_counter() < end and not self.stop.is_set():
                site = self.sites[rng.randrange(len(self.sites))].site_id
                item = rng.choice(self.catalog.items)
                step, round_ = turn % 4, turn // 4
                turn += 1
                try:
                    if step == 0:
                        client.get(STOCK, params={"site_id": site, "item": item.code})
                    elif step == 1:
                        client.get(STOCK, params={"site_id": site})
                    else:
                        doc_site = self.sites[number % len(self.sites)].site_id
                        good = plain[round_ % len(plain)]
                        path, reason, qty = (
                            (OTHER_RECEIPTS, "FOUND", "5")
                            if step == 2
                            else (OTHER_ISSUES, "USE", "2")
                        )
                        client.post(
                            path,
                            json={
                                "site_id": doc_site,
                                "reason_code": reason,
                                "lines": [
                                    {
                                        "item_code": good.code,
                                        "qty": qty,
                                        "location": DOC_LOCATION,
                                    }
                                ],
                            },
                            headers={"Idempotency-Key": uuid7().hex},
                        )
                except httpx.HTTPError as exc:
                    self.clock.failed("user", exc)
                self.stop.wait(self.think_s)

    def run(self, base: str, token: str) -> float:
        start = time.perf_counter()
        end = start + self.seconds
        threads = [
            *(
                threading.Thread(target=self.append_loop, args=(end, n, APPENDERS), daemon=True)
                for n in range(APPENDERS)
            ),
            threading.Thread(target=self.schedule_loop, args=(end,), daemon=True),
            *(
                threading.Thread(target=self.user_loop, args=(n, base, token, end), daemon=True)
                for n in range(self.users)
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    def drain(self, limit_s: float = 120) -> None:
        """After the clock: push what is left (not timed), so central can be checked."""
        deadline = time.monotonic() + limit_s
        for site in self.sites:
            while site.ledger.counts().pending and time.monotonic() < deadline:
                if site.pusher is not None:
                    site.pusher.backoff.succeeded()  # no waiting out a backoff here
                self.push(site)
                if site.pusher is not None and site.pusher.state.last_error is not None:
                    time.sleep(0.05)

    def close(self) -> None:
        for site in self.sites:
            if site.client is not None:
                site.client.close()


def run_live(
    url: str,
    database: str,
    workers: int,
    sites: list[LiveSite],
    catalog: Catalog,
    live: Live,
    log: Path,
    document_sites: int,
) -> LiveSide:
    secrets, token = prepare_central(url, sites, catalog)
    side = LiveSide(f"{database} --workers {workers}", database)
    failures = EdgeFailures()
    edge_log = logging.getLogger("edge_agent")
    edge_log.addHandler(failures)
    edge_log.propagate = False  # counted, not printed 200 times over
    with central_server(url, workers, log) as running:
        with httpx.Client(
            base_url=running.base, headers={"authorization": f"Bearer {token}"}, timeout=60
        ) as admin:
            prepare_documents(admin, [site.site_id for site in sites[:document_sites]])
        live.connect(running.base, secrets)
        try:
            watch: contextlib.AbstractContextManager[DatabaseCpu | None] = (
                DatabaseCpu(url) if url.startswith("postgresql") else contextlib.nullcontext()
            )
            with watch as pg, Memory(running.pid) as memory:
                cpu0, bench0 = process_tree_cpu_s(running.pid), time.process_time()
                side.seconds = live.run(running.base, token)
                side.server_cpu_s = process_tree_cpu_s(running.pid) - cpu0
                side.bench_cpu_s = time.process_time() - bench0
            side.database_cpu_s = pg.seconds if pg is not None else None
            side.rss_start_mb, side.rss_peak_mb = memory.start_mb, memory.peak_mb
            side.appended = live.appended
            side.acked = len(live.round_trips)
            side.round_trip_s = list(live.round_trips)
            side.append_behind_s = live.behind_s
            side.requests = {
                kind: found.summary() for kind, found in sorted(live.clock.kinds.items())
            }
            side.refused = sum(
                sum(site.pusher.state.rejected.values()) for site in sites if site.pusher
            )
            live.drain()
            side.left_pending = sum(site.ledger.counts().pending for site in sites)
        finally:
            live.close()
    edge_log.removeHandler(failures)
    side.edge_failures = dict(failures.kinds)
    for line in failures.first:
        console.print(f"edge: {line}")
    if live.failures:
        console.print(f"[red]{len(live.failures)} jobs failed[/red], first: {live.failures[0]}")
    if not side.left_pending:
        verify_live(url, sites)
    return side


def verify_live(url: str, sites: Sequence[LiveSite]) -> None:
    """Central holds every appended event once, and every site's watermark is its last seq."""
    last = {site.site_id: site.ledger.counts().last_seq for site in sites}
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            held = connection.execute(
                select(func.count())
                .select_from(ledger_events)
                .where(ledger_events.c.site_id.in_(list(last)))
            ).scalar_one()
            marks = dict(
                connection.execute(
                    select(site_sync_state.c.site_id, site_sync_state.c.acked_through_seq)
                ).all()
            )
    finally:
        engine.dispose()
    if held != sum(last.values()):
        raise RuntimeError(f"central holds {held} events, the sites sent {sum(last.values())}")
    wrong = [site for site, seq in last.items() if marks.get(site, 0) != seq]
    if wrong:
        raise RuntimeError(f"watermarks wrong for {wrong[:5]}")


def print_live(report: dict[str, Any]) -> None:
    for run in report["runs"]:
        shown = table(
            f"{report['sites']} sites for {run['seconds']} s at {report['rate']} events/s each, "
            f"{report['users']} users: {run['name']}",
            ["requests", "count", "p50 ms", "p99 ms", "max ms", "errors"],
            left={"requests", "errors"},
        )
        for kind, found in run["requests"].items():
            shown.add_row(
                kind,
                f"{found['requests']:,}",
                f"{found['p50_ms']}",
                f"{found['p99_ms']}",
                f"{found['max_ms']}",
                ", ".join(f"{k}: {v}" for k, v in found["errors"].items()) or "0",
            )
        console.print(shown)
        console.print(
            f"{run['name']}: {run['acked']:,} of {run['appended']:,} events acknowledged in "
            f"the run, {run['events_per_s']} events/s; sync round trip (appended at the edge "
            f"-> acknowledged) p50 {run['round_trip_p50_s']} s, p99 {run['round_trip_p99_s']} s"
            f", max {run['round_trip_max_s']} s; errors {run['errors']}, refused events "
            f"{run['refused_events']}, edge failures {run['edge_failures']}; "
            "users within aim (p50 < 200 ms, p99 < 2 s): "
            f"{run['users_within_aim']}; central CPU {run['server_cpu_s']} s "
            f"({run['server_cpu_share']} of a core), database CPU {run['database_cpu_s']} s, "
            f"bench CPU {run['bench_cpu_s']} s; central RSS {run['rss_start_mb']} MB at start, "
            f"peak {run['rss_peak_mb']} MB; appender behind at worst {run['append_behind_s']} s"
        )


# --------------------------------------------------------------------------- report


def print_report(report: ChainReport) -> None:
    shown = table(
        f"{report.sites} sites × {report.events_per_site} events, batches of {report.batch}, "
        f"{report.concurrency} sites at a time (PostgreSQL)",
        [
            "side",
            "ev/s",
            "/ floor",
            "push p50 ms",
            "p99 ms",
            "lag p50 s",
            "max s",
            "503",
            "jxc CPU s",
            "ms/1k ev",
            "PG CPU s",
            "bench CPU s",
        ],
        left={"side"},
    )
    for run in report.runs:
        floor = run["floor"]
        for row in (run["central"], floor):
            ratio = row["events_per_s"] / floor["events_per_s"] if floor["events_per_s"] else 0
            shown.add_row(
                row["name"],
                f"{row['events_per_s']:,}",
                f"{ratio:.2f}",
                f"{row['push_p50_ms']}",
                f"{row['push_p99_ms']}",
                f"{row['lag_p50_s']}",
                f"{row['lag_max_s']}",
                f"{row['busy_503']}",
                "" if row["server_cpu_s"] is None else f"{row['server_cpu_s']}",
                ""
                if row["server_cpu_ms_per_1000_events"] is None
                else f"{row['server_cpu_ms_per_1000_events']}",
                f"{row['database_cpu_s']}",
                f"{row['bench_cpu_s']}",
            )
    console.print(shown)


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    (ROOT / "var").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="jxc-bench-chain-", dir=ROOT / "var"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _postgres_version(url: str) -> str:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:
        row = pg.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


class Database(StrEnum):
    POSTGRESQL = "postgresql"
    SQLITE = "sqlite"


@contextlib.contextmanager
def central_database(kind: Database, name: str, root: Path) -> Iterator[str]:
    """A fresh central database: PostgreSQL on the test server, or a SQLite file."""
    if kind is Database.SQLITE:
        yield f"sqlite:///{root / f'{name}.db'}"
        return
    with postgres_database(name) as url:
        yield url


SQLITE_ONE_WRITER = (
    "SQLite: one central process (--workers 1). A SQLite file takes one writer at a time, "
    "so a second process would only wait on the first one's lock; `jxc central serve` "
    "refuses --workers > 1 on SQLite."
)


def live_main(
    *,
    sites: int,
    seconds: float,
    rate: float,
    push_s: float,
    pull_s: float,
    batch: int,
    concurrency: int,
    users: int,
    think_s: float,
    counts: list[int],
    database: Database,
    mix: Mix,
    seed: int,
    document_sites: int,
    json_out: Path | None,
) -> None:
    if database is Database.SQLITE:
        console.print(SQLITE_ONE_WRITER)
        counts = [1]
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "mode": "live",
        "sites": sites,
        "seconds": seconds,
        "rate": rate,
        "push_s": push_s,
        "pull_s": pull_s,
        "batch": batch,
        "concurrency": concurrency,
        "users": users,
        "think_s": think_s,
        "mix": mix.value,
        "database": database.value,
        "runs": [],
    }
    for count in counts:
        with _scratch() as root:
            chain, catalog = make_live_sites(root, sites, seed, mix)
            try:
                with central_database(database, f"jxc_bench_live_{count}", root) as url:
                    if "machine" not in report:
                        extra = (
                            {"postgresql": _postgres_version(url)}
                            if database is Database.POSTGRESQL
                            else {}
                        )
                        report["machine"] = machine_info(libraries=extra)
                    live = Live(
                        chain,
                        catalog,
                        seconds=seconds,
                        rate=rate,
                        push_s=push_s,
                        pull_s=pull_s,
                        batch=batch,
                        concurrency=concurrency,
                        users=users,
                        think_s=think_s,
                        seed=seed,
                    )
                    side = run_live(
                        url,
                        database.value,
                        count,
                        chain,
                        catalog,
                        live,
                        logs / f"chain-live-{database.value}-{count}.log",
                        document_sites,
                    )
                    console.print(f"{side.name}: {side.summary()}")
                    report["runs"].append(side.summary())
            finally:
                for site in chain:
                    site.ledger.close()
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    print_live(report)
    console.print(
        f"load average {report['machine']['loadavg_at_start']} at start, "
        f"{report['machine']['loadavg_at_end']} at end (2 cores: others' work shows here)"
    )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")


@app.command()
def main(
    sites: Annotated[int, typer.Option(min=1, help="sites in the chain")] = 200,
    events: Annotated[int, typer.Option(min=1, help="events per site (its day)")] = 1000,
    batch: Annotated[int, typer.Option(min=1, max=5000, help="events a push")] = 500,
    concurrency: Annotated[
        int,
        typer.Option(min=0, help="sites pushing at once (0: 16 for a day, every site when live)"),
    ] = 0,
    workers: Annotated[str, typer.Option(help="central's --workers, comma-separated")] = "1,2",
    seed: Annotated[int, typer.Option()] = 1,
    json_out: Annotated[Path | None, typer.Option()] = None,
    seconds: Annotated[
        float,
        typer.Option(min=0, help="live mode: sites append, push and pull for this long (0: day)"),
    ] = 0,
    rate: Annotated[float, typer.Option(min=0.001, help="live: events a second per site")] = 0.05,
    push_interval: Annotated[float, typer.Option(min=0.1, help="live: push every s")] = 2.0,
    pull_interval: Annotated[float, typer.Option(min=0.1, help="live: pull every s")] = 10.0,
    users: Annotated[int, typer.Option(min=0, help="live: users querying and posting")] = 4,
    think: Annotated[float, typer.Option(min=0, help="live: a user's pause, s")] = 0.5,
    database: Annotated[Database, typer.Option(help="live: central's database")] = (
        Database.POSTGRESQL
    ),
    mix: Annotated[Mix, typer.Option(help="live: what the sites record")] = Mix.STOCKED,
    document_sites: Annotated[int, typer.Option(min=1, help="live: sites users post to")] = 8,
) -> None:
    """Push every site's day to central with each --workers value, against the COPY floor;
    or, with --seconds, the chain live: appending, pushing, pulling, users at work."""
    counts = [int(part) for part in workers.split(",") if part.strip()]
    if seconds:
        # Live, each site is its own agent: its push and pull jobs wait for nobody else.
        live_main(
            sites=sites,
            seconds=seconds,
            rate=rate,
            push_s=push_interval,
            pull_s=pull_interval,
            batch=batch,
            concurrency=concurrency or sites,
            users=users,
            think_s=think,
            counts=counts,
            database=database,
            mix=mix,
            seed=seed,
            document_sites=min(document_sites, sites),
            json_out=json_out,
        )
        return
    # The second run rewinds every ledger on purpose; the edge's warning says nothing here.
    logging.getLogger("edge_agent").setLevel(logging.ERROR)
    concurrency = concurrency or 16
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    with _scratch() as root:
        began = time.perf_counter()
        chain = write_days(root, sites, events, seed)
        console.print(
            f"{sites} ledgers, {sites * events:,} events written in "
            f"{time.perf_counter() - began:.1f} s (not measured)"
        )
        report: ChainReport | None = None
        try:
            for count in counts:
                with postgres_database(f"jxc_bench_chain_{count}") as url:
                    if report is None:
                        report = ChainReport(
                            sites=sites,
                            events_per_site=events,
                            batch=batch,
                            concurrency=concurrency,
                            machine=machine_info(libraries={"postgresql": _postgres_version(url)}),
                        )
                    log = logs / f"chain-central-{count}.log"
                    central = run_central(
                        url, count, chain, batch=batch, concurrency=concurrency, log=log
                    )
                    console.print(f"central --workers {count}: {central.summary()}")
                    floor = run_floor(url, chain, batch=batch, concurrency=concurrency)
                    console.print(f"floor: {floor.summary()}")
                    report.runs.append(
                        {"workers": count, "central": central.summary(), "floor": floor.summary()}
                    )
        finally:
            for site in chain:
                site.ledger.close()
    if report is not None:
        finish(report, print_report, json_out)


if __name__ == "__main__":
    app()
