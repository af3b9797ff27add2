"""Sync benchmarks of issue #3, "What must be measured".

1. **Drain a backlog into central.** Build N valid ledger events of one site (a few hundred
   items, their lots and home locations; the event-building time is reported apart and
   counted nowhere else), then push them through the real ingest path
   (``central_api.services.ingest.ingest_batch``, and the answer made from its outcome by
   ``central_api.schemas.sync.push_ack``, as the route does) in batches of 5000 on a
   freshly migrated database. Baseline, in the same database and the same run: the same rows, as the
   database stores them, inserted straight into an identical table with ``executemany``
   (SQLite) or ``COPY`` (PostgreSQL), one transaction per batch, alternating with the
   ingest batch by batch so that both sides run under the same conditions. A second floor in
   the same run, "raw, same rows": the driver alone writing the events and every other row
   the push writes (an entry per event, balances and valuation state upserted, FIFO
   layers, PO lines and orders updated, the watermark) into copies of central's tables
   with their keys and indexes, one transaction per batch, between the other two sides;
   both ratios are printed. Once more with fewer
   events through HTTP: a real ``jxc central serve`` process on loopback, fed the JSON an
   edge would send, so the cost of HTTP and of validating the wire contract shows.
   Two backlogs, each drained into its own fresh database against its own raw baseline:
   ``plain`` (receipts carry their own unit cost, no master data: ingest's own path) and
   ``documents`` (the same movements, but every receipt names a line of an open purchase
   order and carries no cost, items are in the master with a valuation method, a quarter
   FIFO; optionally a share of events arrives late): so ``po_progress`` counts every
   receipt and ``valuation`` prices it at the PO line and values every sale against it.
2. **Edge append latency.** Single ``Ledger.append`` calls on a file on the real disk,
   against a raw sqlite3 single-row ``INSERT`` + ``COMMIT`` with the same pragmas.

Run ``.venv/bin/python bench/sync.py --help``. Figures and how to read them:
``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import math
import pstats
import random
import secrets
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import partial
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
    progress_bars,
    table,
)
from psycopg import sql
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKeyConstraint,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    func,
    insert,
    make_url,
    select,
    type_coerce,
)

from central_api.core.db import create_db_engine, upgrade_database
from central_api.models import (
    items,
    ledger_events,
    metadata,
    purchase_order_lines,
    purchase_orders,
    site_sync_state,
    stock_balances,
    valuation_entries,
    valuation_layers,
    valuation_state,
)
from central_api.models.base import MicroUnits
from central_api.models.stock import NO_LOT
from central_api.schemas import sync as sync_schemas
from central_api.schemas.sync import push_ack
from central_api.services import ingest as ingest_module
from central_api.services.auth import add_site
from central_api.services.ingest import ingest_batch
from central_api.services.projections import built_in_projections
from edge_agent.auth import SiteTokenAuth
from edge_agent.ledger import EventDraft, Ledger
from jxc.contract import (
    INBOUND_KINDS,
    MAX_EVENTS_PER_BATCH,
    OUTBOUND_KINDS,
    EventKind,
    EventStatus,
    LedgerEvent,
    PushBatch,
)
from jxc.ids import uuid7
from jxc.paths import SYNC_EVENTS

SITE = "BENCH-01"
RAW_TABLE = "bench_raw_events"


class Database(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
    BOTH = "both"


class Backlog(StrEnum):
    PLAIN = "plain"
    DOCUMENTS = "documents"
    BOTH = "both"


# --------------------------------------------------------------------------- the site


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    uom: str
    lots: tuple[tuple[str, date | None], ...]
    """Empty for an item that is not lot-tracked."""
    homes: tuple[str, ...]
    """The few locations the item is kept at."""
    unit_cost: Decimal


@dataclass(frozen=True, slots=True)
class Catalog:
    items: tuple[Item, ...]
    locations: tuple[str, ...]
    devices: tuple[str, ...]
    actors: tuple[str, ...]


def make_catalog(rng: random.Random, *, items: int = 300) -> Catalog:
    """A plausible single site: 300 items, ~60% lot-tracked, ~2 home locations each."""
    locations = tuple(
        f"{zone}-{aisle:02d}-{level}" for zone in "ABCD" for aisle in range(1, 7) for level in "12"
    )
    catalog_items = []
    for number in range(1, items + 1):
        uom = rng.choice(("pcs", "pcs", "pcs", "box", "kg", "l", "m"))
        lots: tuple[tuple[str, date | None], ...] = ()
        if rng.random() < 0.6:
            perishable = rng.random() < 0.5
            lots = tuple(
                (
                    f"L26{rng.randint(1, 12):02d}-{rng.randint(0, 9999):04d}",
                    date(2027, rng.randint(1, 12), rng.randint(1, 28)) if perishable else None,
                )
                for _ in range(rng.randint(1, 4))
            )
        cost = Decimal(rng.randint(5, 500_000)).scaleb(-2)
        catalog_items.append(
            Item(
                code=f"SKU-{number:05d}",
                uom=uom,
                lots=lots,
                homes=tuple(rng.sample(locations, rng.randint(1, 3))),
                unit_cost=cost,
            )
        )
    return Catalog(
        items=tuple(catalog_items),
        locations=locations,
        devices=("scanner-dock-1", "scanner-dock-2", "scale-1", "pos-1", "pos-2", "handheld-7"),
        actors=("zhang.wei", "li.na", "wang.fang", "chen.jie", "刘洋", "赵敏"),
    )


_KIND_WEIGHTS = {
    EventKind.RECEIPT: 25,
    EventKind.SALE: 35,
    EventKind.ISSUE: 10,
    EventKind.RETURN: 3,
    EventKind.TRANSFER_OUT: 9,
    EventKind.TRANSFER_IN: 9,
    EventKind.ADJUSTMENT: 6,
    EventKind.SCRAP: 3,
}


def random_draft(rng: random.Random, catalog: Catalog, number: int) -> EventDraft:
    """One movement as a station would record it."""
    kind = rng.choices(list(_KIND_WEIGHTS), weights=list(_KIND_WEIGHTS.values()))[0]
    item = rng.choice(catalog.items)
    lot, expiry = rng.choice(item.lots) if item.lots else (None, None)
    if item.uom in ("kg", "l", "m"):
        magnitude = Decimal(rng.randint(1, 250_000)).scaleb(-3)  # up to 3 places
    else:
        magnitude = Decimal(rng.randint(1, 48))
    if kind in OUTBOUND_KINDS:
        qty = -magnitude
    elif kind in INBOUND_KINDS:
        qty = magnitude
    else:
        qty = magnitude if rng.random() < 0.5 else -magnitude
    refs = {
        EventKind.RECEIPT: f"PO-2026-{number // 40:06d}:{number % 40 + 1}",
        EventKind.SALE: f"SO-2026-{number // 5:07d}:{number % 5 + 1}",
        EventKind.ISSUE: f"WO-{number // 12:06d}:{number % 12 + 1}",
        EventKind.RETURN: f"RMA-{number:07d}:1",
        EventKind.TRANSFER_OUT: f"TR-{number // 20:06d}:{number % 20 + 1}",
        EventKind.TRANSFER_IN: f"TR-{number // 20:06d}:{number % 20 + 1}",
        EventKind.ADJUSTMENT: f"CNT-{number // 200:05d}:{number % 200 + 1}",
        EventKind.SCRAP: None,
    }
    return EventDraft(
        kind=kind,
        item=item.code,
        location=rng.choice(item.homes),
        qty=qty,
        uom=item.uom,
        lot=lot,
        expiry=expiry,
        unit_cost=item.unit_cost if kind is EventKind.RECEIPT else None,
        ref=refs[kind],
        device_id=rng.choice(catalog.devices),
        actor=rng.choice(catalog.actors),
    )


def build_events(count: int, *, seed: int, progress: Progress) -> list[LedgerEvent]:
    """``count`` validated events of SITE, seq 1..count, built the way the edge builds them."""
    rng = random.Random(seed)
    catalog = make_catalog(rng)
    at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    events: list[LedgerEvent] = []
    task = progress.add_task("build events", total=count)
    for seq in range(1, count + 1):
        draft = random_draft(rng, catalog, seq)
        at += timedelta(microseconds=rng.randint(100_000, 20_000_000))
        events.append(
            LedgerEvent(
                event_id=uuid7(),
                site_id=SITE,
                seq=seq,
                occurred_at=at,
                kind=draft.kind,
                item=draft.item,
                lot=draft.lot,
                expiry=draft.expiry,
                location=draft.location,
                qty=draft.qty,
                uom=draft.uom,
                unit_cost=draft.unit_cost,
                ref=draft.ref,
                device_id=draft.device_id,
                actor=draft.actor,
            )
        )
        if seq % 5000 == 0:
            progress.update(task, completed=seq)
    progress.update(task, completed=count)
    return events


PO_LINES = 40
"""Receipts per purchase order in the ``documents`` backlog: each receipt its own line."""


def catalog_of(seed: int) -> Catalog:
    """The catalog :func:`build_events` draws from with ``seed`` (its first use of the rng)."""
    return make_catalog(random.Random(seed))


def documents_backlog(
    events: Sequence[LedgerEvent], *, late_fraction: float, seed: int
) -> list[LedgerEvent]:
    """The same movements as ``events``, as a site working to documents: every receipt
    names its own line of a purchase order (``PO-<n>``, :data:`PO_LINES` lines each)
    and carries no unit cost, so valuation prices it at the line. With
    ``late_fraction``, that share of events (never a receipt's line order) is booked an
    hour before it was, so it reaches central after later movements of its (site, item)
    and valuation re-values from its point."""
    rng = random.Random(seed + 1)
    built: list[LedgerEvent] = []
    receipts = 0
    for event in events:
        fields = event.model_dump()
        if event.kind is EventKind.RECEIPT:
            fields.update(
                doc_type="purchase_order",
                doc_id=f"PO-{receipts // PO_LINES:06d}",
                doc_line=receipts % PO_LINES + 1,
                unit_cost=None,
            )
            receipts += 1
        if late_fraction and rng.random() < late_fraction:
            fields["occurred_at"] = event.occurred_at - timedelta(hours=1)
        built.append(LedgerEvent.model_validate(fields))
    return built


def seed_documents(engine: Engine, catalog: Catalog, events: Sequence[LedgerEvent]) -> None:
    """The master data the ``documents`` backlog refers to, before the clock starts:
    every catalog item (a quarter valued FIFO, the rest moving average) and, per
    receipt, the PO line it names, ordering exactly what it receives at the item's cost."""
    now = _now()
    item_rows = [
        {
            "item_code": item.code,
            "name": item.code,
            "uom": item.uom,
            "active": True,
            "version": 1,
            "updated_at": now,
            "purchase_price": item.unit_cost,
            "valuation": "fifo" if number % 4 == 0 else "moving_average",
        }
        for number, item in enumerate(catalog.items)
    ]
    costs = {item.code: item.unit_cost for item in catalog.items}
    lines = [
        {
            "po_id": event.doc_id,
            "line_no": event.doc_line,
            "item_code": event.item,
            "qty": event.qty,
            "uom": event.uom,
            "base_qty": event.qty,
            "base_uom": event.uom,
            "unit_price": costs[event.item],
            "over_tolerance": Decimal(0),
            "under_tolerance": Decimal(0),
            **dict.fromkeys(_PROGRESS_COLUMNS, Decimal(0)),
        }
        for event in events
        if event.doc_type == "purchase_order"
    ]
    orders = [
        {
            "po_id": po_id,
            "supplier_code": "SUP-1",
            "site_id": SITE,
            "status": "sent",
            "note": "",
            "created_by": "bench",
            "created_at": now,
            "version": 1,
            "updated_at": now,
        }
        for po_id in sorted({line["po_id"] for line in lines})
    ]
    with engine.begin() as connection:
        connection.execute(insert(items), item_rows)
        if orders:
            connection.execute(insert(purchase_orders), orders)
            connection.execute(insert(purchase_order_lines), lines)


_PROGRESS_COLUMNS = (
    "received_qty",
    "accepted_qty",
    "quarantined_qty",
    "returned_qty",
    "invoiced_qty",
)


def verify_documents(engine: Engine, events: Sequence[LedgerEvent]) -> None:
    """Every receipt was counted on its PO line, and the value of stock is what came in
    at the lines' prices less the cost of goods (valuation's own closing rule)."""
    received = sum(event.qty for event in events if event.doc_type == "purchase_order")
    with engine.connect() as connection:
        counted = sum(connection.execute(select(purchase_order_lines.c.received_qty)).scalars())
        if counted != received:
            raise RuntimeError(f"PO lines counted {counted} received, the ledger says {received}")
        if "valuation" not in _PROJECTIONS.names():
            return
        state, entry = valuation_state.c, valuation_entries.c
        held = connection.execute(
            select(func.sum(_int(state.qty)), func.sum(_int(state.value)))
        ).one()
        flows = connection.execute(
            select(
                func.sum(_int(entry.qty)),
                func.sum(_int(entry.in_value) - _int(entry.cogs) - _int(entry.variance)),
            )
        ).one()
    if tuple(held) != tuple(flows):
        raise RuntimeError(f"valuation holds {tuple(held)}, its entries sum to {tuple(flows)}")


def _int(column: Any) -> Any:
    """An amount column as the integer (micro-units) it stores: sums stay exact."""
    return type_coerce(column, BigInteger)


def batches_of(events: Sequence[LedgerEvent], size: int) -> list[PushBatch]:
    return [
        PushBatch(site_id=SITE, events=list(events[start : start + size]))
        for start in range(0, len(events), size)
    ]


# --------------------------------------------------------------------------- results


@dataclass
class DrainResult:
    database: str
    backlog: str
    events: int
    batch_size: int
    ingest_s: float
    ingest_eps: float
    raw_s: float
    raw_rows_per_s: float
    ratio: float
    """ingest events/s divided by raw rows/s."""
    cpu_ratio: float
    """The same by this process's CPU time (raw CPU s over ingest CPU s): on a machine
    whose cores are shared with others, wall time measures the neighbours as much as the
    code. On SQLite the database's work is in this process; on PostgreSQL it is not."""
    batch_ms_p50: float
    batch_ms_max: float
    raw_ms_p50: float
    """The raw side's median batch, next to the push's: their ratio ignores the stalls
    (a WAL checkpoint, a slow fsync) that land on one side or the other."""
    raw_ms_max: float
    first_tenth_eps: float
    """Ingest rate over the first tenth of the backlog (small tables)..."""
    last_tenth_eps: float
    """...and over the last tenth (the ledger table near its full size)."""
    replay_eps: float
    """Re-pushing already held batches: every event comes back ``duplicate``."""
    first_http_events_eps: float = 0.0
    """Direct ingest rate over the same first events the HTTP run sends, for comparison."""
    http_events: int = 0
    http_eps: float = 0.0
    http_s: float = 0.0
    phases_ms: dict[str, float] = field(default_factory=dict)
    """With ``--phases``: milliseconds per batch spent in each step of the push."""
    valuation: bool = True
    floor_s: float = 0.0
    """"Raw, same rows": the seconds of the driver writing every row the push writes."""
    floor_ratio: float = 0.0
    """Ingest against that floor: floor seconds over ingest seconds (the old ``ratio``
    is the same quotient against the events-only floor)."""
    floor_cpu_ratio: float = 0.0
    floor_ms_p50: float = 0.0
    floor_rows_per_event: dict[str, float] = field(default_factory=dict)
    """Rows the floor wrote per event, by table (an upsert or update counts as one)."""
    unmirrored_per_event: dict[str, float] = field(default_factory=dict)
    """Rows the push left in tables the floor does not write (alerts, audit), per event."""
    ingest_cpu_s: float = 0.0
    """This process's CPU seconds over the pushes (the ratios' denominator): what an A/B
    of two code versions compares when the neighbours' load moves the wall time."""
    raw_cpu_s: float = 0.0


@dataclass
class LatencyResult:
    name: str
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float


@dataclass
class Report:
    command: str
    machine: dict[str, Any]
    build_events: int = 0
    build_s: float = 0.0
    drains: list[DrainResult] = field(default_factory=list)
    latencies: list[LatencyResult] = field(default_factory=list)


# --------------------------------------------------------------------------- scratch databases


@contextlib.contextmanager
def scratch_database(kind: Database, *, name: str, workdir: Path, admin_url: str) -> Iterator[str]:
    """A new, migrated, empty central database; removed afterwards."""
    if kind is Database.SQLITE:
        path = workdir / f"{name}.db"
        _remove_sqlite(path)
        url = f"sqlite:///{path}"
        try:
            upgrade_database(url)
            yield url
        finally:
            _remove_sqlite(path)
        return
    database = f"jxc_bench_{name.replace('-', '_')}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    pg_url = make_url(admin_url).set(drivername="postgresql+psycopg", database=database)
    try:
        upgrade_database(pg_url)
        yield pg_url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def raw_table() -> Table:
    """A table identical to ``ledger_events`` (columns, types, keys), under another name."""
    bench_metadata = MetaData(naming_convention=metadata.naming_convention)
    site_sync_state.to_metadata(bench_metadata)
    return Table(
        RAW_TABLE,
        bench_metadata,
        *(Column(column.name, column.type, nullable=column.nullable) for column in ledger_events.c),
        PrimaryKeyConstraint("event_id"),
        ForeignKeyConstraint(["site_id"], [site_sync_state.c.site_id]),
        UniqueConstraint("site_id", "seq"),
    )


def checkpoint(engine: Engine) -> None:
    """Flush the write-ahead log, so one measurement does not pay for the previous one."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            connection.exec_driver_sql("CHECKPOINT")
            connection.commit()


# --------------------------------------------------------------------------- drain: raw baseline


def stored_row(event: LedgerEvent, received_at: datetime) -> dict[str, Any]:
    """The row ingest writes for ``event``, by column name (``ingest._ledger_rows`` writes
    the same values, in an order of its own)."""
    return {
        "event_id": str(event.event_id),
        "site_id": event.site_id,
        "seq": event.seq,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "kind": event.kind.value,
        "item": event.item,
        "lot": event.lot,
        "expiry": event.expiry,
        "location": event.location,
        "qty": event.qty,
        "uom": event.uom,
        "unit_cost": event.unit_cost,
        "ref": event.ref,
        "device_id": event.device_id,
        "actor": event.actor,
        "doc_type": event.doc_type,
        "doc_id": event.doc_id,
        "doc_line": event.doc_line,
    }


def driver_rows_maker(engine: Engine) -> Callable[[Sequence[LedgerEvent]], list[tuple[Any, ...]]]:
    """Turn events into the exact parameter tuples the driver receives (column types applied)."""
    dialect = engine.dialect
    processors = [
        column.type.dialect_impl(dialect).bind_processor(dialect) for column in ledger_events.c
    ]
    names = [column.name for column in ledger_events.c]

    def make(events: Sequence[LedgerEvent]) -> list[tuple[Any, ...]]:
        received_at = datetime.now(UTC)
        rows = []
        for event in events:
            row = stored_row(event, received_at)
            rows.append(
                tuple(
                    row[name] if processor is None else processor(row[name])
                    for name, processor in zip(names, processors, strict=True)
                )
            )
        return rows

    return make


@contextlib.contextmanager
def raw_inserter(engine: Engine) -> Iterator[Callable[[PushBatch], tuple[float, float]]]:
    """Yield ``insert(batch) -> (seconds, CPU seconds)``: the batch's rows into RAW_TABLE,
    one transaction.

    The rows are made before the clock starts: the raw side is the database's own cost
    of storing them, nothing else.
    """
    table = raw_table()
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(
            insert(site_sync_state).values(site_id=SITE, acked_through_seq=0, updated_at=_now())
        )
    make_rows = driver_rows_maker(engine)
    columns = [column.name for column in ledger_events.c]
    inserted = 0
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        if engine.dialect.name == "sqlite":
            assert isinstance(dbapi, sqlite3.Connection)
            sqlite_db = dbapi
            statement = (
                f"INSERT INTO {RAW_TABLE} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})"
            )

            def insert_sqlite(batch: PushBatch) -> tuple[float, float]:
                nonlocal inserted
                rows = make_rows(batch.events)
                gc.collect()
                started, cpu = time.perf_counter(), time.process_time()
                sqlite_db.execute("BEGIN IMMEDIATE")
                sqlite_db.executemany(statement, rows)
                sqlite_db.execute("COMMIT")
                inserted += len(rows)
                return time.perf_counter() - started, time.process_time() - cpu

            yield insert_sqlite
        else:
            assert isinstance(dbapi, psycopg.Connection)
            pg = dbapi
            names = sql.SQL(", ").join(map(sql.Identifier, columns))
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(RAW_TABLE), names
            )
            with pg.cursor() as cursor:
                cursor.execute(
                    sql.SQL("SELECT {} FROM {} LIMIT 0").format(names, sql.Identifier(RAW_TABLE))
                )
                types = [column.type_code for column in cursor.description or ()]
            pg.commit()

            def insert_postgresql(batch: PushBatch) -> tuple[float, float]:
                nonlocal inserted
                rows = make_rows(batch.events)
                gc.collect()
                started, cpu = time.perf_counter(), time.process_time()
                with pg.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
                pg.commit()
                inserted += len(rows)
                return time.perf_counter() - started, time.process_time() - cpu

            yield insert_postgresql
    finally:
        raw.close()
    with engine.connect() as connection:
        held = connection.execute(select(func.count()).select_from(table)).scalar_one()
    if held != inserted:
        raise RuntimeError(f"raw table holds {held} rows, {inserted} were inserted")


# ------------------------------------------------------------ drain: the same-rows floor

FLOOR_PREFIX = "bench_floor_"
"""The same-rows floor writes into copies of central's own tables under this prefix."""

_MICRO = Decimal("0.000001")


def shadow_table(table: Table, bench_metadata: MetaData) -> Table:
    """A copy of ``table`` named FLOOR_PREFIX + its name: its columns, primary key, unique
    constraints and indexes (partial ones too), so a row written to it costs what one
    written to the original does; no foreign keys (the floor checks nothing)."""
    copy = Table(
        FLOOR_PREFIX + table.name,
        bench_metadata,
        *(Column(column.name, column.type, nullable=column.nullable) for column in table.c),
        PrimaryKeyConstraint(*(column.name for column in table.primary_key.columns)),
        *(
            UniqueConstraint(*(column.name for column in constraint.columns))
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        ),
    )
    for number, index in enumerate(sorted(table.indexes, key=lambda i: str(i.name))):
        Index(
            f"ix_{copy.name}_{number}",
            *(copy.c[column.name] for column in index.columns),
            unique=index.unique,
            **index.dialect_kwargs,
        )
    return copy


def _row_maker(engine: Engine, table: Table) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row by column name into the parameter tuple the driver receives for ``table``."""
    dialect = engine.dialect
    pairs = [
        (column.name, column.type.dialect_impl(dialect).bind_processor(dialect))
        for column in table.c
    ]

    def make(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            row[name] if processor is None else processor(row[name]) for name, processor in pairs
        )

    return make


@dataclass
class _FloorItem:
    """What the floor carries per item from one batch to the next, to make the rows a
    push would write: the running quantity and value (moving average, or the open
    layers of a FIFO item), the last cost."""

    qty: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    last_cost: Decimal = Decimal(1)
    layers: list[list[Any]] = field(default_factory=list)
    """FIFO only: [event_id, qty, value] oldest first."""


@dataclass
class FloorBatch:
    """One batch's rows for every table the push writes, as driver tuples, by table."""

    events: list[tuple[Any, ...]]
    entries: list[tuple[Any, ...]]
    balances: list[tuple[Any, ...]]
    states: list[tuple[Any, ...]]
    layer_keys: list[tuple[str, str]]
    layers: list[tuple[Any, ...]]
    po_lines: list[tuple[Any, ...]]
    orders: list[tuple[Any, ...]]
    watermark: tuple[Any, ...]

    def counts(self) -> dict[str, int]:
        return {
            "ledger_events": len(self.events),
            "valuation_entries": len(self.entries),
            "stock_balances": len(self.balances),
            "valuation_state": len(self.states),
            "valuation_layers (deleted items + rows)": len(self.layer_keys) + len(self.layers),
            "purchase_order_lines": len(self.po_lines),
            "purchase_orders": len(self.orders),
            "site_sync_state": 1,
        }


class FloorRows:
    """Makes, before the clock starts, the rows a push of a batch writes besides its
    events: an entry per event (moving average or FIFO, in the shape valuation writes),
    a balance per (location, item, lot) touched, a valuation state per item touched, a
    FIFO item's layers (deleted and rewritten, as valuation does), the touched PO lines'
    four quantities and their orders' status, the watermark. The values are the floor's
    own cheap bookkeeping, not valuation's rules: a row's cost to write depends on its
    shape, its keys and the indexes, which are the real ones."""

    def __init__(self, engine: Engine, *, valuation: bool, fifo: frozenset[str]) -> None:
        self.valuation = valuation
        self.fifo = fifo
        self.items: dict[str, _FloorItem] = {}
        self.received: dict[tuple[str, int], Decimal] = {}
        self.version: dict[str, int] = {}
        self.make_events = driver_rows_maker(engine)
        self.entry = _row_maker(engine, valuation_entries)
        self.balance = _row_maker(engine, stock_balances)
        self.state = _row_maker(engine, valuation_state)
        self.layer = _row_maker(engine, valuation_layers)
        micro = MicroUnits().bind_processor(engine.dialect)
        self.micro: Callable[[Decimal], Any] = micro if micro is not None else (lambda v: v)
        stamp = DateTime(timezone=True).dialect_impl(engine.dialect)
        self.stamp: Callable[[datetime], Any] = stamp.bind_processor(engine.dialect) or (
            lambda v: v
        )

    def batch(self, batch: PushBatch) -> FloorBatch:
        now = _now()
        entries: list[tuple[Any, ...]] = []
        touched: dict[str, LedgerEvent] = {}
        sums: dict[tuple[str, str, str], tuple[str, Decimal]] = {}
        lines: dict[tuple[str, int], None] = {}
        for event in batch.events:
            key = (event.location, event.item, event.lot or NO_LOT)
            held = sums.get(key)
            sums[key] = (event.uom, event.qty + (held[1] if held else 0))
            if event.doc_type == "purchase_order" and event.doc_id and event.doc_line:
                line = (event.doc_id, event.doc_line)
                self.received[line] = self.received.get(line, Decimal(0)) + event.qty
                lines[line] = None
            if not self.valuation:
                continue
            touched[event.item] = event
            entries.append(self.entry(self._value(event)))
        states = [
            self.state(
                {
                    "site_id": SITE,
                    "item": item,
                    "method": "fifo" if item in self.fifo else "moving_average",
                    "qty": self.items[item].qty,
                    "value": self.items[item].value,
                    "last_cost": self.items[item].last_cost,
                    "last_at": last.occurred_at,
                    "last_event_id": str(last.event_id),
                    "updated_at": now,
                }
            )
            for item, last in touched.items()
        ]
        layer_keys = [(SITE, item) for item in touched if item in self.fifo]
        layers = [
            self.layer(
                {
                    "site_id": SITE,
                    "item": item,
                    "layer_no": number,
                    "event_id": layer[0],
                    "qty": layer[1],
                    "value": layer[2],
                }
            )
            for _site, item in layer_keys
            for number, layer in enumerate(self.items[item].layers, start=1)
        ]
        balances = [
            self.balance(
                {
                    "site_id": SITE,
                    "location": key[0],
                    "item": key[1],
                    "lot": key[2],
                    "uom": uom,
                    "qty": qty,
                    "updated_at": now,
                }
            )
            for key, (uom, qty) in sums.items()
        ]
        po_lines = [
            (*(self.micro(self.received[line]) for _ in range(2)), 0, 0, *line) for line in lines
        ]
        orders = []
        for po_id in dict.fromkeys(line[0] for line in lines):
            self.version[po_id] = self.version.get(po_id, 1) + 1
            orders.append(("partly_received", self.version[po_id], self.stamp(now), po_id))
        return FloorBatch(
            events=self.make_events(batch.events),
            entries=entries,
            balances=balances,
            states=states,
            layer_keys=layer_keys,
            layers=layers,
            po_lines=po_lines,
            orders=orders,
            watermark=(batch.events[-1].seq, self.stamp(now), SITE),
        )

    def _value(self, event: LedgerEvent) -> dict[str, Any]:
        """The entry of one event, by the floor's own running bookkeeping."""
        item = self.items.setdefault(event.item, _FloorItem())
        qty = event.qty
        in_cost: Decimal | None = None
        in_value = cogs = shortfall = Decimal(0)
        if qty > 0:
            in_cost = event.unit_cost if event.unit_cost is not None else item.last_cost
            in_value = (qty * in_cost).quantize(_MICRO)
            item.last_cost = in_cost
            if event.item in self.fifo:
                item.layers.append([str(event.event_id), qty, in_value])
        elif event.item in self.fifo:
            wanted = -qty
            while wanted and item.layers:
                layer = item.layers[0]
                taken = min(wanted, layer[1])
                part = layer[2] if taken == layer[1] else (layer[2] * taken / layer[1])
                part = part.quantize(_MICRO)
                cogs += part
                layer[1] -= taken
                layer[2] -= part
                wanted -= taken
                if not layer[1]:
                    item.layers.pop(0)
            shortfall = wanted
            cogs += (wanted * item.last_cost).quantize(_MICRO)
        else:
            average = item.value / item.qty if item.qty > 0 else item.last_cost
            cogs = (-qty * average).quantize(_MICRO)
        item.qty += qty
        item.value += in_value - cogs
        return {
            "event_id": str(event.event_id),
            "site_id": event.site_id,
            "item": event.item,
            "occurred_at": event.occurred_at,
            "kind": event.kind.value,
            "qty": qty,
            "in_cost": in_cost,
            "cost_source": "event" if event.unit_cost is not None else "po_line",
            "link": None,
            "in_value": in_value,
            "cogs": cogs,
            "variance": Decimal(0),
            "shortfall": shortfall,
            "qty_after": item.qty,
            "value_after": item.value,
            "last_cost_after": item.last_cost,
        }


def _floor_statements(engine: Engine, tables: dict[str, Table]) -> dict[str, str]:
    """The floor's SQL, one statement per table (``ingest``'s balance upsert, re-aimed)."""
    quote = engine.dialect.identifier_preparer.quote
    mark = "?" if engine.dialect.name == "sqlite" else "%s"

    def insert_sql(table: Table) -> str:
        names = ", ".join(quote(column.name) for column in table.c)
        marks = ", ".join(mark for _ in table.c)
        return f"INSERT INTO {table.name} ({names}) VALUES ({marks})"

    balance = tables["stock_balances"].name
    state = tables["valuation_state"]
    state_set = ", ".join(
        f"{quote(c.name)} = excluded.{quote(c.name)}" for c in state.c if not c.primary_key
    )
    return {
        "ledger_events": insert_sql(tables["ledger_events"]),
        "valuation_entries": insert_sql(tables["valuation_entries"]),
        "stock_balances": (
            insert_sql(tables["stock_balances"])
            + " ON CONFLICT (site_id, location, item, lot) DO UPDATE SET "
            f"qty = {balance}.qty + excluded.qty, updated_at = excluded.updated_at "
            f"WHERE {balance}.uom = excluded.uom"
        ),
        "valuation_state": insert_sql(state)
        + f" ON CONFLICT (site_id, item) DO UPDATE SET {state_set}",
        "layers_delete": (
            f"DELETE FROM {tables['valuation_layers'].name} "
            f"WHERE site_id = {mark} AND item = {mark}"
        ),
        "valuation_layers": insert_sql(tables["valuation_layers"]),
        "purchase_order_lines": (
            f"UPDATE {tables['purchase_order_lines'].name} SET received_qty = {mark}, "
            f"accepted_qty = {mark}, quarantined_qty = {mark}, returned_qty = {mark} "
            f"WHERE po_id = {mark} AND line_no = {mark}"
        ),
        "purchase_orders": (
            f"UPDATE {tables['purchase_orders'].name} SET status = {mark}, "
            f"version = {mark}, updated_at = {mark} WHERE po_id = {mark}"
        ),
        "site_sync_state": (
            f"UPDATE {tables['site_sync_state'].name} SET acked_through_seq = {mark}, "
            f"updated_at = {mark} WHERE site_id = {mark}"
        ),
    }


_FLOOR_TABLES = (
    ledger_events,
    valuation_entries,
    stock_balances,
    valuation_state,
    valuation_layers,
    purchase_order_lines,
    purchase_orders,
    site_sync_state,
)
_FLOOR_COPIED = ("purchase_orders", "purchase_order_lines")
"""Tables the floor starts as copies of (the documents backlog's POs, seeded before)."""


@contextlib.contextmanager
def floor_inserter(
    engine: Engine, *, valuation: bool, fifo: frozenset[str]
) -> Iterator[Callable[[PushBatch], tuple[float, float, dict[str, int]]]]:
    """Yield ``write(batch) -> (seconds, CPU seconds, rows by table)``: "raw, same rows",
    the batch's events and every other row a push of it writes (:class:`FloorRows`) into
    copies of central's tables, with the driver alone (``executemany``; ``COPY`` for the
    events and entries on PostgreSQL, as ingest and valuation use), one transaction.
    The rows are made before the clock starts."""
    bench_metadata = MetaData()
    tables = {table.name: shadow_table(table, bench_metadata) for table in _FLOOR_TABLES}
    with engine.begin() as connection:
        bench_metadata.create_all(connection)
        for name in _FLOOR_COPIED:
            # By name: migrations added columns in another order than the model lists them.
            listed = ", ".join(column.name for column in tables[name].c)
            connection.exec_driver_sql(
                f"INSERT INTO {tables[name].name} ({listed}) SELECT {listed} FROM {name}"
            )
        connection.execute(
            insert(tables["site_sync_state"]).values(
                site_id=SITE, acked_through_seq=0, updated_at=_now()
            )
        )
    statements = _floor_statements(engine, tables)
    rows = FloorRows(engine, valuation=valuation, fifo=fifo)
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        if engine.dialect.name == "sqlite":
            assert isinstance(dbapi, sqlite3.Connection)
            sqlite_db = dbapi

            def write_sqlite(batch: PushBatch) -> tuple[float, float, dict[str, int]]:
                made = rows.batch(batch)
                gc.collect()
                started, cpu = time.perf_counter(), time.process_time()
                sqlite_db.execute("BEGIN IMMEDIATE")
                sqlite_db.executemany(statements["ledger_events"], made.events)
                _write_rest(sqlite_db.executemany, statements, made)
                sqlite_db.execute("COMMIT")
                return time.perf_counter() - started, time.process_time() - cpu, made.counts()

            yield write_sqlite
        else:
            assert isinstance(dbapi, psycopg.Connection)
            pg = dbapi
            copies = {}
            for copied in ("ledger_events", "valuation_entries"):
                names = sql.SQL(", ").join(sql.Identifier(c.name) for c in tables[copied].c)
                target = sql.Identifier(tables[copied].name)
                with pg.cursor() as cursor:
                    cursor.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(names, target))
                    types = [column.type_code for column in cursor.description or ()]
                copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, names)
                copies[copied] = (copy_sql, types)
            pg.commit()

            def write_postgresql(batch: PushBatch) -> tuple[float, float, dict[str, int]]:
                made = rows.batch(batch)
                counts = made.counts()
                gc.collect()
                started, cpu = time.perf_counter(), time.process_time()
                with pg.cursor() as cursor:
                    for name, written in (
                        ("ledger_events", made.events),
                        ("valuation_entries", made.entries),
                    ):
                        if not written:
                            continue
                        copy_sql, types = copies[name]
                        with cursor.copy(copy_sql) as copy:
                            copy.set_types(types)
                            for row in written:
                                copy.write_row(row)
                    made.entries = []
                    _write_rest(cursor.executemany, statements, made)
                pg.commit()
                return time.perf_counter() - started, time.process_time() - cpu, counts

            yield write_postgresql
    finally:
        raw.close()


