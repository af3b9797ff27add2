"""The central at full size (issue 17, "What must be shown"): 5,000,000 ledger rows.

A central database gets ``--rows`` movements (receipts with their own unit cost, sales)
over ``--sites`` sites and ``--items`` items, each site stocking ``--items-per-site`` of
them; one (site, item), ``S000``/``IT00000``, gets ``--heavy`` of those movements, spread
over the whole period. Generating that through ingest would take hours on two cores, so
the ledger rows, the balances, the valuation entries and states are written in bulk with
the driver (``executemany`` on SQLite, binary ``COPY`` on PostgreSQL), in the shape the
services write them: the ledger rows through ingest's own conversions, every valuation
entry computed by valuation's own :func:`~central_api.services.valuation.apply` in
``(occurred_at, event_id)`` order, and the stock snapshots the monitor would have
written at each month start (``services.snapshots``). ``--check`` then runs
``valuation.check`` and ``snapshots.check`` over the whole database (the ledger valued
from scratch, the balances and snapshots summed), which proves the seeded state is what
ingest would have left.

The built database is kept under ``var/bench/central/`` (SQLite: a file; PostgreSQL: a
database ``jxc_bench_central_<size>_<folder>``, named after the cache's folder so that
worktrees at different migrations never share one, and a marker file) and reused by the
next run with the same sizes (``--rebuild`` forces a new one). Each run measures on a copy
(a file copy; ``CREATE DATABASE ... TEMPLATE``), so the late event pushed leaves the cache
untouched.

Measured through the services the API calls, in process (no HTTP):

* stock of one item at one site: ``services.stock.list_balances`` (``GET /stock``) for
  ``--samples`` random (site, item) a site stocks, p50/p99 (aim: under 10 ms);
* the stock-on-hand report of one site: ``services.reports.stock_on_hand`` with values,
  p50/max over ``--sites-sampled`` sites (aim: under 1 s);
* as-of-date stock of an item at a past date: ``stock_on_hand`` filtered to one site and
  item with ``as_of`` and values, p50/p99 over random keys and for the 100,000-movement
  key, once as it is (kept in one place) and once with its location named (the read
  per location and lot that an item kept in several places takes: from the nearest
  stock snapshot) (aim: under 50 ms); ``--only-as-of N`` runs only the per-location
  reads, without snapshots and with them, alternating N rounds;
* re-valuation after a late event: one receipt of the heavy key, dated in the middle of
  its movements, pushed through ``services.ingest.ingest_batch`` with the app's
  projections; the whole push, the valuation projection inside it and the push's CPU
  time (aim: under 100 ms); with ``--check``, ``valuation.check`` again after the late
  events (the re-valued entries against a valuation from scratch);
* its floor, measured in the same run: the bare driver reading the same ~50,000 later
  entries, rewriting every one (SQLite ``executemany`` by rowid; PostgreSQL binary
  ``COPY`` into a temporary table and one ``UPDATE ... FROM``) and committing: what the
  database itself needs for that many rewritten rows.

``--late-only`` measures only the late event, its floor and 30 ordinary pushes (one
in-order receipt each); ``--fillfactor N`` (repeatable, ``--rounds``) measures PostgreSQL
work copies whose ``valuation_entries`` were given that fillfactor and rewritten, in turn.

Run ``.venv/bin/python bench/central.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from common import ROOT, cli, console, finish, machine_info, table
from psycopg import sql
from sqlalchemy import Connection, Engine, func, make_url, select

from central_api.core.db import create_db_engine, upgrade_database
from central_api.models import (
    items,
    ledger_events,
    site_sync_state,
    stock_balances,
    stock_snapshot_runs,
    stock_snapshots,
    valuation_entries,
    valuation_state,
)
from central_api.services import reports, snapshots, valuation
from central_api.services.ingest import _copy_rows, _insert_sql, _ledger_binds, ingest_batch
from central_api.services.projections import AcceptedEvents, built_in_projections
from central_api.services.stock import list_balances
from central_api.services.valuation import Move, State, apply
from jxc import uuid7
from jxc.contract import LedgerEvent, PushBatch

app = cli(__doc__)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=600)
MICRO = valuation.MICRO
LOCATION = "A-01"
HEAVY_SITE, HEAVY_ITEM = "S000", "IT00000"
COSTS = (1_900_000, 2_000_000, 2_150_000)
"""Unit costs of receipts, in micro-units: they differ, so a late receipt changes the
average of everything after it."""
BATCH = 50_000
LAYOUT = 3
"""Bumped when the generated data changes shape, so an old cache is not reused."""


@dataclass(frozen=True, slots=True)
class Size:
    rows: int
    sites: int
    items: int
    items_per_site: int
    heavy: int

    @property
    def tag(self) -> str:
        return (
            f"r{self.rows}_s{self.sites}_i{self.items}_p{self.items_per_site}"
            f"_h{self.heavy}_v{LAYOUT}"
        )


# --------------------------------------------------------------------------- building


def _site_ids(size: Size) -> list[str]:
    return [f"S{n:03d}" for n in range(size.sites)]


def _stocked(size: Size, rng: random.Random) -> dict[str, list[str]]:
    """The items each site stocks; the heavy item is among the heavy site's."""
    codes = [f"IT{n:05d}" for n in range(size.items)]
    chosen = {
        site: rng.sample(codes, min(size.items_per_site, size.items)) for site in _site_ids(size)
    }
    if HEAVY_ITEM not in chosen[HEAVY_SITE]:
        chosen[HEAVY_SITE][0] = HEAVY_ITEM
    return chosen


