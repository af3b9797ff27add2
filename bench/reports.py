"""What the report centre costs on a ledger of a realistic size (issue 17, "Reports").

A scratch central database gets ``--events`` movements over ``--sites`` sites and
``--items`` items (receipts and sales, a third of the items in lots with an expiry),
written straight into the ledger and its projections (balances, valuation state and
entries) in bulk, as ingest would have left them: what is measured is the reading, not
the writing. Then, each timed ``--repeat`` times (the median is reported):

* **baseline**: ``services/stock.list_balances`` for one site, the query behind
  ``GET /stock``, measured in the same run so the loaded machine shows in both;
* stock on hand of one site now (balances + values) and as of a past moment (summed from
  the ledger by ``occurred_at``, values from the entries);
* the movement ledger's first page (100 rows): one site and item, one site, everything;
* slow-moving stock and expiry over every site;
* the exports of one site's movements: CSV (streamed) and XLSX (openpyxl write-only),
  rows per second and the XLSX's size.

Run ``.venv/bin/python bench/reports.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from common import cli, console, machine_info, table
from sqlalchemy import Connection, insert
from sync import Database, scratch_database

from central_api.core.db import create_db_engine
from central_api.models import (
    items,
    ledger_events,
    site_sync_state,
    stock_balances,
    valuation_entries,
    valuation_state,
)
from central_api.services import reports
from central_api.services.report_files import csv_chunks, file_chunks, write_xlsx
from central_api.services.stock import list_balances
from jxc import uuid7

app = cli(__doc__)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fill(connection: Connection, *, events: int, sites: int, item_count: int, seed: int) -> None:
    """The ledger and its projections, in bulk (a few seconds for 200,000 rows)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    site_ids = [f"S{n:03d}" for n in range(sites)]
    codes = [f"IT{n:05d}" for n in range(item_count)]
    connection.execute(
        insert(items),
        [
            {
                "item_code": c,
                "name": c,
                "uom": "pcs",
                "active": True,
                "version": 1,
                "updated_at": now,
            }
            for c in codes
        ],
    )
    connection.execute(
        insert(site_sync_state),
        [{"site_id": s, "acked_through_seq": 0, "updated_at": now} for s in site_ids],
    )
    seq: dict[str, int] = defaultdict(int)
    on_hand: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    state: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    step = timedelta(days=330) / events
    for number in range(events):
        site, code = rng.choice(site_ids), rng.choice(codes)
        lotted = int(code[2:]) % 3 == 0
        lot = f"L{rng.randrange(4)}" if lotted else None
        qty = Decimal(rng.randrange(1, 20))
        held = on_hand[(site, code, lot or "")]
        kind = "receipt" if held < qty or rng.random() < 0.5 else "sale"
        signed = qty if kind == "receipt" else -qty
        on_hand[(site, code, lot or "")] += signed
        seq[site] += 1
        at = T0 + step * number
        event_id = str(uuid7())
        rows.append(
            {
                "event_id": event_id,
                "site_id": site,
                "seq": seq[site],
                "occurred_at": at,
                "received_at": at,
                "kind": kind,
                "item": code,
                "lot": lot,
                "expiry": date(2026, 12, 1) + timedelta(days=int(lot[1]) * 40) if lot else None,
                "location": "A-01",
                "qty": signed,
                "uom": "pcs",
                "unit_cost": Decimal(2) if kind == "receipt" else None,
            }
        )
        before_qty, before_value = state.get((site, code), (Decimal(0), Decimal(0)))
        cogs = Decimal(0) if kind == "receipt" else qty * 2
        state[(site, code)] = (before_qty + signed, before_value + signed * 2)
        entries.append(
            {
                "event_id": event_id,
                "site_id": site,
                "item": code,
                "occurred_at": at,
                "kind": kind,
                "qty": signed,
                "in_cost": Decimal(2) if kind == "receipt" else None,
                "cost_source": "event" if kind == "receipt" else "out",
                "in_value": signed * 2 if kind == "receipt" else Decimal(0),
                "cogs": cogs,
                "variance": Decimal(0),
                "shortfall": Decimal(0),
                "qty_after": state[(site, code)][0],
                "value_after": state[(site, code)][1],
                "last_cost_after": Decimal(2),
            }
        )
        if len(rows) == 20_000:
            connection.execute(insert(ledger_events), rows)
            connection.execute(insert(valuation_entries), entries)
            rows, entries = [], []
    if rows:
        connection.execute(insert(ledger_events), rows)
        connection.execute(insert(valuation_entries), entries)
    connection.execute(
        insert(stock_balances),
        [
            {
                "site_id": s,
                "location": "A-01",
                "item": c,
                "lot": lot,
                "uom": "pcs",
                "qty": q,
                "updated_at": now,
            }
            for (s, c, lot), q in on_hand.items()
        ],
    )
    connection.execute(
        insert(valuation_state),
        [
            {
                "site_id": s,
                "item": c,
                "method": "moving_average",
                "qty": q,
                "value": v,
                "last_cost": Decimal(2),
                "last_at": now,
                "last_event_id": "x",
                "updated_at": now,
            }
            for (s, c), (q, v) in state.items()
        ],
    )