def _write_rest(
    executemany: Callable[[str, list[tuple[Any, ...]]], Any],
    statements: dict[str, str],
    made: FloorBatch,
) -> None:
    """Everything but the events, one ``executemany`` per statement (SQLite: the entries
    too; on PostgreSQL they went by ``COPY`` and are emptied before this call)."""
    for name, written in (
        ("valuation_entries", made.entries),
        ("stock_balances", made.balances),
        ("valuation_state", made.states),
        ("layers_delete", made.layer_keys),
        ("valuation_layers", made.layers),
        ("purchase_order_lines", made.po_lines),
        ("purchase_orders", made.orders),
        ("site_sync_state", [made.watermark]),
    ):
        if written:
            executemany(statements[name], written)


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- drain: ingest


_PROJECTIONS = built_in_projections()
"""What the app runs after each insert (``po_progress``, ``valuation``), so the figures
include it; ``--no-valuation`` takes valuation out, to measure what it costs."""


def ingest_one(
    connection: Connection,
    batch: PushBatch,
    *,
    expect: EventStatus = EventStatus.ACCEPTED,
    profiler: cProfile.Profile | None = None,
    cpu: list[float] | None = None,
) -> float:
    """Push one batch through ``ingest_batch`` and make the answer from its outcome, as
    the route does; the seconds it took (and the CPU seconds, appended to ``cpu``)."""
    gc.collect()
    started, cpu_started = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    ack = push_ack(
        ingest_batch(
            connection=connection,
            batch=batch,
            received_at=_now(),
            projections=_PROJECTIONS,
        )
    )
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started
    if cpu is not None:
        cpu.append(time.process_time() - cpu_started)
    _check_ack(ack.acked_through_seq, [r.status for r in ack.results], batch, expect)
    return elapsed