def _fill(connection: Connection, size: Size, *, seed: int) -> None:
    """Items, sites, the ledger and its projections, in bulk, as ingest would leave them."""
    rng = random.Random(seed)
    dialect = connection.dialect
    postgres = dialect.name == "postgresql"
    times = _ledger_binds(dialect).times
    now = datetime.now(UTC)
    sites = _site_ids(size)
    stocked = _stocked(size, rng)
    connection.execute(
        items.insert(),
        [
            {
                "item_code": f"IT{n:05d}",
                "name": f"Item {n:05d}",
                "uom": "pcs",
                "active": True,
                "version": 1,
                "updated_at": now,
            }
            for n in range(size.items)
        ],
    )
    connection.execute(
        site_sync_state.insert(),
        [{"site_id": s, "acked_through_seq": 0, "updated_at": now} for s in sites],
    )
    ledger_sql = _insert_sql(dialect, ledger_events)
    entries_sql = _insert_sql(dialect, valuation_entries)

    def write(ledger_rows: list[tuple[Any, ...]], entry_rows: list[tuple[Any, ...]]) -> None:
        if postgres:
            _copy_rows(connection, ledger_events, ledger_rows)
            _copy_rows(connection, valuation_entries, entry_rows)
        else:
            connection.exec_driver_sql(ledger_sql, ledger_rows)
            connection.exec_driver_sql(entries_sql, entry_rows)

    seq = dict.fromkeys(sites, 0)
    states: dict[tuple[str, str], valuation.State] = {}
    last: dict[tuple[str, str], tuple[datetime, str]] = {}
    heavy_every = size.rows // size.heavy if size.heavy else 0
    heavy_left = size.heavy
    step = SPAN / size.rows
    pending: list[tuple[Any, ...]] = []
    # The stock snapshots the monitor would have written at each month start (the
    # (site, item)s that moved in the month before and at least snapshots.LEAST times
    # since their last snapshot, their running sum; zero sums not written), as
    # services.snapshots.write_month does; the sites' runs up to the month due.
    boundary = snapshots.next_month(snapshots.month_start(T0))
    moved: set[tuple[str, str]] = set()
    snapshot_rows: list[tuple[Any, ...]] = []
    keys_at: dict[tuple[str, datetime], int] = {}

    since_last: dict[tuple[str, str], int] = {}

    def close_month(moment: datetime) -> None:
        for site_id, code in sorted(moved):
            if since_last[(site_id, code)] < snapshots.LEAST:
                continue
            since_last[(site_id, code)] = 0
            qty = states[(site_id, code)].qty
            keys_at[(site_id, moment)] = keys_at.get((site_id, moment), 0) + (qty != 0)
            if qty:
                snapshot_rows.append((site_id, code, moment, LOCATION, "", "pcs", qty))
        moved.clear()

    started = time.perf_counter()
    for number in range(size.rows):
        if heavy_left and number % heavy_every == 0:
            site, code = HEAVY_SITE, HEAVY_ITEM
            heavy_left -= 1
        else:
            site = sites[rng.randrange(size.sites)]
            code = stocked[site][rng.randrange(len(stocked[site]))]
            if site == HEAVY_SITE and code == HEAVY_ITEM:
                code = stocked[site][1]
        key = (site, code)
        state = states.get(key)
        if state is None:
            state = states[key] = State(valuation.MOVING_AVERAGE)
        qty = rng.randrange(1, 20) * MICRO
        receipt = state.qty < qty or rng.random() < 0.5
        at = T0 + step * number
        while at >= boundary:
            close_month(boundary)
            boundary = snapshots.next_month(boundary)
        moved.add(key)
        since_last[key] = since_last.get(key, 0) + 1
        event_id = str(uuid7())
        seq[site] += 1
        if receipt:
            cost = COSTS[rng.randrange(3)]
            move = Move(event_id, at, "receipt", qty, cost, "event")
        else:
            cost = None
            move = Move(event_id, at, "sale", -qty, None, "out")
        result = apply(state, move)
        last[key] = (at, event_id)
        pending.append(
            (event_id, site, seq[site], at, move.kind, code, move.qty, cost, move, result)
        )
        if len(pending) == BATCH or number == size.rows - 1:
            texts = times([row[3] for row in pending])
            ledger_rows = []
            entry_rows = []
            for (eid, s, sq, _at, kind, item, q, c, mv, res), when in zip(
                pending, texts, strict=True
            ):
                ledger_rows.append(
                    (eid, s, sq, when, when, kind, item, None, None, LOCATION, q, "pcs", c)
                    + (None,) * 6
                )
                entry_rows.append(
                    (eid, s, item, when, kind, q, mv.in_cost, mv.cost_source, None, *res)
                )
            write(ledger_rows, entry_rows)
            pending = []
            done = number + 1
            if done % 500_000 < BATCH or done == size.rows:
                spent = time.perf_counter() - started
                console.print(f"  {done:,} rows written in {spent:,.0f} s")
    due = snapshots.due(now)
    while boundary <= due:
        close_month(boundary)
        boundary = snapshots.next_month(boundary)
    stamp = now if postgres else times([now])[0]
    _write_snapshots(connection, sites, snapshot_rows, keys_at, due=due, stamp=stamp)
    balance_rows = [
        (site, LOCATION, code, "", "pcs", state.qty, stamp)
        for (site, code), state in states.items()
    ]
    if postgres:
        _copy_rows(connection, stock_balances, balance_rows)
    else:
        connection.exec_driver_sql(_insert_sql(dialect, stock_balances), balance_rows)
    state_rows = []
    for key, state in states.items():
        at, event_id = last[key]
        state_rows.append(
            (
                key[0],
                key[1],
                state.method,
                state.qty,
                state.value,
                state.last_cost,
                at,
                event_id,
                now,
            )
        )
    if postgres:
        _copy_rows(connection, valuation_state, state_rows)
    else:
        moments = times([row[6] for row in state_rows])
        connection.exec_driver_sql(
            _insert_sql(dialect, valuation_state),
            [
                (*row[:6], moment, row[7], stamp)
                for row, moment in zip(state_rows, moments, strict=True)
            ],
        )
    for site in sites:
        connection.execute(
            site_sync_state.update()
            .where(site_sync_state.c.site_id == site)
            .values(acked_through_seq=seq[site])
        )


