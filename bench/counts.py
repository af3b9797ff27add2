"""What posting a large stock count costs at central (issue 16: "a count session of 20,000
lines posted, aim: under 2 s").

A fresh, migrated central database (SQLite file, or a scratch PostgreSQL database) holds
one site with ``--lines`` balances: ``--lines / 10`` items in 10 locations, every other
item in a lot. Through the real services (``open_count``, ``count_command``, with the
app's projections), in the same transactions the API would run: the session is opened
(snapshot), every line counted in requests of 5,000 (the API's limit), submitted and
approved. Every ``--variance-every``-th line is counted one more than the system holds,
so approval books that many adjustment events (by default all of them: the worst case).

The **floor**, in the same run and database kind: the same adjustment rows inserted raw
into a copy of ``central_events``'s shape plus the balances updated, with the driver's
``executemany`` in one transaction (sqlite3 or psycopg, no SQLAlchemy, no checks). Each
step prints wall and CPU seconds (the machine is shared; CPU time is steadier).

    .venv/bin/python bench/counts.py --lines 20000 --database both
"""

from __future__ import annotations

import gc
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from sqlalchemy import Connection, Engine, insert, make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sync as sync_bench
from common import ROOT, cli, console, table

from central_api.core.db import create_db_engine, write_transaction
from central_api.models import items
from central_api.models.ledger import site_sync_state
from central_api.models.master import sites
from central_api.models.stock import NO_LOT, stock_balances
from central_api.services import counts
from central_api.services.audit import Actor, ActorKind, AuditContext
from central_api.services.documents import DocCommand
from central_api.services.projections import built_in_projections

app = cli(__doc__)

SITE = "S01"
LOCATIONS = 10
ON_HAND = Decimal(10)


@dataclass
class Timed:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed(into: Timed) -> Iterator[None]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.wall += time.perf_counter() - wall
    into.cpu += time.process_time() - cpu


def _keys(lines: int) -> list[tuple[str, str, str]]:
    """``(location, item, lot)`` of every balance; ``NO_LOT`` for an item without lots."""
    return [
        (f"L{loc:02d}", f"ITEM-{item:05d}", f"LOT-{item:05d}" if item % 2 else NO_LOT)
        for item in range(lines // LOCATIONS)
        for loc in range(LOCATIONS)
    ]


def _seed(engine: Engine, keys: list[tuple[str, str, str]]) -> None:
    now = datetime.now(UTC)
    codes = sorted({item for _loc, item, _lot in keys})
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            insert(sites).values(
                site_id=SITE, kind="store", name=SITE, name_en=SITE, active=True, updated_at=now
            )
        )
        connection.execute(
            insert(site_sync_state).values(site_id=SITE, acked_through_seq=0, updated_at=now)
        )
        connection.execute(
            insert(items),
            [
                {"item_code": code, "name": code, "uom": "pcs", "active": True}
                | {"version": 1, "updated_at": now}
                for code in codes
            ],
        )
        connection.execute(
            insert(stock_balances),
            [
                {"site_id": SITE, "location": loc, "item": item, "lot": lot, "uom": "pcs"}
                | {"qty": ON_HAND, "updated_at": now}
                for loc, item, lot in keys
            ],
        )


def _command(doc_id: str, actor: str) -> DocCommand:
    audit = AuditContext(actor=Actor(ActorKind.USER, actor))
    return DocCommand(actor=actor, visible=None, if_match=None, audit=audit, doc_id=doc_id)


def _session(engine: Engine, keys: list[tuple[str, str, str]], every: int) -> dict[str, Timed]:
    """Open, count, submit and approve one session: each step's time."""
    steps = {name: Timed() for name in ("open", "count", "submit", "approve")}
    projections = built_in_projections()
    manager = AuditContext(actor=Actor(ActorKind.USER, "manager"))

    def run(step: str, body: Callable[[Connection], counts.StockCount]) -> counts.StockCount:
        # Each service runs its own write transaction (``document_write``), as the API does.
        with engine.connect() as connection, timed(steps[step]):
            return body(connection)

    opened = run(
        "open",
        lambda c: counts.open_count(
            c,
            site_id=SITE,
            location_from=None,
            location_to=None,
            note="bench",
            actor="manager",
            visible=None,
            audit=manager,
        ),
    )
    assert len(opened.lines) == len(keys)
    entries = [
        counts.CountEntry(
            location=loc,
            item_code=item,
            lot=lot or None,
            qty=ON_HAND + (1 if index % every == 0 else 0),
        )
        for index, (loc, item, lot) in enumerate(keys)
    ]
    for first in range(0, len(entries), counts.MAX_ENTRIES):
        order = counts.CountCommand(
            command=_command(opened.count_id, "clerk"),
            entries=entries[first : first + counts.MAX_ENTRIES],
        )
        run("count", lambda c, o=order: counts.count_command(c, o, "count", projections=None))  # type: ignore[misc]
    submit = counts.CountCommand(
        command=_command(opened.count_id, "clerk"), recount_percent=Decimal(100)
    )
    found = run("submit", lambda c: counts.count_command(c, submit, "submit", projections=None))
    assert found.status is counts.CountStatus.REVIEW, found.status
    approve = counts.CountCommand(command=_command(opened.count_id, "manager"))
    found = run(
        "approve",
        lambda c: counts.count_command(c, approve, "approve", projections=projections),
    )
    assert found.status is counts.CountStatus.POSTED
    return steps