def raw_and_ingest(
    engine: Engine,
    batches: Sequence[PushBatch],
    *,
    progress: Progress,
    label: str,
    profiler: cProfile.Profile | None = None,
    fifo: frozenset[str] = frozenset(),
) -> tuple[Sides, Sides, Sides]:
    """Each batch into the raw table, through the same-rows floor and through ingest,
    alternately; each side's seconds.

    Alternating batch by batch, in turn which side goes first, puts both under the same
    disk, cache and neighbours: on this shared machine the raw rate alone varied by
    more than half from one run to the next when the two ran one after the other. The
    raw side and ingest keep the order they always had (raw first on even batches,
    ingest first on odd ones); the same-rows floor goes between them.
    """
    task = progress.add_task(label, total=sum(len(b.events) for b in batches))
    raw, floor, ingest = Sides(), Sides(), Sides()
    valuing = "valuation" in _PROJECTIONS.names()

    def raw_side(batch: PushBatch) -> None:
        wall, cpu = raw_insert(batch)
        raw.add(wall, cpu)

    def floor_side(batch: PushBatch) -> None:
        wall, cpu, counts = floor_write(batch)
        floor.add(wall, cpu)
        for name, count in counts.items():
            floor.rows[name] = floor.rows.get(name, 0) + count

    def ingest_side(batch: PushBatch) -> None:
        cpu: list[float] = []
        ingest.add(ingest_one(connection, batch, profiler=profiler, cpu=cpu), cpu[0])

    with (
        raw_inserter(engine) as raw_insert,
        floor_inserter(engine, valuation=valuing, fifo=fifo) as floor_write,
        engine.connect() as connection,
    ):
        for number, batch in enumerate(batches):
            sides = (raw_side, floor_side, ingest_side)
            for side in sides if number % 2 == 0 else sides[::-1]:
                side(batch)
            progress.advance(task, len(batch.events))
    return raw, floor, ingest