def _write_snapshots(
    connection: Connection,
    sites: list[str],
    rows: list[tuple[Any, ...]],
    keys_at: dict[tuple[str, datetime], int],
    *,
    due: datetime,
    stamp: Any,
) -> None:
    """The snapshot rows and every site's runs from the first month start to ``due``."""
    dialect = connection.dialect
    runs = []
    moment = snapshots.next_month(snapshots.month_start(T0))
    while moment <= due:
        runs.extend((site, moment, stamp, keys_at.get((site, moment), 0)) for site in sites)
        moment = snapshots.next_month(moment)
    if dialect.name == "postgresql":
        _copy_rows(connection, stock_snapshots, rows)
        _copy_rows(connection, stock_snapshot_runs, runs)
        return
    times = _ledger_binds(dialect).times
    moments = times([row[2] for row in rows])
    connection.exec_driver_sql(
        _insert_sql(dialect, stock_snapshots),
        [(*row[:2], when, *row[3:]) for row, when in zip(rows, moments, strict=True)],
    )
    run_moments = times([row[1] for row in runs])
    connection.exec_driver_sql(
        _insert_sql(dialect, stock_snapshot_runs),
        [(row[0], when, *row[2:]) for row, when in zip(runs, run_moments, strict=True)],
    )


# --------------------------------------------------------------------------- the cache


@dataclass
class Built:
    url: str
    build_s: float | None
    """None: reused from the cache."""
    size_mb: float


def _admin(postgres_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(postgres_url, autocommit=True)


def _pg_url(postgres_url: str, name: str) -> str:
    return (
        make_url(postgres_url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


def _build(url: str, size: Size, seed: int) -> float:
    upgrade_database(url)
    engine = create_db_engine(url)
    started = time.perf_counter()
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA cache_size = -1000000")
        _fill(connection, size, seed=seed)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    if url.startswith("postgresql"):
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def _upgraded(url: str) -> None:
    """Bring a cached database to the newest migration (a new index, say) and refresh the
    planner's statistics if that changed anything."""
    engine = create_db_engine(url)
    version = "SELECT version_num FROM alembic_version"
    with engine.connect() as connection:
        before = connection.exec_driver_sql(version).scalar_one()
    engine.dispose()
    upgrade_database(url)
    engine = create_db_engine(url)
    with engine.connect() as connection:
        after = connection.exec_driver_sql(version).scalar_one()
        if after != before:
            console.print(f"cache migrated from {before} to {after}; analysing")
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    engine.dispose()


@contextmanager
def built_database(
    kind: str, size: Size, *, workdir: Path, postgres_url: str, rebuild: bool, seed: int
) -> Iterator[Built]:
    """A working copy of the cached database of ``size`` (built first if need be)."""
    workdir.mkdir(parents=True, exist_ok=True)
    build_s: float | None = None
    if kind == "sqlite":
        cached = workdir / f"central_{size.tag}.db"
        if rebuild or not cached.exists():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{cached}{suffix}").unlink(missing_ok=True)
            partial = workdir / f"central_{size.tag}.building.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{partial}{suffix}").unlink(missing_ok=True)
            build_s = _build(f"sqlite:///{partial}", size, seed)
            partial.rename(cached)
        else:
            _upgraded(f"sqlite:///{cached}")
        work = workdir / "central_work.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(cached, work)
        try:
            yield Built(f"sqlite:///{work}", build_s, cached.stat().st_size / 2**20)
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{work}{suffix}").unlink(missing_ok=True)
        return
    # The cache's folder in the name: PostgreSQL is one server for every worktree on the
    # machine, and two worktrees at different migrations must never share (or drop) one.
    place = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:8]
    name = f"jxc_bench_central_{size.rows}_{size.heavy}_v{LAYOUT}_{place}"
    marker = workdir / f"postgresql_{size.tag}.built"
    with _admin(postgres_url) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if rebuild or not exists or not marker.exists():
            marker.unlink(missing_ok=True)
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            build_s = _build(_pg_url(postgres_url, name), size, seed)
            marker.write_text(f"{size}\n")
        else:
            _upgraded(_pg_url(postgres_url, name))
        work = f"{name}_work"
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(work))
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(work), sql.Identifier(name)
            )
        )
        row = admin.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
        size_mb = (row[0] if row else 0) / 2**20
    try:
        yield Built(_pg_url(postgres_url, work), build_s, size_mb)
    finally:
        with _admin(postgres_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(work))
            )


