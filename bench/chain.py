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

Run ``.venv/bin/python bench/chain.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import logging
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
from sync import RAW_TABLE, driver_rows_maker, make_catalog, random_draft, raw_table

from central_api.core.db import create_db_engine, upgrade_database
from central_api.models import ledger_events, site_sync_state
from central_api.services.auth import add_site
from edge_agent.auth import SiteTokenAuth
from edge_agent.ledger import Ledger
from edge_agent.sync import Pusher
from jxc.contract import LedgerEvent
from jxc.paths import SYNC_EVENTS

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


@app.command()
def main(
    sites: Annotated[int, typer.Option(min=1, help="sites in the chain")] = 200,
    events: Annotated[int, typer.Option(min=1, help="events per site (its day)")] = 1000,
    batch: Annotated[int, typer.Option(min=1, max=5000, help="events a push")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, help="sites pushing at once")] = 16,
    workers: Annotated[str, typer.Option(help="central's --workers, comma-separated")] = "1,2",
    seed: Annotated[int, typer.Option()] = 1,
    json_out: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Push every site's day to central with each --workers value, against the COPY floor."""
    counts = [int(part) for part in workers.split(",") if part.strip()]
    # The second run rewinds every ledger on purpose; the edge's warning says nothing here.
    logging.getLogger("edge_agent").setLevel(logging.ERROR)
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
