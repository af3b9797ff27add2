"""What confirming a 100-line sales order costs at central, and an available-to-promise
check (issue 15: "confirming a 100-line SO with reservation, aim: under 100 ms p99 on
SQLite with 100,000 lots in stock; ATP check p99").

A fresh, migrated central database (SQLite file, or a scratch PostgreSQL database) holds
one warehouse site with ``--items`` items of ``--lots`` lots each (100,000 lots by
default), one balance row per lot spread over 40 storage bins, and the receipt event of
each lot in the ledger (the lot's expiry is read from there). Realistic on purpose: each
item's first lots are expired or too short-dated, every fourth item wants 30 days of
shelf life left, every fifth has a lot in quarantine, every tenth a lot without expiry,
every third is also sold in boxes of 12. Fifty customers, each with a credit limit, so
every confirm runs the credit check over the customer's open orders.

Measured through the real services (``sales.create_sales_order``,
``sales.confirm_sales_order``, ``sales.get_availability`` and ``sales.item_unit``), each
on its own connection in the transaction the API runs (``document_write``: idempotency,
audit, the feed's pick list), not through HTTP: the route adds the same JSON and
permission work to every request (``bench/requests.py`` measures that). Each order has
``--lines`` lines of distinct random items, 1 to 300 units (or 1 to 20 boxes), so a line
takes one to three lots FEFO; orders stay confirmed, so reservations and the customers'
open orders grow through the run as they would in a day.

* **create**: a 100-line draft (for scale; not the aim);
* **confirm**: credit check and FEFO reservation of the draft, the pick list published;
* **ATP 1 item**: what ``GET /stock/available`` calls for one random item;
* **ATP 100 items**: the same for every line of an order, one call per item, on one
  connection (what a client checking a whole order before confirming does today);
* **ATP 100 items, one read**: ``sales.availabilities`` of the same 100 items at once, the
  read a confirm makes (no route answers it yet);
* **floor**: in the same run and database, with the bare driver (sqlite3 or psycopg, no
  SQLAlchemy, no checks), what a confirm must at least do: in one write transaction, read
  the sellable balances, reserved sums and lot expiries of the order's items (one query
  each, ``IN`` lists) and insert as many reservation rows as the confirm made into a copy
  of ``sales_reservations`` with ``executemany``. ``confirm / floor`` is the ratio.

    .venv/bin/python bench/sales.py --database both
"""

from __future__ import annotations

import gc
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from sqlalchemy import Connection, Engine, func, insert, make_url, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sync as sync_bench
from common import ROOT, cli, console, finish, machine_info, table

from central_api.core.db import create_db_engine, write_transaction
from central_api.models import items
from central_api.models.ledger import ledger_events, site_sync_state
from central_api.models.master import item_units, locations, partners, sites
from central_api.models.sales import sales_reservations
from central_api.models.stock import stock_balances
from central_api.services import sales
from central_api.services.audit import Actor, ActorKind, AuditContext
from jxc.ids import uuid7

app = cli(__doc__)

SITE = "S01"
BINS = 40
CUSTOMERS = 50
LOT_QTY = Decimal(200)
BOX = Decimal(12)


@dataclass
class Report:
    """Milliseconds per operation, per database kind."""

    lots: int
    lines: int
    orders: int
    machine: dict[str, Any]
    timings: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Wall milliseconds per operation, per database kind."""
    cpu: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """This process's CPU milliseconds of the same operations (PostgreSQL's own is not in
    it): steadier than wall time on a shared machine."""
    reserved_rows: dict[str, float] = field(default_factory=dict)


def _expiry(today: date, item: int, lot: int) -> date | None:
    """Lot ``lot`` of item ``item``: a week apart, the first three or four already expired
    or too short-dated; every tenth item's last lot has no expiry."""
    if item % 10 == 9 and lot == 49:
        return None
    return today + timedelta(days=lot * 8 - 24 + item % 7)