_FLOOR_TABLE = """CREATE TABLE floor_events (
    event_id VARCHAR(36) PRIMARY KEY, site_id VARCHAR(32) NOT NULL, seq BIGINT NOT NULL,
    occurred_at TIMESTAMP NOT NULL, received_at TIMESTAMP NOT NULL, kind VARCHAR(16) NOT NULL,
    item VARCHAR(64) NOT NULL, lot VARCHAR(40), location VARCHAR(64) NOT NULL,
    qty BIGINT NOT NULL, uom VARCHAR(16) NOT NULL, doc_id VARCHAR(64), doc_line BIGINT,
    UNIQUE (site_id, seq))"""
_FLOOR_INSERT = (
    "INSERT INTO floor_events (event_id, site_id, seq, occurred_at, received_at, kind, item,"
    " lot, location, qty, uom, doc_id, doc_line) VALUES"
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_FLOOR_UPDATE = (
    "UPDATE stock_balances SET qty = qty + %s, updated_at = %s"
    " WHERE site_id = %s AND location = %s AND item = %s AND lot = %s"
)


def _floor_rows(
    keys: list[tuple[str, str, str]], every: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    now = datetime.now(UTC)
    events, balances = [], []
    for index, (loc, item, lot) in enumerate(keys):
        if index % every:
            continue
        event_id, seq, line = str(uuid.uuid4()), 10**9 + index, index + 1
        row = (event_id, SITE, seq, now, now, "adjustment", item, lot or None, loc, 10**6)
        events.append((*row, "pcs", "SC-FLOOR", line))
        balances.append((1_000_000, now, SITE, loc, item, lot))
    return events, balances


def _floor(url: str, keys: list[tuple[str, str, str]], every: int) -> Timed:
    """The same adjustment rows and balance updates, raw, in one transaction."""
    events, balances = _floor_rows(keys, every)
    spent = Timed()
    if url.startswith("sqlite"):
        connection = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        try:
            connection.execute(_FLOOR_TABLE)
            lite = {"%s": "?"}
            ins, upd = (_FLOOR_INSERT, _FLOOR_UPDATE)
            for old, new in lite.items():
                ins, upd = ins.replace(old, new), upd.replace(old, new)
            rows = [tuple(str(v) if isinstance(v, datetime) else v for v in e) for e in events]
            changes = [tuple(str(v) if isinstance(v, datetime) else v for v in b) for b in balances]
            with timed(spent):
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(ins, rows)
                connection.executemany(upd, changes)
                connection.execute("COMMIT")
        finally:
            connection.close()
        return spent
    plain_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain_url) as pg:
        pg.execute(_FLOOR_TABLE)
        pg.commit()
        with timed(spent), pg.transaction(), pg.cursor() as cursor:
            cursor.executemany(_FLOOR_INSERT, events)
            cursor.executemany(_FLOOR_UPDATE, balances)
    return spent


@app.command()
def main(
    lines: Annotated[int, typer.Option(min=LOCATIONS, help="lines of the session")] = 20_000,
    variance_every: Annotated[
        int, typer.Option(min=1, help="every n-th line differs (1: all of them)")
    ] = 1,
    database: Annotated[
        sync_bench.Database, typer.Option(help="sqlite, postgresql or both")
    ] = sync_bench.Database.BOTH,
    postgres_url: Annotated[str, typer.Option()] = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    """Open, count, submit and approve one large count session; the raw floor beside it."""
    workdir = ROOT / "var" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    keys = _keys(lines)
    kinds = (
        [sync_bench.Database.SQLITE, sync_bench.Database.POSTGRESQL]
        if database is sync_bench.Database.BOTH
        else [database]
    )
    report = table(
        f"A count of {len(keys)} lines, {len(range(0, len(keys), variance_every))} adjustments",
        ["database", "step", "wall s", "CPU s"],
        left={"database", "step"},
    )
    for kind in kinds:
        with sync_bench.scratch_database(
            kind, name=f"counts-{kind}", workdir=workdir, admin_url=postgres_url
        ) as url:
            engine = create_db_engine(url)
            try:
                _seed(engine, keys)
                steps = _session(engine, keys, variance_every)
            finally:
                engine.dispose()
            floor = _floor(url, keys, variance_every)
        for name, spent in [*steps.items(), ("floor: raw rows + balances", floor)]:
            report.add_row(str(kind), name, f"{spent.wall:.2f}", f"{spent.cpu:.2f}")
        approve = steps["approve"]
        report.add_row(
            str(kind),
            "approve / floor",
            f"{approve.wall / floor.wall:.1f}x",
            f"{approve.cpu / max(floor.cpu, 1e-6):.1f}x",
        )
    console.print(report)


if __name__ == "__main__":
    app()