def _median_ms(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _drain(chunks: Iterator[bytes]) -> int:
    return sum(len(chunk) for chunk in chunks)


@app.command()
def main(
    events: Annotated[int, typer.Option(help="ledger rows")] = 200_000,
    sites: Annotated[int, typer.Option(help="sites")] = 20,
    item_count: Annotated[int, typer.Option("--items", help="items")] = 2_000,
    repeat: Annotated[int, typer.Option(help="timings per figure (median)")] = 5,
    database: Annotated[Database, typer.Option(help="sqlite or postgresql")] = Database.SQLITE,
    postgres_url: Annotated[
        str, typer.Option(help="an existing PostgreSQL database to create the scratch one from")
    ] = "postgresql://postgres@127.0.0.1:5432/test",
) -> None:
    console.print(machine_info())
    with (
        tempfile.TemporaryDirectory() as workdir,
        scratch_database(
            database, name="reports", workdir=Path(workdir), admin_url=postgres_url
        ) as url,
    ):
        engine = create_db_engine(url)
        started = time.perf_counter()
        with engine.begin() as connection:
            _fill(connection, events=events, sites=sites, item_count=item_count, seed=17)
        console.print(f"filled {events:,} rows in {time.perf_counter() - started:.1f} s")
        site, everything = "S001", reports.MovementFilter()
        with engine.connect() as connection:
            one_item = connection.execute(
                ledger_events.select().where(ledger_events.c.site_id == site).limit(1)
            ).first()
            assert one_item is not None
            by_site = reports.StockFilter(site_id=site)
            past = T0 + timedelta(days=165)
            measured: list[tuple[str, float, str]] = [
                (
                    "baseline: list_balances, one site",
                    _median_ms(lambda: list_balances(connection=connection, site_id=site), repeat),
                    "",
                ),
                (
                    "stock on hand, one site, now (+ values)",
                    _median_ms(
                        lambda: reports.stock_on_hand(connection, by_site, financial=True), repeat
                    ),
                    "",
                ),
                (
                    "stock on hand, one site, as of a past day (+ values)",
                    _median_ms(
                        lambda: reports.stock_on_hand(
                            connection, by_site, as_of=past, financial=True
                        ),
                        repeat,
                    ),
                    "",
                ),
            ]
            for label, chosen in (
                (
                    "movements page, one site and item",
                    reports.MovementFilter(site_id=site, item=one_item.item),
                ),
                ("movements page, one site", reports.MovementFilter(site_id=site)),
                ("movements page, everything", everything),
            ):
                measured.append(
                    (
                        label,
                        _median_ms(
                            lambda chosen=chosen: reports.movements(  # type: ignore[misc]
                                connection, chosen, financial=True
                            ),
                            repeat,
                        ),
                        "",
                    )
                )
            measured.append(
                (
                    "slow-moving, every site",
                    _median_ms(
                        lambda: reports.slow_moving(connection, days=30, financial=True), repeat
                    ),
                    "",
                )
            )
            measured.append(
                (
                    "expiry, every site",
                    _median_ms(lambda: reports.expiry(connection, financial=True), repeat),
                    "",
                )
            )
            chosen = reports.MovementFilter(site_id=site)
            columns = reports.visible_columns(reports.MOVEMENT_COLUMNS, True)
            headings = [c.label for c in columns]
            count = sum(
                len(p.rows) for p in reports.iter_movements(connection, chosen, financial=True)
            )

            def pages() -> Iterator[list[dict[str, Any]]]:
                for page in reports.iter_movements(connection, chosen, financial=True):
                    yield page.rows

            start = time.perf_counter()
            size = _drain(csv_chunks(headings, columns, pages()))
            spent = time.perf_counter() - start
            measured.append(
                (
                    "export CSV, one site's movements",
                    spent * 1000,
                    f"{count / spent:,.0f} rows/s, {size:,} B",
                )
            )
            start = time.perf_counter()
            size = _drain(file_chunks(write_xlsx("movements", headings, columns, pages())))
            spent = time.perf_counter() - start
            measured.append(
                (
                    "export XLSX, one site's movements",
                    spent * 1000,
                    f"{count / spent:,.0f} rows/s, {size:,} B",
                )
            )
        engine.dispose()
    shown = table(
        f"reports on {events:,} ledger rows, {sites} sites, {item_count:,} items ({database})",
        ["what", "median ms", "note"],
        left={"what", "note"},
    )
    for label, ms, note in measured:
        shown.add_row(label, f"{ms:,.1f}", note)
    console.print(shown)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    console.print(f"peak RSS {peak} MB; load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    app()