def _seed(engine: Engine, item_count: int, lot_count: int, today: date) -> None:
    now = datetime.now(UTC)
    codes = [f"ITEM-{i:05d}" for i in range(item_count)]
    bins = [f"A-{b:02d}" for b in range(1, BINS + 1)]
    balance_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    for i, code in enumerate(codes):
        for k in range(lot_count):
            lot = f"L{i:05d}-{k:02d}"
            where = "Q" if i % 5 == 0 and k == 5 else bins[(i * lot_count + k) % BINS]
            balance_rows.append(
                {"site_id": SITE, "location": where, "item": code, "lot": lot, "uom": "EA"}
                | {"qty": LOT_QTY, "updated_at": now}
            )
            event_rows.append(
                {"event_id": str(uuid7()), "site_id": SITE, "seq": len(event_rows) + 1}
                | {"occurred_at": now, "received_at": now, "kind": "receipt", "item": code}
                | {"lot": lot, "expiry": _expiry(today, i, k), "location": where}
                | {"qty": LOT_QTY, "uom": "EA"}
            )
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            insert(sites).values(
                site_id=SITE, kind="warehouse", name=SITE, name_en=SITE, active=True, updated_at=now
            )
        )
        connection.execute(
            insert(site_sync_state).values(
                site_id=SITE, acked_through_seq=len(event_rows), updated_at=now
            )
        )
        place = {"site_id": SITE, "active": True, "version": 1, "updated_at": now}
        connection.execute(
            insert(locations),
            [place | {"code": b, "level": "bin", "kind": "storage", "name": b} for b in bins]
            + [place | {"code": "Q", "level": "zone", "kind": "quarantine", "name": "Q"}],
        )
        connection.execute(
            insert(items),
            [
                {"item_code": code, "name": code, "uom": "EA", "active": True, "version": 1}
                | {"updated_at": now, "lot_tracked": True, "expiry_tracked": True}
                | {"min_remaining_days": 30 if i % 4 == 0 else None}
                for i, code in enumerate(codes)
            ],
        )
        connection.execute(
            insert(item_units),
            [
                {"item_code": code, "uom": "BOX", "factor": BOX, "version": 1, "updated_at": now}
                for i, code in enumerate(codes)
                if i % 3 == 0
            ],
        )
        connection.execute(
            insert(partners),
            [
                {"code": f"CUS-{c:02d}", "is_supplier": False, "is_customer": True}
                | {"name": f"customer {c}", "name_en": "", "tax_id": "", "contact": ""}
                | {"phone": "", "email": "", "address": "", "active": True, "updated_at": now}
                | {"credit_limit": Decimal(10**9)}
                for c in range(CUSTOMERS)
            ],
        )
        for first in range(0, len(balance_rows), 10_000):
            connection.execute(insert(stock_balances), balance_rows[first : first + 10_000])
            connection.execute(insert(ledger_events), event_rows[first : first + 10_000])
    if engine.dialect.name == "postgresql":
        # Autovacuum would analyse the new rows of a live database soon; do it now, so the
        # planner knows the tables are no longer empty.
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()


def _audit() -> AuditContext:
    return AuditContext(actor=Actor(ActorKind.USER, "seller"))


def _order_lines(rng: random.Random, item_count: int, lines: int) -> list[sales.SoLineInput]:
    picked = rng.sample(range(item_count), lines)
    made = []
    for i in picked:
        boxes = i % 3 == 0 and rng.random() < 0.5
        qty = Decimal(rng.randint(1, 20) if boxes else rng.randint(1, 300))
        made.append(
            sales.SoLineInput(
                item_code=f"ITEM-{i:05d}",
                qty=qty,
                uom="BOX" if boxes else None,
                unit_price=Decimal("12.50"),
                tax_rate=Decimal("0.13"),
            )
        )
    return made