# --------------------------------------------------------------------------- measuring


@dataclass
class Figure:
    what: str
    p50_ms: float
    high_ms: float
    high_label: str
    aim_ms: float | None
    note: str = ""

    @property
    def meets(self) -> bool | None:
        return None if self.aim_ms is None else self.high_ms < self.aim_ms


@dataclass
class Run:
    database: str
    url: str
    build_s: float | None
    size_mb: float
    check: str = "not run"
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    command: str
    size: dict[str, int]
    machine: dict[str, Any]
    runs: list[Run] = field(default_factory=list)


def _timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def _p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _measure(
    engine: Engine,
    size: Size,
    *,
    samples: int,
    sites_sampled: int,
    seed: int,
    check: bool,
    late_only: bool = False,
) -> list[Figure]:
    if late_only:
        return [*_late_event(engine, size, check=check), _ordinary_pushes(engine, size, seed)]
    rng = random.Random(seed + 1)
    stocked = _stocked(size, random.Random(seed))  # the same draw as the build's
    sites = _site_ids(size)
    keys = []
    for _ in range(samples):
        site = sites[rng.randrange(len(sites))]
        keys.append((site, stocked[site][rng.randrange(len(stocked[site]))]))
    figures: list[Figure] = []
    with engine.connect() as connection:
        list_balances(connection=connection, site_id=sites[0], item=keys[0][1])  # warm up
        times = [
            _timed(lambda s=s, i=i: list_balances(connection=connection, site_id=s, item=i))
            for s, i in keys
        ]
        figures.append(
            Figure(
                f"stock of one item at one site ({samples:,} random keys)",
                statistics.median(times),
                _p99(times),
                "p99",
                10,
            )
        )
        chosen_sites = rng.sample(sites, min(sites_sampled, len(sites)))
        times, rows = [], 0
        for site in chosen_sites:
            started = time.perf_counter()
            report = reports.stock_on_hand(
                connection, reports.StockFilter(site_id=site), financial=True
            )
            times.append((time.perf_counter() - started) * 1000)
            rows = max(rows, len(report.rows))
        figures.append(
            Figure(
                f"stock-on-hand report of one site, with values ({len(chosen_sites)} sites)",
                statistics.median(times),
                max(times),
                "max",
                1000,
                f"up to {rows:,} rows",
            )
        )
        as_of_keys = keys[: max(1, samples // 5)]
        times = []
        for site, code in as_of_keys:
            past = T0 + SPAN * rng.uniform(0.1, 0.9)
            chosen = reports.StockFilter(site_id=site, item=code)
            times.append(
                _timed(
                    lambda c=chosen, p=past: reports.stock_on_hand(
                        connection, c, as_of=p, financial=True
                    )
                )
            )
        figures.append(
            Figure(
                f"as-of-date stock of an item at a past date ({len(as_of_keys)} random keys)",
                statistics.median(times),
                _p99(times),
                "p99",
                50,
            )
        )
        heavy = reports.StockFilter(site_id=HEAVY_SITE, item=HEAVY_ITEM)
        times = [
            _timed(
                lambda f=fraction: reports.stock_on_hand(
                    connection, heavy, as_of=T0 + SPAN * f, financial=True
                )
            )
            for fraction in (0.2, 0.35, 0.5, 0.65, 0.8)
        ]
        figures.append(
            Figure(
                f"as-of-date stock of the {size.heavy:,}-movement item (5 dates)",
                statistics.median(times),
                max(times),
                "max",
                50,
                "kept in one place: one valuation entry",
            )
        )
        # The same with its location named: what an item kept in several places (or
        # lots) costs, read per location and lot from whichever side of the date has
        # fewer movements (20,000 to 50,000 of them at these dates).
        placed = reports.StockFilter(site_id=HEAVY_SITE, item=HEAVY_ITEM, location=LOCATION)
        times = [
            _timed(
                lambda f=fraction: reports.stock_on_hand(
                    connection, placed, as_of=T0 + SPAN * f, financial=True
                )
            )
            for fraction in (0.2, 0.35, 0.5, 0.65, 0.8)
        ]
        figures.append(
            Figure(
                f"as-of-date stock of the {size.heavy:,}-movement item per location (5 dates)",
                statistics.median(times),
                max(times),
                "max",
                50,
                "the nearest month-start snapshot and the movements between",
            )
        )
        # Two reads that dropping migration 0036's ledger index could slow and that issue
        # 17 sets no aim for: a page of the movement ledger of the heavy item, and the
        # stock-out rate of its site over a year (every movement of the year counted).
        page_from = reports.MovementFilter(
            site_id=HEAVY_SITE, item=HEAVY_ITEM, since=T0 + SPAN * 0.5
        )
        times = [
            _timed(lambda: reports.movements(connection, page_from, limit=100, financial=True))
            for _ in range(5)
        ]
        figures.append(
            Figure(
                f"movement ledger, a page of 100 of the {size.heavy:,}-movement item (5 reads)",
                statistics.median(times),
                max(times),
                "max",
                None,
            )
        )
        year = (T0.date(), (T0 + timedelta(days=364)).date())
        times = [
            _timed(
                lambda: reports.stock_outs(
                    connection, since=year[0], until=year[1], site_id=HEAVY_SITE
                )
            )
            for _ in range(3)
        ]
        figures.append(
            Figure(
                "stock-out rate of the heavy item's site over 365 days (3 reads)",
                statistics.median(times),
                max(times),
                "max",
                None,
            )
        )
    figures.extend(_late_event(engine, size, check=check))
    return figures


def _as_of_ab(engine: Engine, size: Size, *, samples: int, seed: int, rounds: int) -> list[Figure]:
    """The per-location as-of reads alone, without snapshots (the read before migration
    0038: ``reports._from_snapshots`` answering None, so the smaller side of the ledger
    is summed) and with them, alternating ``rounds`` times on the same database: the
    heavy key at the bench's 5 dates, and ``samples // 5`` random keys at random dates,
    each with its location named. Wall and this process's CPU, p50 and max."""
    rng = random.Random(seed + 2)
    stocked = _stocked(size, random.Random(seed))
    sites = _site_ids(size)
    keys = []
    for _ in range(max(1, samples // 5)):
        site = sites[rng.randrange(len(sites))]
        keys.append((site, stocked[site][rng.randrange(len(stocked[site]))]))
    dated = [(key, T0 + SPAN * rng.uniform(0.1, 0.9)) for key in keys]
    heavy = [((HEAVY_SITE, HEAVY_ITEM), T0 + SPAN * f) for f in (0.2, 0.35, 0.5, 0.65, 0.8)]
    original = reports._from_snapshots
    walls: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    results: dict[str, list[Any]] = {}
    with engine.connect() as connection:
        for _round in range(rounds):
            for mode in ("without snapshots", "with snapshots"):
                reports._from_snapshots = (  # type: ignore[assignment]
                    original if mode == "with snapshots" else (lambda *_args: None)
                )
                try:
                    for what, reads in (("heavy", heavy), ("random", dated)):
                        seen = []
                        for (site, code), moment in reads:
                            chosen = reports.StockFilter(site_id=site, item=code, location=LOCATION)
                            started, cpu_started = time.perf_counter(), time.process_time()
                            answer = reports.stock_on_hand(
                                connection, chosen, as_of=moment, financial=True
                            )
                            walls.setdefault((what, mode), []).append(
                                (time.perf_counter() - started) * 1000
                            )
                            cpus.setdefault((what, mode), []).append(
                                (time.process_time() - cpu_started) * 1000
                            )
                            seen.append(answer.rows)
                        results.setdefault(what, []).append(seen)
                finally:
                    reports._from_snapshots = original  # type: ignore[assignment]
    figures = []
    for what, label in (
        ("heavy", f"the {size.heavy:,}-movement item per location (5 dates)"),
        ("random", f"an item per location ({len(dated)} random keys and dates)"),
    ):
        same = all(seen == results[what][0] for seen in results[what])
        for mode in ("without snapshots", "with snapshots"):
            wall, cpu = walls[(what, mode)], cpus[(what, mode)]
            figures.append(
                Figure(
                    f"as of a past date, {label}, {mode} ({rounds} rounds)",
                    statistics.median(wall),
                    max(wall),
                    "max",
                    50,
                    f"CPU p50 {statistics.median(cpu):,.1f} ms, max {max(cpu):,.1f} ms; "
                    f"answers {'the same' if same else 'DIFFER'} both ways, every round",
                )
            )
    return figures


def _push_one_receipt(
    connection: Connection,
    projections: Any,
    key: tuple[str, str],
    occurred_at: datetime,
    *,
    qty: Decimal,
    unit_cost: Decimal,
    settled: list[tuple[float, float]] | None = None,
) -> tuple[float, float]:
    """Push one receipt of ``key`` = (site, item) next in its site's sequence through
    ``ingest_batch``; wall and CPU milliseconds of the push alone.

    As the push route does, the valuation settling the push queues (a late event's long
    tail) is collected, not run, inside the push, and run after it, as the route runs it
    after answering: its wall and CPU milliseconds appended to ``settled``."""
    site, item = key
    acked = connection.execute(
        select(site_sync_state.c.acked_through_seq).where(site_sync_state.c.site_id == site)
    ).scalar_one()
    connection.rollback()
    event = LedgerEvent(
        event_id=uuid.UUID(str(uuid7())),
        site_id=site,
        seq=acked + 1,
        occurred_at=occurred_at,
        kind="receipt",
        item=item,
        location=LOCATION,
        qty=qty,
        uom="pcs",
        unit_cost=unit_cost,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    with valuation.settling_deferred() as deferred:
        ingest_batch(
            connection=connection,
            batch=PushBatch(site_id=site, events=[event]),
            received_at=datetime.now(UTC),
            projections=projections,
        )
    pushed = (time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000
    started, cpu_started = time.perf_counter(), time.process_time()
    for site_id in dict.fromkeys(deferred):
        valuation.settle_site(connection, site_id)
    if settled is not None:
        settled.append(
            ((time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000)
        )
    return pushed


def _late_event(engine: Engine, size: Size, *, check: bool) -> list[Figure]:
    """One receipt of the heavy key dated in the middle of its movements, pushed; then
    the floor: what the database itself needs to read and rewrite as many entries.

    With ``check``, ``valuation.check`` runs over the whole database after the late
    events (before the floor, which leaves its entries off by a micro-unit): the
    re-valued entries must equal a valuation from scratch."""
    projections = built_in_projections()
    spent: list[float] = []

    def timed_valuation(connection: Connection, accepted: AcceptedEvents) -> None:
        started = time.perf_counter()
        valuation.project(connection, accepted)
        spent.append((time.perf_counter() - started) * 1000)

    projections.remove(valuation.NAME)
    projections.add(valuation.NAME, timed_valuation)
    pushes: list[float] = []
    cpu: list[float] = []
    settled: list[tuple[float, float]] = []
    with engine.connect() as connection:
        for fraction in (0.5, 0.45, 0.55):
            wall, spent_cpu = _push_one_receipt(
                connection,
                projections,
                (HEAVY_SITE, HEAVY_ITEM),
                T0 + SPAN * fraction + timedelta(seconds=1),
                qty=Decimal(7),
                unit_cost=Decimal("2.5"),
                settled=settled,
            )
            pushes.append(wall)
            cpu.append(spent_cpu)
        later = connection.execute(
            select(func.count())
            .select_from(valuation_entries)
            .where(
                valuation_entries.c.site_id == HEAVY_SITE,
                valuation_entries.c.item == HEAVY_ITEM,
                valuation_entries.c.occurred_at > T0 + SPAN * 0.5,
            )
        ).scalar_one()
        connection.rollback()
    push = Figure(
        f"late event of the {size.heavy:,}-movement item, push to its answer (3 pushes)",
        statistics.median(pushes),
        max(pushes),
        "max",
        100,
        f"valuation part p50 {statistics.median(spent):,.0f} ms, max {max(spent):,.0f} ms; "
        f"CPU of the push (this process) p50 {statistics.median(cpu):,.0f} ms; "
        f"{later:,} later entries re-valued"
        + (
            f" (lagging past {valuation.LAG_AFTER:,}: settled after the answer)"
            if later > valuation.LAG_AFTER
            else ""
        ),
    )
    settle_walls = [wall for wall, _cpu in settled]
    settling = Figure(
        "its re-valuation settled after the answer (3 pushes)",
        statistics.median(settle_walls),
        max(settle_walls),
        "max",
        None,
        f"CPU (this process) p50 {statistics.median(c for _w, c in settled):,.0f} ms; "
        f"chunks of {valuation.SETTLE_CHUNK:,} entries, each its own transaction",
    )
    if check:
        started = time.perf_counter()
        with engine.connect() as connection:
            differences = valuation.check(connection) + snapshots.check(connection)
        spent = time.perf_counter() - started
        push.note += (
            f"; check after them: {len(differences)} differences"
            + (f", first {differences[0]}" if differences else "")
            + f" ({spent:,.0f} s)"
        )
    return [push, settling, _late_event_floor(engine)]


def _ordinary_pushes(engine: Engine, size: Size, seed: int, count: int = 30) -> Figure:
    """What an ordinary push costs: ``count`` pushes of one in-order receipt each (dated
    after every movement of the build), of a random (site, item) a site stocks, through
    ``ingest_batch`` with the app's projections. The valuation's fast path: one entry
    inserted, one state row updated; beside the late event, to see what a change made for
    late events (a lower ``fillfactor``, say) costs the common case."""
    rng = random.Random(seed + 2)
    stocked = _stocked(size, random.Random(seed))
    sites = _site_ids(size)
    projections = built_in_projections()
    times: list[float] = []
    cpu: list[float] = []
    with engine.connect() as connection:
        for number in range(count):
            site = sites[rng.randrange(len(sites))]
            item = stocked[site][rng.randrange(len(stocked[site]))]
            wall, spent_cpu = _push_one_receipt(
                connection,
                projections,
                (site, item),
                T0 + SPAN + timedelta(seconds=number + 1),
                qty=Decimal(3),
                unit_cost=Decimal("1.25"),
            )
            times.append(wall)
            cpu.append(spent_cpu)
    return Figure(
        f"ordinary push: one in-order receipt of a random key ({count} pushes)",
        statistics.median(times),
        _p99(times),
        "p99",
        None,
        f"CPU (this process) p50 {statistics.median(cpu):,.1f} ms",
    )


def _set_fillfactor(url: str, fillfactor: int) -> str:
    """PostgreSQL: give the work copy's ``valuation_entries`` ``fillfactor`` and rewrite
    it (``VACUUM FULL``), so every page has that much room, as a fresh build with the
    setting has; the table's size after, for the note."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"ALTER TABLE valuation_entries SET (fillfactor = {int(fillfactor)})")
        conn.execute("VACUUM FULL ANALYZE valuation_entries")
        row = conn.execute(
            "SELECT pg_relation_size('valuation_entries'), "
            "pg_total_relation_size('valuation_entries')"
        ).fetchone()
    heap, total = (row[0], row[1]) if row else (0, 0)
    return (
        f"fillfactor {fillfactor}: heap {heap / 2**20:,.1f} MB, "
        f"with indexes {total / 2**20:,.1f} MB"
    )


_FLOOR_COLUMNS = (
    "in_cost",
    "in_value",
    "cogs",
    "variance",
    "shortfall",
    "qty_after",
    "value_after",
    "last_cost_after",
)


def _late_event_floor(engine: Engine) -> Figure:
    """The database's own cost of what a late event in the middle of the heavy key does
    to its entries, with nothing of the services: the later entries read by the bare
    driver (one SELECT by the entries index, ``fetchall``), every one of them rewritten
    with a changed value (SQLite: ``executemany`` of an UPDATE by rowid; PostgreSQL:
    binary ``COPY`` into a temporary table and one ``UPDATE ... FROM`` it, the fastest
    of the ways tried, ``docs/performance.md``) and the commit. 3 rounds, each changing
    ``qty_after`` (by one micro-unit, alternately up and down), so each writes for real.
    """
    names = ", ".join(_FLOOR_COLUMNS)
    postgres = engine.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    handle = "event_id" if postgres else "rowid"
    read = (
        f"SELECT {handle}, {names} FROM valuation_entries "
        f"WHERE site_id = {mark} AND item = {mark} AND occurred_at > {mark}"
    )
    middle = T0 + SPAN * 0.5
    since: Any = middle if postgres else _ledger_binds(engine.dialect).times([middle])[0]
    totals: list[float] = []
    parts: dict[str, list[float]] = {"read": [], "write": [], "commit": [], "cpu": []}
    count = 0
    for round_no in range(3):
        step = 1 if round_no % 2 == 0 else -1
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cpu_started = time.process_time()
            started = time.perf_counter()
            if not postgres:  # the app's SQLite connections run without implicit BEGIN
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(read, (HEAVY_SITE, HEAVY_ITEM, since))
            rows = cursor.fetchall()
            read_at = time.perf_counter()
            changed = [(*row[1:6], row[6] + step, *row[7:], row[0]) for row in rows]
            sets = ", ".join(
                f"{name} = {'u.' + name if postgres else mark}" for name in _FLOOR_COLUMNS
            )
            if postgres:
                driver = raw.driver_connection
                assert isinstance(driver, psycopg.Connection)
                with driver.cursor() as pg:
                    pg.execute(
                        "CREATE TEMPORARY TABLE floor_rows ("
                        + ", ".join(f"{name} bigint" for name in _FLOOR_COLUMNS)
                        + ", event_id varchar(36)) ON COMMIT DROP"
                    )
                    with pg.copy("COPY floor_rows FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(["int8"] * len(_FLOOR_COLUMNS) + ["varchar"])
                        for row in changed:
                            copy.write_row(row)
                    pg.execute(
                        f"UPDATE valuation_entries SET {sets} FROM floor_rows AS u "
                        "WHERE valuation_entries.site_id = %s AND valuation_entries.item = %s "
                        "AND valuation_entries.occurred_at > %s "
                        "AND valuation_entries.event_id = u.event_id",
                        (HEAVY_SITE, HEAVY_ITEM, since),
                    )
            else:
                cursor.executemany(
                    f"UPDATE valuation_entries SET {sets} WHERE rowid = ?",
                    changed,
                )
            wrote_at = time.perf_counter()
            raw.commit()
            done = time.perf_counter()
            parts["cpu"].append((time.process_time() - cpu_started) * 1000)
            cursor.close()
        finally:
            raw.close()
        count = len(rows)
        parts["read"].append((read_at - started) * 1000)
        parts["write"].append((wrote_at - read_at) * 1000)
        parts["commit"].append((done - wrote_at) * 1000)
        totals.append((done - started) * 1000)
    p50 = {name: statistics.median(values) for name, values in parts.items()}
    return Figure(
        f"floor: the bare driver reads and rewrites the same {count:,} entries and commits",
        statistics.median(totals),
        max(totals),
        "max",
        None,
        f"p50 read {p50['read']:,.0f} ms, write {p50['write']:,.0f} ms, "
        f"commit {p50['commit']:,.0f} ms; CPU (this process) {p50['cpu']:,.0f} ms",
    )


def _check(url: str) -> str:
    engine = create_db_engine(url)
    started = time.perf_counter()
    with engine.connect() as connection:
        differences = valuation.check(connection) + snapshots.check(connection)
        kept = connection.execute(select(func.count()).select_from(stock_snapshots)).scalar_one()
    engine.dispose()
    spent = time.perf_counter() - started
    if differences:
        return f"FAILED: {len(differences)} differences, first {differences[0]} ({spent:,.0f} s)"
    return (
        f"valuation.check and snapshots.check ({kept:,} snapshot rows) over the whole "
        f"database: no difference ({spent:,.0f} s)"
    )


def _print(report: Report) -> None:
    for run in report.runs:
        built = "reused from the cache" if run.build_s is None else f"built in {run.build_s:,.0f} s"
        shown = table(
            f"central at {report.size['rows']:,} ledger rows, {report.size['sites']} sites, "
            f"{report.size['items']:,} items ({run.database}; {built}; {run.size_mb:,.0f} MB)",
            ["what", "p50 ms", "p99/max ms", "aim ms", "meets", "note"],
            left={"what", "note"},
        )
        for f in run.figures:
            verdict = "" if f.meets is None else ("[green]yes[/]" if f.meets else "[red]NO[/]")
            shown.add_row(
                f.what,
                f"{f.p50_ms:,.1f}",
                f"{f.high_ms:,.1f} {f.high_label}",
                "" if f.aim_ms is None else f"{f.aim_ms:,.0f}",
                verdict,
                f.note,
            )
        console.print(shown)
        console.print(f"{run.database}: {run.check}")


@app.command()
def main(
    rows: Annotated[int, typer.Option(help="ledger rows")] = 5_000_000,
    sites: Annotated[int, typer.Option(help="sites")] = 200,
    item_count: Annotated[int, typer.Option("--items", help="items")] = 10_000,
    items_per_site: Annotated[int, typer.Option(help="items each site stocks")] = 2_000,
    heavy: Annotated[int, typer.Option(help="movements of the one heavy (site, item)")] = 100_000,
    database: Annotated[str, typer.Option(help="sqlite, postgresql or both")] = "both",
    samples: Annotated[int, typer.Option(help="random (site, item) for the stock query")] = 1_000,
    sites_sampled: Annotated[int, typer.Option(help="sites for the stock-on-hand report")] = 5,
    check: Annotated[
        bool, typer.Option(help="run valuation.check over the whole database")
    ] = False,
    rebuild: Annotated[bool, typer.Option(help="build afresh even if cached")] = False,
    only_as_of: Annotated[
        int,
        typer.Option(
            help="only the per-location as-of reads, without and with snapshots, "
            "alternating this many rounds (0: the whole bench)"
        ),
    ] = 0,
    workdir: Annotated[Path, typer.Option(help="the cache")] = ROOT / "var" / "bench" / "central",
    postgres_url: Annotated[
        str, typer.Option(help="an existing PostgreSQL database to create the others from")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    seed: Annotated[int, typer.Option(help="seed of the generated ledger")] = 17,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write JSON")] = None,
    late_only: Annotated[
        bool,
        typer.Option(help="only the late event, its floor and ordinary pushes (no reads)"),
    ] = False,
    fillfactor: Annotated[
        list[int] | None,
        typer.Option(
            help="PostgreSQL: measure a work copy with valuation_entries at this fillfactor "
            "(ALTER + VACUUM FULL); repeat it to compare, in turn"
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="rounds over the --fillfactor values")] = 1,
) -> None:
    if database not in ("sqlite", "postgresql", "both"):
        raise typer.BadParameter("--database: sqlite, postgresql or both")
    size = Size(rows, sites, item_count, items_per_site, min(heavy, rows // 2))
    report = Report(
        command=" ".join(["bench/central.py", *sys.argv[1:]]),
        size={"rows": rows, "sites": sites, "items": item_count, "heavy": size.heavy},
        machine=machine_info(),
    )
    console.print(report.machine)
    plan: list[tuple[str, int | None]] = []
    for kind in ("sqlite", "postgresql") if database == "both" else (database,):
        if kind == "postgresql" and fillfactor:
            plan.extend((kind, value) for _ in range(rounds) for value in fillfactor)
        else:
            plan.append((kind, None))
    for kind, factor in plan:
        with built_database(
            kind, size, workdir=workdir, postgres_url=postgres_url, rebuild=rebuild, seed=seed
        ) as built:
            label = "built" if built.build_s is not None else "reused"
            console.print(f"{kind}: {label} ({built.size_mb:,.0f} MB)")
            run = Run(kind, built.url, built.build_s, built.size_mb)
            if factor is not None:
                run.database = f"{kind}, {_set_fillfactor(built.url, factor)}"
                console.print(run.database)
            if check:
                run.check = _check(built.url)
                console.print(f"{kind}: {run.check}")
            engine = create_db_engine(built.url)
            if only_as_of:
                try:
                    run.figures = _as_of_ab(
                        engine, size, samples=samples, seed=seed, rounds=only_as_of
                    )
                finally:
                    engine.dispose()
                report.runs.append(run)
                continue
            try:
                run.figures = _measure(
                    engine,
                    size,
                    samples=samples,
                    sites_sampled=sites_sampled,
                    seed=seed,
                    check=check,
                    late_only=late_only,
                )
            finally:
                engine.dispose()
            report.runs.append(run)
    finish(report, _print, json_out)


if __name__ == "__main__":
    app()