@dataclass
class Sides:
    """One side of the drain: seconds and CPU seconds per batch, and (the floor) the
    rows it wrote, by table."""

    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, wall: float, cpu: float) -> None:
        self.times.append(wall)
        self.cpu.append(cpu)


def replay(
    engine: Engine, batches: Sequence[PushBatch], *, progress: Progress, label: str
) -> list[float]:
    """Push already held batches again: each must come back all ``duplicate``."""
    task = progress.add_task(label, total=sum(len(b.events) for b in batches))
    times = []
    with engine.connect() as connection:
        for batch in batches:
            times.append(ingest_one(connection, batch, expect=EventStatus.DUPLICATE))
            progress.advance(task, len(batch.events))
    return times


def _check_ack(acked: int, statuses: Sequence[str], batch: PushBatch, expect: EventStatus) -> None:
    last = batch.events[-1].seq
    if acked < last or any(status != expect for status in statuses):
        wrong = sorted({str(s) for s in statuses if s != expect})
        raise RuntimeError(f"batch ending at seq {last}: acked {acked}, statuses {wrong}")


def verify_central(engine: Engine, events: Sequence[LedgerEvent]) -> None:
    """The ledger holds every event once and the balances sum to the ledger."""
    with engine.connect() as connection:
        held = connection.execute(select(func.count()).select_from(ledger_events)).scalar_one()
        balance_total = sum(connection.execute(select(stock_balances.c.qty)).scalars())
    expected_total = sum(event.qty for event in events)
    if held != len(events) or balance_total != expected_total:
        raise RuntimeError(
            f"central holds {held} events (expected {len(events)}), balances sum to "
            f"{balance_total} (expected {expected_total})"
        )


