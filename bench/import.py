"""What a master-data import costs (issue 13): 10,000 items with 20,000 barcodes from CSV.

For each database, in the same run:

1. **The import.** ``import_file`` on a fresh migrated database, as ``POST
   /api/v1/imports/items`` and ``jxc central import`` call it: parse the CSV, check every
   row (pydantic, check digits, duplicates in the file, barcodes held by other items),
   then write items, barcodes and their change-feed rows in one transaction, plus the
   audit entry.
2. **The same file again**, which must change nothing (every row compared, nothing written).
3. **The floor.** The same rows (items, barcodes and change-feed rows, already built in
   Python) inserted with executemany in one transaction on another fresh database: no
   parsing, no checks, no reads. The import cannot be faster than this on this machine
   now; the ratio import / floor is the figure that survives a busy machine.

Run ``.venv/bin/python bench/import.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from common import ROOT, cli, console, finish, table
from sqlalchemy import func, insert, select, update
from sync import Database, machine, scratch_database

from central_api.api.routes.imports import ROW_MODELS
from central_api.core.db import create_db_engine, write_transaction
from central_api.models import change_feed, feed_counter, item_barcodes, items
from central_api.services.audit import system_context
from central_api.services.barcodes import gs1_check_digit
from central_api.services.imports import import_file

sys.path.insert(0, str(ROOT))
app = cli(__doc__)
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Run:
    database: str
    items: int
    barcodes: int
    import_s: float
    again_s: float
    floor_s: float
    ratio: float
    again_changed: int


@dataclass
class Report:
    runs: list[Run] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)


def gtin(n: int) -> str:
    body = f"690{n:09d}"
    return body + str(gs1_check_digit(body))


def build_file(count: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["item_code", "name", "name_en", "uom", "barcodes"])
    for n in range(count):
        writer.writerow(
            [f"I{n:06d}", f"商品 {n}", f"Item {n}", "EA", f"{gtin(2 * n)}; {gtin(2 * n + 1)}"]
        )
    return out.getvalue().encode()


def floor_rows(count: int, now: datetime) -> tuple[list[dict[str, Any]], ...]:
    item_rows, barcode_rows, feed_rows = [], [], []
    version = 0
    for n in range(count):
        code = f"I{n:06d}"
        version += 1
        item = {"item_code": code, "name": f"商品 {n}", "uom": "EA", "active": True}
        feed_rows.append(_feed(version, "item", code, {**item, "name_en": f"Item {n}"}, now))
        item_rows.append({**item, "name_en": f"Item {n}", "version": version, "updated_at": now})
        for barcode in (gtin(2 * n), gtin(2 * n + 1)):
            version += 1
            data = {"barcode": barcode, "item_code": code, "qty_per": "1"}
            feed_rows.append(_feed(version, "barcode", barcode, data, now))
            barcode_rows.append(
                {
                    "barcode": barcode,
                    "item_code": code,
                    "qty_per": 1,
                    "kind": "ean13",
                    "version": version,
                    "updated_at": now,
                }
            )
    return item_rows, barcode_rows, feed_rows


def _feed(
    version: int, entity: str, key: str, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "version": version,
        "site_id": None,
        "entity": entity,
        "entity_key": key,
        "op": "upsert",
        "data": json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "changed_at": now,
    }


def run_one(kind: Database, count: int, workdir: Path, admin_url: str) -> Run:
    data = build_file(count)
    with scratch_database(kind, name="import", workdir=workdir, admin_url=admin_url) as url:
        engine = create_db_engine(url)
        try:
            with engine.connect() as connection:
                start = time.perf_counter()
                result = import_file(
                    connection,
                    kind="items",
                    data=data,
                    fmt="csv",
                    audit=system_context("bench"),
                    models=ROW_MODELS,
                )
                import_s = time.perf_counter() - start
                assert result.created == count, result
                start = time.perf_counter()
                again = import_file(
                    connection,
                    kind="items",
                    data=data,
                    fmt="csv",
                    audit=system_context("bench"),
                    models=ROW_MODELS,
                )
                again_s = time.perf_counter() - start
                barcodes = connection.execute(
                    select(func.count()).select_from(item_barcodes)
                ).scalar()
        finally:
            engine.dispose()
    with scratch_database(kind, name="floor", workdir=workdir, admin_url=admin_url) as url:
        engine = create_db_engine(url)
        try:
            item_rows, barcode_rows, feed_rows = floor_rows(count, datetime.now(UTC))
            with engine.connect() as connection:
                start = time.perf_counter()
                with write_transaction(connection):
                    connection.execute(insert(items), item_rows)
                    connection.execute(insert(item_barcodes), barcode_rows)
                    connection.execute(insert(change_feed), feed_rows)
                    connection.execute(update(feed_counter).values(version=len(feed_rows)))
                floor_s = time.perf_counter() - start
        finally:
            engine.dispose()
    return Run(
        database=kind.value,
        items=count,
        barcodes=int(barcodes or 0),
        import_s=round(import_s, 3),
        again_s=round(again_s, 3),
        floor_s=round(floor_s, 3),
        ratio=round(import_s / floor_s, 2),
        again_changed=again.created + again.updated,
    )


def print_report(report: Report) -> None:
    shown = table(
        "Import of items with barcodes from CSV (one transaction), against a floor of raw inserts",
        (
            "database",
            "items",
            "barcodes",
            "import s",
            "same file again s",
            "floor s",
            "import/floor",
        ),
        left=("database",),
    )
    for run in report.runs:
        shown.add_row(
            run.database,
            f"{run.items:,}",
            f"{run.barcodes:,}",
            f"{run.import_s:.2f}",
            f"{run.again_s:.2f} ({run.again_changed} changed)",
            f"{run.floor_s:.2f}",
            f"{run.ratio:.1f}x",
        )
    console.print(shown)


@app.command()
def main(
    database: Annotated[Database, typer.Option(help="where to import")] = Database.BOTH,
    items_count: Annotated[int, typer.Option("--items", help="items, two barcodes each")] = 10_000,
    postgres_url: Annotated[
        str, typer.Option(help="an existing database to connect to")
    ] = POSTGRES_URL,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
) -> None:
    report = Report(machine=machine(postgres_url))
    kinds = [Database.SQLITE, Database.POSTGRESQL] if database is Database.BOTH else [database]
    with tempfile.TemporaryDirectory(prefix="jxc-bench-import-") as workdir:
        for kind in kinds:
            console.print(f"importing {items_count:,} items into {kind.value}...")
            report.runs.append(run_one(kind, items_count, Path(workdir), postgres_url))
    finish(report, print_report, json_out)


if __name__ == "__main__":
    app()