class Clock:
    """Wall and CPU milliseconds of each measured operation, by name."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    @contextmanager
    def measure(self, name: str, *, keep: bool = True) -> Iterator[None]:
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        if keep:
            self.wall.setdefault(name, []).append((time.perf_counter() - wall) * 1000)
            self.cpu.setdefault(name, []).append((time.process_time() - cpu) * 1000)


def _run_orders(
    engine: Engine,
    rng: random.Random,
    clock: Clock,
    floor: Floor,
    sizes: tuple[int, int],
    orders: int,
    warmup: int,
) -> list[tuple[list[str], int]]:
    """Create and confirm ``orders`` orders (after ``warmup`` unmeasured ones) of
    ``sizes`` (items, lines); per measured order its item codes and how many reservation
    rows its confirm made."""
    item_count, lines = sizes
    made: list[tuple[list[str], int]] = []
    for number in range(warmup + orders):
        order_lines = _order_lines(rng, item_count, lines)
        keep = number >= warmup
        with clock.measure("create", keep=keep), engine.connect() as connection:
            so = sales.create_sales_order(
                connection,
                customer=f"CUS-{number % CUSTOMERS:02d}",
                site_id=SITE,
                note="bench",
                min_remaining_days=rng.choice((None, None, 10)),
                lines=order_lines,
                created_by="seller",
                visible=None,
                audit=_audit(),
            )
        command = sales.SoCommand(
            so_id=so.so_id, actor="seller", visible=None, if_match=None, audit=_audit()
        )
        with clock.measure("confirm", keep=keep), engine.connect() as connection:
            done = sales.confirm_sales_order(connection, command)
        assert done.status is sales.SoStatus.CONFIRMED
        if keep:
            codes = [line.item_code for line in done.lines]
            rows = sum(len(line.reservations) for line in done.lines)
            floor.run(clock, number, codes, rows)
            made.append((codes, rows))
    return made


def _atp(
    engine: Engine, rng: random.Random, clock: Clock, sizes: tuple[int, int], checks: int
) -> None:
    """ATP as the route reads it: one item, and every item of a 100-line order."""
    item_count, lines = sizes

    def one(connection: Connection, code: str) -> None:
        sales.get_availability(connection, SITE, code)
        sales.item_unit(connection, code)

    for _ in range(checks):
        code = f"ITEM-{rng.randrange(item_count):05d}"
        with clock.measure("ATP 1 item"), engine.connect() as connection:
            one(connection, code)
    for _ in range(max(checks // 10, 5)):
        codes = [f"ITEM-{i:05d}" for i in rng.sample(range(item_count), lines)]
        with clock.measure(f"ATP {lines} items"), engine.connect() as connection:
            for code in codes:
                one(connection, code)
        with clock.measure(f"ATP {lines} items, one read"), engine.connect() as connection:
            sales.availabilities(connection, SITE, codes)


# --- the floor --------------------------------------------------------------------------

_FLOOR_TABLE = """CREATE TABLE floor_reservations (
    so_id VARCHAR(32) NOT NULL, line_no INTEGER NOT NULL, site_id VARCHAR(32) NOT NULL,
    item_code VARCHAR(64) NOT NULL, lot VARCHAR(40) NOT NULL, expiry DATE, qty BIGINT NOT NULL,
    PRIMARY KEY (so_id, line_no, lot))"""
_FLOOR_INSERT = "INSERT INTO floor_reservations VALUES (%s, %s, %s, %s, %s, %s, %s)"


def _floor_reads(codes: Sequence[str]) -> list[str]:
    marks = ", ".join(["%s"] * len(codes))
    return [
        "SELECT b.item, b.lot, b.uom, b.qty, l.kind FROM stock_balances b LEFT JOIN locations l"
        " ON l.site_id = b.site_id AND l.code = b.location"
        f" WHERE b.site_id = %s AND b.item IN ({marks})",
        "SELECT item_code, lot, SUM(qty) FROM sales_reservations"
        f" WHERE site_id = %s AND item_code IN ({marks}) GROUP BY item_code, lot",
        "SELECT item, lot, MIN(expiry) FROM ledger_events"
        f" WHERE item IN ({marks}) AND expiry IS NOT NULL GROUP BY item, lot",
    ]


def _floor_rows(number: int, codes: Sequence[str], rows: int) -> list[tuple[Any, ...]]:
    return [
        (f"FLOOR{number:06d}", n + 1, SITE, codes[n % len(codes)], f"L-{n}", "2030-01-01", 10**6)
        for n in range(rows)
    ]


class Floor:
    """The raw floor on its own driver connection to the same database, run right after
    each measured confirm (so load on the machine falls on both alike)."""

    def __init__(self, url: str) -> None:
        self.lite: sqlite3.Connection | None = None
        self.pg: psycopg.Connection[Any] | None = None
        if url.startswith("sqlite"):
            self.lite = sqlite3.connect(make_url(url).database or "", isolation_level=None)
            for pragma in ("busy_timeout=5000", "journal_mode=WAL", "synchronous=FULL"):
                self.lite.execute(f"PRAGMA {pragma}")
            self.lite.execute(_FLOOR_TABLE)
        else:
            plain = make_url(url).set(drivername="postgresql")
            self.pg = psycopg.connect(plain.render_as_string(hide_password=False))
            self.pg.execute(_FLOOR_TABLE)
            self.pg.commit()

    def run(self, clock: Clock, number: int, codes: Sequence[str], rows: int) -> None:
        """Read the lots of ``codes`` and write ``rows`` reservation rows, in one write
        transaction."""
        reads = _floor_reads(codes)
        values = _floor_rows(number, codes, rows)
        if self.lite is not None:
            lite = self.lite
            reads = [query.replace("%s", "?") for query in reads]
            with clock.measure("floor"):
                lite.execute("BEGIN IMMEDIATE")
                lite.execute(reads[0], (SITE, *codes)).fetchall()
                lite.execute(reads[1], (SITE, *codes)).fetchall()
                lite.execute(reads[2], tuple(codes)).fetchall()
                lite.executemany(_FLOOR_INSERT.replace("%s", "?"), values)
                lite.execute("COMMIT")
            return
        assert self.pg is not None
        values = [(*row[:5], date(2030, 1, 1), row[6]) for row in values]
        with clock.measure("floor"), self.pg.transaction(), self.pg.cursor() as cursor:
            cursor.execute(reads[0], (SITE, *codes)).fetchall()
            cursor.execute(reads[1], (SITE, *codes)).fetchall()
            cursor.execute(reads[2], tuple(codes)).fetchall()
            cursor.executemany(_FLOOR_INSERT, values)

    def close(self) -> None:
        for connection in (self.lite, self.pg):
            if connection is not None:
                connection.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _print(report: Report) -> None:
    shown = table(
        f"{report.lots:,} lots in stock; orders of {report.lines} lines, "
        f"{report.orders} measured per database (milliseconds)",
        ["database", "operation", "n", "p50", "p95", "p99", "max", "CPU p50", "CPU p99"],
        left={"database", "operation"},
    )
    for kind, timings in report.timings.items():
        cpu = report.cpu[kind]
        for name, values in timings.items():
            shown.add_row(
                kind,
                name,
                str(len(values)),
                *(f"{_pct(values, q):.1f}" for q in (0.5, 0.95, 0.99)),
                f"{max(values):.1f}",
                *(f"{_pct(cpu[name], q):.1f}" for q in (0.5, 0.99)),
            )
        confirm, floor = timings["confirm"], timings["floor"]
        shown.add_row(
            kind,
            "confirm / floor",
            "",
            *(f"{_pct(confirm, q) / _pct(floor, q):.1f}x" for q in (0.5, 0.95, 0.99)),
            "",
            *(f"{_pct(cpu['confirm'], q) / _pct(cpu['floor'], q):.1f}x" for q in (0.5, 0.99)),
        )
    console.print(shown)
    for kind, rows in report.reserved_rows.items():
        console.print(f"{kind}: {rows:.0f} reservation rows per confirmed order on average")


@app.command()
def main(
    items_: Annotated[int, typer.Option("--items", min=100, help="items in stock")] = 2_000,
    lots: Annotated[int, typer.Option(min=50, max=99, help="lots of each item")] = 50,
    lines: Annotated[int, typer.Option(min=1, max=500, help="lines of an order")] = 100,
    orders: Annotated[int, typer.Option(min=10, help="orders measured per database")] = 200,
    warmup: Annotated[int, typer.Option(min=0, help="orders confirmed first, unmeasured")] = 5,
    checks: Annotated[int, typer.Option(min=10, help="one-item ATP checks")] = 500,
    database: Annotated[
        sync_bench.Database, typer.Option(help="sqlite, postgresql or both")
    ] = sync_bench.Database.BOTH,
    postgres_url: Annotated[str, typer.Option()] = "postgresql://postgres@127.0.0.1:5432/test",
    seed: Annotated[int, typer.Option(help="random seed of the orders")] = 15,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Confirm ORDERS 100-line orders over 100,000 lots; ATP checks; the raw floor beside."""
    workdir = ROOT / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = (
        [sync_bench.Database.SQLITE, sync_bench.Database.POSTGRESQL]
        if database is sync_bench.Database.BOTH
        else [database]
    )
    report = Report(lots=items_ * lots, lines=lines, orders=orders, machine=machine_info())
    today = datetime.now(UTC).date()
    sizes = (items_, lines)
    for kind in kinds:
        rng, clock = random.Random(seed), Clock()
        with sync_bench.scratch_database(
            kind, name=f"sales-{kind}", workdir=workdir, admin_url=postgres_url
        ) as url:
            engine = create_db_engine(url)
            floor: Floor | None = None
            try:
                start = time.perf_counter()
                _seed(engine, items_, lots, today)
                console.print(
                    f"{kind}: seeded {items_ * lots:,} lots in {time.perf_counter() - start:.1f} s"
                )
                floor = Floor(url)
                made = _run_orders(engine, rng, clock, floor, sizes, orders, warmup)
                _atp(engine, rng, clock, sizes, checks)
                with engine.connect() as connection:
                    held = connection.execute(select(func.count()).select_from(sales_reservations))
                    console.print(f"{kind}: {held.scalar_one():,} reservation rows at the end")
            finally:
                if floor is not None:
                    floor.close()
                engine.dispose()
        report.timings[str(kind)] = clock.wall
        report.cpu[str(kind)] = clock.cpu
        report.reserved_rows[str(kind)] = statistics.mean(rows for _codes, rows in made)
    finish(report, _print, json_out)


if __name__ == "__main__":
    app()