# --------------------------------------------------------------------------- drain: HTTP


@contextlib.contextmanager
def central_process(url: str, *, log_path: Path) -> Iterator[str]:
    """``jxc central serve`` on a free loopback port, as deployed; its base URL."""
    with central_server(url, 1, log_path) as running:
        yield running.base


def http_ingest(base: str, url: str, batches: Sequence[PushBatch], *, progress: Progress) -> float:
    """POST every batch as the edge does (its JSON built beforehand, with the edge's token
    auth); total seconds."""
    task = progress.add_task("http push", total=sum(len(b.events) for b in batches))
    elapsed = 0.0
    site_id = batches[0].site_id
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            secret = add_site(connection, site_id)
    finally:
        engine.dispose()
    auth = SiteTokenAuth(site_id, secret)
    with httpx.Client(base_url=base, timeout=120, auth=auth) as client:
        for batch in batches:
            body = batch.model_dump_json().encode()
            gc.collect()
            started = time.perf_counter()
            response = client.post(
                SYNC_EVENTS,
                content=body,
                headers={"content-type": "application/json"},
            )
            elapsed += time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"push answered {response.status_code}: {response.text[:500]}")
            ack = response.json()
            _check_ack(
                ack["acked_through_seq"],
                [r["status"] for r in ack["results"]],
                batch,
                EventStatus.ACCEPTED,
            )
            progress.advance(task, len(batch.events))
    return elapsed


# --------------------------------------------------------------------------- edge append latency


_EDGE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    "busy_timeout=5000",
    "foreign_keys=ON",
    "journal_size_limit=67108864",
)
"""What ``edge_agent.ledger.Ledger`` sets; the raw baseline uses the same."""


def latency(name: str, samples_ns: Sequence[int]) -> LatencyResult:
    ordered = sorted(samples_ns)

    def pct(fraction: float) -> float:
        index = min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)
        return ordered[max(index, 0)] / 1e6

    return LatencyResult(
        name=name,
        count=len(ordered),
        p50_ms=pct(0.50),
        p90_ms=pct(0.90),
        p99_ms=pct(0.99),
        p999_ms=pct(0.999),
        max_ms=ordered[-1] / 1e6,
        mean_ms=sum(ordered) / len(ordered) / 1e6,
    )


def append_latency(
    count: int, *, workdir: Path, seed: int, progress: Progress
) -> list[LatencyResult]:
    rng = random.Random(seed)
    catalog = make_catalog(rng)
    drafts = [random_draft(rng, catalog, number) for number in range(1, 2001)]
    warmup = 200
    results = []

    path = workdir / "edge-ledger.db"
    _remove_sqlite(path)
    ledger = Ledger(path, site_id="BENCH-EDGE")
    samples: list[int] = []
    task = progress.add_task("Ledger.append", total=count + warmup)
    try:
        for number in range(count + warmup):
            draft = drafts[number % len(drafts)]
            started = time.perf_counter_ns()
            ledger.append(draft)
            took = time.perf_counter_ns() - started
            if number >= warmup:
                samples.append(took)
            progress.advance(task)
        if ledger.counts().last_seq != count + warmup:
            raise RuntimeError("the ledger lost appends")
        body_sample = ledger.events()[-1].model_dump_json()
    finally:
        ledger.close()
        _remove_sqlite(path)
    results.append(latency("Ledger.append", samples))

    raw_path = workdir / "raw-sqlite.db"
    _remove_sqlite(raw_path)
    conn = sqlite3.connect(raw_path, isolation_level=None)
    samples = []
    task = progress.add_task("raw INSERT+COMMIT", total=count + warmup)
    try:
        for pragma in _EDGE_PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
            " occurred_at TEXT NOT NULL, kind TEXT NOT NULL, item TEXT NOT NULL, lot TEXT,"
            " location TEXT NOT NULL, qty TEXT NOT NULL, body TEXT NOT NULL, synced_at TEXT)"
        )
        statement = (
            "INSERT INTO events (seq, event_id, occurred_at, kind, item, lot, location, qty, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        for number in range(count + warmup):
            draft = drafts[number % len(drafts)]
            row = (
                number + 1,
                str(uuid7()),
                _now().isoformat(),
                draft.kind.value,
                draft.item,
                draft.lot,
                draft.location,
                format(draft.qty, "f"),
                body_sample,
            )
            started = time.perf_counter_ns()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(statement, row)
            conn.execute("COMMIT")
            took = time.perf_counter_ns() - started
            if number >= warmup:
                samples.append(took)
            progress.advance(task)
    finally:
        conn.close()
        _remove_sqlite(raw_path)
    results.append(latency("raw sqlite3 INSERT+COMMIT", samples))
    return results


# --------------------------------------------------------------------------- the run


# --------------------------------------------------------------------------- drain: phases


_PHASES = {
    "_lock_site": "lock the site's sync row",
    "_insert_if_all_new": "short path, all of it",
    "_common_push_rows": "- rows and sums, before the insert",
    "_id_texts": "-- event ids as text",
    "_ledger_rows": "-- building the rows",
    "_sum_by_key": "-- per-key sums",
    "_insert_rows": "- insert the rows",
    "_add_to_balances": "- balance upsert",
    "_walk_past": "watermark past the batch",
    "ack": "the answer's EventResult models",
}
"""The steps of a push timed by ``--phases``: ingest's own functions, by name; a step
marked with dashes runs inside the one above it."""
_TOP_LEVEL = ("_lock_site", "_insert_if_all_new", "_walk_past", "ack")
_IN_SHORT_PATH = ("_common_push_rows", "_insert_rows", "_add_to_balances")


@contextlib.contextmanager
def phase_timer() -> Iterator[dict[str, float]]:
    """Seconds spent in each of ``_PHASES`` while the block runs, summed over calls.

    Each step is swapped, in ingest's module namespace where ingest looks it up, for a
    wrapper that adds its time; the answer's models are timed at ``PushAck``'s
    validation, in ``central_api.schemas.sync`` where ``push_ack`` looks it up. About a
    microsecond per call, a dozen calls a push.
    """
    spent = dict.fromkeys(_PHASES, 0.0)
    originals = {name: getattr(ingest_module, name) for name in _PHASES if name != "ack"}
    for name, original in originals.items():
        setattr(ingest_module, name, _timed(original, name, spent))
    ack_model = sync_schemas.PushAck
    sync_schemas.PushAck = _TimedValidation(ack_model, spent)  # type: ignore[misc,assignment]
    try:
        yield spent
    finally:
        for name, original in originals.items():
            setattr(ingest_module, name, original)
        sync_schemas.PushAck = ack_model  # type: ignore[misc]


def _timed(function: Callable[..., Any], name: str, spent: dict[str, float]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return timed


@dataclass(frozen=True)
class _TimedValidation:
    model: Any
    spent: dict[str, float]

    def model_validate(self, value: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.model.model_validate(value)
        finally:
            self.spent["ack"] += time.perf_counter() - started


def drain(
    kind: Database,
    *,
    backlog: Backlog = Backlog.PLAIN,
    setup: Callable[[Engine], None] | None = None,
    events: Sequence[LedgerEvent],
    batches: Sequence[PushBatch],
    http_batches: Sequence[PushBatch],
    workdir: Path,
    admin_url: str,
    progress: Progress,
    profile_path: Path | None,
    phases: bool,
    fifo: frozenset[str] = frozenset(),
) -> DrainResult:
    # CPU time, not the wall clock: on a shared machine the wall clock charges whatever
    # function was running when the scheduler took the core away.
    profiler = cProfile.Profile(time.process_time) if profile_path is not None else None
    timing = phase_timer() if phases else contextlib.nullcontext(dict[str, float]())
    name = f"drain-{kind}-{backlog}"
    with scratch_database(kind, name=name, workdir=workdir, admin_url=admin_url) as url:
        engine = create_db_engine(url)
        try:
            if setup is not None:
                setup(engine)
            with timing as spent:
                raw, floor, ingest = raw_and_ingest(
                    engine,
                    batches,
                    progress=progress,
                    label=f"raw + ingest {kind} {backlog}",
                    profiler=profiler,
                    fifo=fifo,
                )
            raw_times, times = raw.times, ingest.times
            raw_cpu_s, ingest_cpu_s = sum(raw.cpu), sum(ingest.cpu)
            verify_central(engine, events)
            unmirrored = _unmirrored_rows(engine)
            if backlog is Backlog.DOCUMENTS:
                verify_documents(engine, events)
            checkpoint(engine)
            replayed = batches[-min(len(batches), 10) :]
            replay_times = replay(
                engine, replayed, progress=progress, label=f"replay {kind} {backlog}"
            )
        finally:
            engine.dispose()
    if profiler is not None and profile_path is not None:
        stem = f"{profile_path.stem}-{kind}-{backlog}"
        path = profile_path.with_name(f"{stem}{profile_path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(path)
        console.print(f"[bold]cProfile of ingest on {kind}, {backlog}[/] (full stats in {path})")
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
    ingest_s = sum(times)
    raw_s = sum(raw_times)
    raw_rows = len(events)
    ordered = sorted(times)
    result = DrainResult(
        database=str(kind),
        backlog=str(backlog),
        events=len(events),
        batch_size=len(batches[0].events),
        ingest_s=ingest_s,
        ingest_eps=len(events) / ingest_s,
        raw_s=raw_s,
        raw_rows_per_s=raw_rows / raw_s,
        ratio=(len(events) / ingest_s) / (raw_rows / raw_s),
        cpu_ratio=raw_cpu_s / ingest_cpu_s,
        batch_ms_p50=ordered[len(ordered) // 2] * 1000,
        batch_ms_max=ordered[-1] * 1000,
        raw_ms_p50=statistics.median(raw_times) * 1000,
        raw_ms_max=max(raw_times) * 1000,
        first_tenth_eps=_rate(batches[: max(1, len(batches) // 10)], times),
        last_tenth_eps=_rate(batches[-max(1, len(batches) // 10) :], times[::-1]),
        replay_eps=sum(len(b.events) for b in replayed) / sum(replay_times),
        valuation="valuation" in _PROJECTIONS.names(),
        floor_s=sum(floor.times),
        floor_ratio=sum(floor.times) / ingest_s,
        floor_cpu_ratio=sum(floor.cpu) / ingest_cpu_s,
        floor_ms_p50=statistics.median(floor.times) * 1000,
        floor_rows_per_event={name: count / len(events) for name, count in floor.rows.items()},
        unmirrored_per_event={name: count / len(events) for name, count in unmirrored.items()},
        ingest_cpu_s=ingest_cpu_s,
        raw_cpu_s=raw_cpu_s,
    )
    if spent:
        per_batch = {name: seconds * 1000 / len(batches) for name, seconds in spent.items()}
        short_path = sum(per_batch[name] for name in _IN_SHORT_PATH)
        per_batch["savepoint"] = per_batch["_insert_if_all_new"] - short_path
        counted = sum(per_batch[name] for name in _TOP_LEVEL)
        per_batch["other"] = ingest_s * 1000 / len(batches) - counted
        result.phases_ms = per_batch
    if http_batches:
        http_count = sum(len(b.events) for b in http_batches)
        result.first_http_events_eps = http_count / sum(times[: len(http_batches)])
        name = f"http-{kind}"
        with (
            scratch_database(kind, name=name, workdir=workdir, admin_url=admin_url) as url,
            central_process(url, log_path=workdir / f"central-{kind}.log") as base,
        ):
            http_s = http_ingest(base, url, http_batches, progress=progress)
        result.http_events = http_count
        result.http_s = http_s
        result.http_eps = http_count / http_s
    return result


_UNMIRRORED = ("alerts", "audit_log", "purchase_exceptions")
"""Tables a push may write that the same-rows floor leaves out: counted after the drain,
so the report says how much of what the push wrote the floor did not write."""


def _unmirrored_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
            for name in _UNMIRRORED
        }


def _rate(batches: Sequence[PushBatch], times: Sequence[float]) -> float:
    """Events per second over ``batches``, timed by the first len(batches) of ``times``."""
    return sum(len(b.events) for b in batches) / sum(times[: len(batches)])


def machine(postgres_url: str) -> dict[str, Any]:
    info = machine_info(runtime={"sqlite": sqlite3.sqlite_version})
    info["postgresql"] = _postgres_version(postgres_url)
    return info


def _postgres_version(url: str) -> str:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return "unreachable"
    return str(row[0]) if row else "?"


def print_report(report: Report) -> None:
    if report.build_events:
        console.print(
            f"built {report.build_events:,} events in {report.build_s:.1f} s "
            f"({report.build_events / report.build_s:,.0f}/s, not counted below)"
        )
    if report.drains:
        drains = table(
            f"Drain a backlog into central ({SITE}, one push = one batch)",
            (
                "database",
                "backlog",
                "events",
                "batch",
                "ingest s",
                "ingest ev/s",
                "raw rows/s",
                "ingest/raw",
                "by CPU",
                "push / raw p50 ms",
                "push / raw max ms",
                "first 10% ev/s",
                "last 10% ev/s",
                "replay ev/s",
            ),
        )
        for d in report.drains:
            drains.add_row(
                d.database,
                d.backlog,
                f"{d.events:,}",
                f"{d.batch_size:,}",
                f"{d.ingest_s:.1f}",
                f"{d.ingest_eps:,.0f}",
                f"{d.raw_rows_per_s:,.0f}",
                f"{d.ratio:.2f}",
                f"{d.cpu_ratio:.2f}",
                f"{d.batch_ms_p50:.0f} / {d.raw_ms_p50:.0f}",
                f"{d.batch_ms_max:.0f} / {d.raw_ms_max:.0f}",
                f"{d.first_tenth_eps:,.0f}",
                f"{d.last_tenth_eps:,.0f}",
                f"{d.replay_eps:,.0f}",
            )
        console.print(drains)
        console.print(
            "raw = the same rows as stored, into an identical table of the same database: "
            "executemany (SQLite) or binary COPY (PostgreSQL), one transaction per batch. "
            "replay = the last batches pushed again (all duplicates)."
        )
        for d in report.drains:
            if d.database == "sqlite":
                verdict = "meets" if d.ratio >= 0.5 else "MISSES"
                console.print(
                    f"sqlite, {d.backlog} backlog: ingest at {d.ratio:.0%} of the raw insert "
                    f"rate ({d.cpu_ratio:.0%} by CPU time) -> {verdict} the aim of at least 50%"
                )
        floors = table(
            "Against a floor that writes the same rows: the driver alone writing the events "
            "and every other row the push writes, one transaction per batch",
            (
                "database",
                "backlog",
                "valuation",
                "rows per event",
                "push / floor p50 ms",
                "ingest/floor",
                "by CPU",
                "ingest/raw",
                "by CPU",
            ),
        )
        for d in report.drains:
            floors.add_row(
                d.database,
                d.backlog,
                "on" if d.valuation else "off",
                f"{sum(d.floor_rows_per_event.values()):.2f}",
                f"{d.batch_ms_p50:.0f} / {d.floor_ms_p50:.0f}",
                f"{d.floor_ratio:.2f}",
                f"{d.floor_cpu_ratio:.2f}",
                f"{d.ratio:.2f}",
                f"{d.cpu_ratio:.2f}",
            )
        console.print(floors)
        for d in report.drains:
            written = ", ".join(
                f"{name} {per:.3f}" for name, per in d.floor_rows_per_event.items() if per
            )
            console.print(f"{d.database}, {d.backlog}: floor rows per event: {written}")
            left = ", ".join(f"{name} {per:.3f}" for name, per in d.unmirrored_per_event.items())
            console.print(f"  left out of the floor, rows per event the push wrote: {left}")
        for d in report.drains:
            if d.phases_ms:
                print_phases(d)
        http = [d for d in report.drains if d.http_events]
        if http:
            through_http = table(
                "Through HTTP: `jxc central serve` on loopback, fresh database",
                ("database", "events", "HTTP ev/s", "direct ev/s", "HTTP/direct"),
            )
            for d in http:
                through_http.add_row(
                    d.database,
                    f"{d.http_events:,}",
                    f"{d.http_eps:,.0f}",
                    f"{d.first_http_events_eps:,.0f}",
                    f"{d.http_eps / d.first_http_events_eps:.2f}",
                )
            console.print(through_http)
            console.print(
                "direct = ingest_batch over the same first events in the drain above "
                "(also a fresh database). HTTP time = POST to answer, body prebuilt as the "
                "edge sends it."
            )
    if report.latencies:
        latencies = table(
            "Edge append latency (single events, file on the real disk)",
            ("what", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"),
        )
        for lat in report.latencies:
            latencies.add_row(
                lat.name,
                f"{lat.count:,}",
                f"{lat.p50_ms:.3f}",
                f"{lat.p90_ms:.3f}",
                f"{lat.p99_ms:.3f}",
                f"{lat.p999_ms:.3f}",
                f"{lat.max_ms:.3f}",
            )
        console.print(latencies)
        append = report.latencies[0]
        verdict = "meets" if append.p99_ms < 2 else "MISSES"
        console.print(f"Ledger.append p99 {append.p99_ms:.3f} ms -> {verdict} the aim (< 2 ms)")


def print_phases(d: DrainResult) -> None:
    push_ms = d.ingest_s * 1000 * d.batch_size / d.events
    raw_ms = push_ms * d.ratio
    phases = table(
        f"Where a push's time goes ({d.database}, {d.backlog}, mean per batch of {d.batch_size:,})",
        ("step", "ms", "share of push"),
        left={"step"},
    )
    labels = {
        **_PHASES,
        "savepoint": "- savepoint and the verdicts' dicts",
        "other": "the rest: transaction and its commit, log",
    }
    order = [*list(labels)[:8], "savepoint", *list(labels)[8:10], "other"]
    for name in order:
        label = labels[name]
        phases.add_row(label, f"{d.phases_ms[name]:.2f}", f"{d.phases_ms[name] / push_ms:.0%}")
    phases.add_row("whole push", f"{push_ms:.2f}", "100%")
    phases.add_row("raw insert of the same rows", f"{raw_ms:.2f}", f"{raw_ms / push_ms:.0%}")
    console.print(phases)


app = cli(__doc__)


@app.command()
def main(
    events: Annotated[
        int, typer.Option(help="events in the backlog to drain (0 skips)")
    ] = 1_000_000,
    database: Annotated[Database, typer.Option(help="central database(s) to drain into")] = (
        Database.BOTH
    ),
    http_events: Annotated[
        int, typer.Option(help="events pushed through HTTP as well (0 skips)")
    ] = 100_000,
    appends: Annotated[
        int, typer.Option(help="single Ledger.append calls to time (0 skips)")
    ] = 20_000,
    batch_size: Annotated[
        int, typer.Option(min=1, max=MAX_EVENTS_PER_BATCH, help="events per push")
    ] = MAX_EVENTS_PER_BATCH,
    postgres_url: Annotated[
        str,
        typer.Option(help="existing PostgreSQL database to connect to; scratch ones are made"),
    ] = "postgresql://postgres@127.0.0.1:5432/test",
    workdir: Annotated[Path, typer.Option(help="scratch files (real disk, not tmpfs)")] = (
        ROOT / "var" / "bench"
    ),
    seed: Annotated[int, typer.Option(help="seed of the generated site and events")] = 3,
    profile: Annotated[
        Path | None, typer.Option(help="cProfile the direct ingest; stats to PATH-<db>.prof")
    ] = None,
    phases: Annotated[
        bool, typer.Option(help="time the steps of each direct push (a timer call per step)")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON")
    ] = None,
    valuation: Annotated[
        bool, typer.Option(help="run the valuation projection in every push (as the app does)")
    ] = True,
    backlog: Annotated[
        Backlog,
        typer.Option(
            help="plain: receipts carry their cost, no master data; documents: receipts "
            "name PO lines, items valued by their method; both: one after the other"
        ),
    ] = Backlog.BOTH,
    late_fraction: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="documents backlog: share of events booked an hour late"
        ),
    ] = 0.0,
) -> None:
    """Measure central ingest throughput and edge append latency against raw baselines."""
    if not valuation:
        from central_api.services import valuation as valuation_module  # noqa: PLC0415

        _PROJECTIONS.remove(valuation_module.NAME)
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = [Database.SQLITE, Database.POSTGRESQL] if database is Database.BOTH else [database]
    command = " ".join(["bench/sync.py", *sys.argv[1:]])
    report = Report(command=command, machine=machine(postgres_url))
    console.print(f"[bold]machine[/] {report.machine}")
    progress = progress_bars(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with progress:
        if events > 0:
            started = time.perf_counter()
            built = build_events(events, seed=seed, progress=progress)
            batches = batches_of(built, batch_size)
            report.build_events = events
            report.build_s = time.perf_counter() - started
            # A server holds one batch at a time, not the whole backlog: keep the collector
            # from re-scanning the prebuilt events during the timed work.
            gc.collect()
            gc.freeze()
            http_count = min(http_events, events)
            http_batches = batches_of(built[:http_count], batch_size) if http_count else []
            backlogs: list[tuple[Backlog, list[LedgerEvent], list[PushBatch]]] = []
            if backlog is not Backlog.DOCUMENTS:
                backlogs.append((Backlog.PLAIN, built, batches))
            if backlog is not Backlog.PLAIN:
                documents = documents_backlog(built, late_fraction=late_fraction, seed=seed)
                backlogs.append((Backlog.DOCUMENTS, documents, batches_of(documents, batch_size)))
            catalog = catalog_of(seed)
            fifo_items = frozenset(
                item.code for number, item in enumerate(catalog.items) if number % 4 == 0
            )
            gc.collect()
            gc.freeze()
            for kind in kinds:
                for name, backlog_events, backlog_batches in backlogs:
                    report.drains.append(
                        drain(
                            kind,
                            backlog=name,
                            setup=(
                                None
                                if name is Backlog.PLAIN
                                else partial(seed_documents, catalog=catalog, events=backlog_events)
                            ),
                            events=backlog_events,
                            batches=backlog_batches,
                            http_batches=http_batches if name is Backlog.PLAIN else [],
                            workdir=workdir,
                            admin_url=postgres_url,
                            progress=progress,
                            profile_path=profile,
                            phases=phases,
                            fifo=frozenset() if name is Backlog.PLAIN else fifo_items,
                        )
                    )
            del built, batches, http_batches, backlogs
            gc.unfreeze()
            gc.collect()
        if appends > 0:
            report.latencies = append_latency(
                appends, workdir=workdir, seed=seed, progress=progress
            )
    finish(report, print_report, json_out)


if __name__ == "__main__":
    app()
